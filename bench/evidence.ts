import { writeSection } from './results.js';
import { createHash, generateKeyPairSync, sign as edSign, verify as edVerify } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import {
  type AuditEvent,
  type EvidenceBundle,
  type Executor,
  type Grant,
  type GrantStore,
  auditStore,
  canonicalJson,
  chainEvents,
  createCheckpointer,
  createEvidence,
  createGrantline,
  createJoseSigner,
  createJwks,
  createMemoryCheckpointSink,
  generateSigningKey,
  hashedPart,
  verifyEvidence,
} from '@grantline/core';
import { createMemoryStore } from '@grantline/store-memory';
import { z } from 'zod';

/*
 * Evidence benchmark. Method:
 * - raw rates: node:crypto Ed25519 sign/verify of a 1 KiB message and SHA-256 of a 300-byte input, in
 *   this process, right before the Grantline figures.
 * - bundles: a real case (request, 2 approvals, issue, n-6 usage records, revoke, verify) run through the
 *   service on the memory store with a no-op executor; `createEvidence` and `verifyEvidence` timed in a
 *   loop. The raw floor of one bundle verification is what any verifier must do at least: one Ed25519
 *   verification over the signed bytes plus one SHA-256 per event over its canonical bytes, timed with
 *   node:crypto on the same bytes. ratio = floor time / verifyEvidence time (target ≥ 0.6), wall clock:
 *   verifyEvidence checks the signature of a payload of 1 MiB or more on the libuv threadpool while the main
 *   thread parses it, so the CPU-time ratio (process CPU time, all threads, per floor run / per
 *   verifyEvidence) is printed next to it. verifyEvidence and the floor are timed in BENCH_SLICES (10)
 *   alternating slices of 300 ms (1 s at 10,000 events), the order flipped every slice, after one
 *   warm-up slice each; every slice counts (no best-of), and the per-slice range is printed.
 * - store audit: 100,000 cases × 10 chained events written straight into the memory store (1,000,000
 *   events), a checkpoint signed over them, then `auditStore` (every hash recomputed, every record
 *   checked against its head, the checkpoint compared); wall time (target ≤ 5 s).
 * - transition throughput: full lifecycles through two services, each on its own memory store, one with
 *   a background checkpointer (default batch: 1,000 changes, and at least half as many as there are
 *   cases, or 10 s); both warmed up with one slice, then BENCH_LIFECYCLES (5,000) each in 2 × BENCH_SLICES
 *   alternating slices, every slice counted. The checkpointer is started at the start of each of its
 *   side's slices and stopped inside it (its batch in flight finished, the rest signed), so all its
 *   work is timed on its side (target on/off ≥ 0.9).
 */

const sizes = (process.env.BENCH_SIZES ?? '10,100,10000').split(',').map(Number);
const auditCases = Number(process.env.BENCH_AUDIT_CASES ?? 100_000);
const lifecycles = Number(process.env.BENCH_LIFECYCLES ?? 5000);

function rate(fn: () => void, minMs = 400): number {
  for (let i = 0; i < 20; i++) fn();
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < minMs) {
    for (let i = 0; i < 20; i++) fn();
    n += 20;
    t = performance.now();
  }
  return (n * 1000) / (t - t0);
}

async function rateAsync(fn: () => Promise<unknown>, minMs = 400, minRuns = 3): Promise<number> {
  return (await rateAndCpu(fn, minMs, minRuns)).rate;
}

/** Rate (wall clock) and process CPU time per run, all threads (user + system, µs). */
async function rateAndCpu(
  fn: () => Promise<unknown>,
  minMs = 400,
  minRuns = 3,
): Promise<{ rate: number; cpuUs: number }> {
  await fn();
  let n = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < minMs || n < minRuns) {
    await fn();
    n += 1;
    t = performance.now();
  }
  const c = process.cpuUsage(c0);
  return { rate: (n * 1000) / (t - t0), cpuUs: (c.user + c.system) / n };
}

const noop: Executor<Record<string, unknown>> = {
  system: 'noop',
  paramsSchema: z.record(z.string(), z.unknown()),
  async issue(ctx) {
    return { ref: { id: `${ctx.grant.id}:${ctx.target.id}` }, expiresAt: new Date(Date.now() + 3_600_000) };
  },
  async revoke() {
    return {};
  },
  async verify() {
    return { status: 'absent', method: 'noop', observation: { ok: true } };
  },
};
const policy = {
  id: 'bench',
  version: '1',
  owner: 'gov',
  rules: [
    {
      id: 'r',
      risk: 'high' as const,
      operator: 'ops',
      maxDurationSeconds: 3600,
      approvals: { count: 2, roles: ['a', 'b'], distinctRoles: true },
    },
  ],
};
const requester = { id: 'req', kind: 'human' as const, roles: [] };
const subject = { id: 'svc', kind: 'workload' as const, roles: [] };
const a1 = { id: 'x', kind: 'human' as const, roles: ['a'] };
const a2 = { id: 'y', kind: 'human' as const, roles: ['b'] };

async function lifecycle(gl: ReturnType<typeof createGrantline>, uses = 0): Promise<string> {
  const g = await gl.request({
    requester,
    subject,
    justification: { reason: 'bench' },
    targets: [{ id: 't', system: 'noop', resource: 'db://x' }],
    durationSeconds: 600,
  });
  await gl.approve(g.id, { approver: a1 });
  await gl.approve(g.id, { approver: a2 });
  await gl.issue(g.id);
  for (let i = 0; i < uses; i++)
    await gl.recordUsage(g.id, {
      sourceIp: '10.0.0.1',
      action: 's3:GetObject',
      resource: `arn:aws:s3:::bucket/key-${i}`,
    });
  await gl.complete(g.id, { actor: requester, reason: 'done' });
  return g.id;
}

const lines: string[] = [];
const say = (l: string) => {
  console.log(l);
  lines.push(l);
};

console.log('Grantline evidence benchmark');
say(
  `node ${process.version}, ${cpus().length} cores, load average ${loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')} at start, ${new Date().toISOString()}`,
);

// ---- raw primitives
const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const msg = Buffer.alloc(1024, 7);
const sig = edSign(null, msg, privateKey);
const rawSign = rate(() => edSign(null, msg, privateKey));
const rawVerify = rate(() => edVerify(null, msg, publicKey, sig));
const small = Buffer.alloc(300, 1);
const rawSha = rate(() => createHash('sha256').update(small).digest());
say(
  `raw Ed25519 (node:crypto, 1 KiB): sign ${rawSign.toFixed(0)}/s, verify ${rawVerify.toFixed(0)}/s; raw SHA-256 (300 B): ${rawSha.toFixed(0)}/s`,
);

// ---- bundles
const signer = await createJoseSigner({ privateJwk: (await generateSigningKey()).privateJwk });
const keys = createJwks(signer);
const slices = Number(process.env.BENCH_SLICES ?? 10);

/**
 * Runs `fn` one call at a time (a promise is awaited, a plain result not: no await is added to the
 * synchronous floor) for at least `ms` and at least once: calls, wall ms, process CPU µs.
 */
async function slice(fn: () => unknown, ms: number): Promise<{ runs: number; ms: number; cpuUs: number }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let t = t0;
  let runs = 0;
  do {
    const out = fn();
    if (out instanceof Promise) await out;
    runs += 1;
    t = performance.now();
  } while (t - t0 < ms);
  const c = process.cpuUsage(c0);
  return { runs, ms: t - t0, cpuUs: c.user + c.system };
}

/**
 * `subject` and `floor` timed in `slices` alternating slices of `ms` each (the order flips every slice,
 * so a drift in the machine's load falls on both sides), after one warm-up slice of each; every slice
 * counts (no best-of). Rates over all slices, and the range of the per-slice ratio.
 */
async function alternate(subject: () => unknown, floor: () => unknown, ms: number) {
  await slice(subject, ms);
  await slice(floor, ms);
  const sum = { s: { runs: 0, ms: 0, cpuUs: 0 }, f: { runs: 0, ms: 0, cpuUs: 0 } };
  const per: number[] = [];
  for (let i = 0; i < slices; i++) {
    const first = i % 2 === 0 ? subject : floor;
    const a = await slice(first, ms);
    const b = await slice(first === subject ? floor : subject, ms);
    const [s, f] = first === subject ? [a, b] : [b, a];
    for (const [acc, x] of [
      [sum.s, s],
      [sum.f, f],
    ] as const) {
      acc.runs += x.runs;
      acc.ms += x.ms;
      acc.cpuUs += x.cpuUs;
    }
    per.push(s.runs / s.ms / (f.runs / f.ms));
  }
  const subjectRate = (sum.s.runs * 1000) / sum.s.ms;
  const floorRate = (sum.f.runs * 1000) / sum.f.ms;
  return {
    subjectRate,
    floorRate,
    ratio: subjectRate / floorRate,
    // CPU time (all threads) per floor run over the same per subject run.
    cpuRatio: sum.f.cpuUs / sum.f.runs / (sum.s.cpuUs / sum.s.runs),
    min: Math.min(...per),
    max: Math.max(...per),
  };
}

const results: {
  n: number;
  bytes: number;
  sign: number;
  verify: number;
  cpuRatio: number;
  floor: number;
  ratio: number;
  min: number;
  max: number;
}[] = [];
for (const n of sizes) {
  const store = createMemoryStore();
  const gl = createGrantline({ store, policy, executors: [noop], signer });
  const id = await lifecycle(gl, Math.max(0, n - 10));
  const grant = (await store.get(id)) as Grant;
  const events = await store.events(id);
  const bundle: EvidenceBundle = await createEvidence({ grant, events, signer, now: new Date() });
  const check = await verifyEvidence(bundle, { keys });
  if (!check.valid) throw new Error(`bench bundle does not verify: ${JSON.stringify(check.problems)}`);
  const budget = n >= 10_000 ? 1500 : 400;
  // Raw floor over the very same bytes.
  const signingInput = Buffer.from(`${bundle.protected}.${bundle.payload}`);
  const edSig = edSign(null, signingInput, privateKey);
  const canon = events.map((e) => Buffer.from(canonicalJson(hashedPart(e))));
  const signRate = await rateAsync(() => createEvidence({ grant, events, signer, now: new Date() }), budget);
  const v = await alternate(
    () => verifyEvidence(bundle, { keys }),
    () => {
      edVerify(null, signingInput, publicKey, edSig);
      for (const c of canon) createHash('sha256').update(c).digest();
    },
    n >= 10_000 ? 1000 : 300,
  );
  results.push({
    n: events.length,
    bytes: bundle.payload.length,
    sign: signRate,
    verify: v.subjectRate,
    cpuRatio: v.cpuRatio,
    floor: v.floorRate,
    ratio: v.ratio,
    min: v.min,
    max: v.max,
  });
}
for (const r of results) {
  say(
    `bundle ${r.n} events (${(r.bytes / 1024).toFixed(0)} KiB): sign ${r.sign.toFixed(1)}/s, verify ${r.verify.toFixed(1)}/s; raw floor ${r.floor.toFixed(1)}/s; verify/raw ${r.ratio.toFixed(2)}× (target ≥ 0.60×) ${r.ratio >= 0.6 ? 'MET' : 'MISSED'} (slices ${r.min.toFixed(2)}-${r.max.toFixed(2)}×); by CPU time (all threads) ${r.cpuRatio.toFixed(2)}×`,
  );
}

// ---- transition throughput, checkpoints on vs off
{
  // One service per side, each on its own store, both warmed up alike; then alternating slices, every
  // one counted. The checkpointer runs only during the on side's slices and is stopped (its last batch
  // finished and the rest signed) inside each one, so none of its work falls into an off slice.
  const side = (withCheckpoints: boolean) => {
    const store: GrantStore = createMemoryStore();
    const gl = createGrantline({ store, policy, executors: [noop], signer });
    const sink = createMemoryCheckpointSink();
    const cpr = withCheckpoints ? createCheckpointer({ store, signer, sink }) : undefined;
    return {
      sink,
      cpuUs: 0,
      async run(count: number): Promise<number> {
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        cpr?.start();
        for (let i = 0; i < count; i++) {
          await lifecycle(gl);
          // A host does I/O between requests; yielding lets the background checkpointer run inside the timed window.
          await new Promise((r) => setImmediate(r));
        }
        await cpr?.stop();
        const c = process.cpuUsage(c0);
        this.cpuUs += c.user + c.system;
        return performance.now() - t0;
      },
    };
  };
  const off = side(false);
  const on = side(true);
  // Twice as many slices as for bundles: a slice is short (a few hundred ms), and bursts of load on a shared machine are not.
  const cycleSlices = slices * 2;
  const perSlice = Math.ceil(lifecycles / cycleSlices);
  await off.run(perSlice);
  await on.run(perSlice);
  const warmCpu = { off: off.cpuUs, on: on.cpuUs };
  let offMs = 0;
  let onMs = 0;
  const per: number[] = [];
  for (let i = 0; i < cycleSlices; i++) {
    const [x, y] = i % 2 === 0 ? [off, on] : [on, off];
    const a = await x.run(perSlice);
    const b = await y.run(perSlice);
    const [o, n] = x === off ? [a, b] : [b, a];
    offMs += o;
    onMs += n;
    per.push(o / n);
  }
  const total = perSlice * cycleSlices;
  const offRate = (total * 1000) / offMs;
  const onRate = (total * 1000) / onMs;
  const ratio = onRate / offRate;
  // This process's CPU time (all threads) per lifecycle, off over on: what other processes on the machine do moves it far less than wall time.
  const cpuRatio = (off.cpuUs - warmCpu.off) / (on.cpuUs - warmCpu.on);
  say(
    `transitions: ${total} lifecycles (9 transitions each) per side in ${cycleSlices} alternating slices after ${perSlice} warm-up each: checkpoints off ${offRate.toFixed(0)}/s, on ${onRate.toFixed(0)}/s (${on.sink.all().length} checkpoints signed, one at the end of each slice included); on/off ${ratio.toFixed(2)}× (target ≥ 0.90×) ${ratio >= 0.9 ? 'MET' : 'MISSED'} (slices ${Math.min(...per).toFixed(2)}-${Math.max(...per).toFixed(2)}×); by CPU time ${cpuRatio.toFixed(2)}×`,
  );
}

// ---- whole-store audit of 1,000,000 events
{
  const store = createMemoryStore();
  const template = await (async () => {
    const s = createMemoryStore();
    const gl = createGrantline({ store: s, policy, executors: [noop] });
    const id = await lifecycle(gl);
    return (await s.get(id)) as Grant;
  })();
  const t0 = performance.now();
  const at = new Date().toISOString();
  for (let c = 0; c < auditCases; c++) {
    const id = `case-${String(c).padStart(7, '0')}`;
    const drafts = Array.from({ length: 10 }, (_, i) => ({
      type: i === 0 ? 'requested' : 'usage',
      actor: { id: 'svc', kind: 'workload' as const },
      data: { sourceIp: '10.0.0.1', action: 's3:GetObject', n: i },
    }));
    const evs: AuditEvent[] = chainEvents(id, at, undefined, drafts);
    const last = evs[evs.length - 1]!;
    await store.create(
      { ...template, id, idempotencyKey: undefined, audit: { seq: last.seq, head: last.hash } } as Grant,
      evs,
    );
  }
  const total = auditCases * 10;
  const loadMs = performance.now() - t0;
  const heapMb = process.memoryUsage().heapUsed / 1e6;
  const sink = createMemoryCheckpointSink();
  const t1 = performance.now();
  const cp = await createCheckpointer({ store, signer, sink, pageSize: 10_000 }).run();
  const cpMs = performance.now() - t1;
  const t2 = performance.now();
  const audit = await auditStore(store, { checkpoint: cp!, keys });
  const auditMs = performance.now() - t2;
  const t4 = performance.now();
  await auditStore(store, { checkpoint: cp!, keys, records: false });
  const eventsOnlyMs = performance.now() - t4;
  if (!audit.valid || audit.events !== total)
    throw new Error(`audit failed: ${JSON.stringify(audit.problems.slice(0, 3))}`);
  const t3 = performance.now();
  let read = 0;
  for (let after = 0; ; ) {
    const page = await store.allEvents(after, 10_000);
    read += page.length;
    if (page.length < 10_000) break;
    after = page[page.length - 1]!.globalSeq!;
  }
  const readMs = performance.now() - t3;
  say(
    `store audit: ${total.toLocaleString('en')} events in ${auditCases.toLocaleString('en')} cases (loaded in ${(loadMs / 1000).toFixed(1)} s, heap ${heapMb.toFixed(0)} MB): checkpoint signed in ${(cpMs / 1000).toFixed(2)} s; auditStore with checkpoint ${(auditMs / 1000).toFixed(2)} s (${((total / auditMs) * 1000).toFixed(0)} events/s; events and checkpoint alone, without the ${auditCases.toLocaleString('en')} record reads, ${(eventsOnlyMs / 1000).toFixed(2)} s), where just reading the ${read.toLocaleString('en')} events from the memory store takes ${(readMs / 1000).toFixed(2)} s; target ≤ 5 s ${auditMs <= 5000 ? 'MET' : 'MISSED'}`,
  );
}

say(
  `load average at end: ${loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')} (the machine is shared; absolute times scale with it, ratios less so)`,
);

writeSection('evidence (pnpm bench:evidence)', [
  `Method: raw node:crypto Ed25519 and SHA-256 rates measured first in the same process; bundles from real service runs (memory store, no-op executor) signed and verified in a loop, each compared with its raw floor (one Ed25519 verification over the signed bytes + one SHA-256 per event over the same canonical bytes), by wall clock (verifyEvidence checks the signature of payloads of 1 MiB or more on the libuv threadpool while it parses) and by CPU time on all threads; a 1,000,000-event memory store audited against a signed checkpoint; lifecycles through two services (one store each, both warmed up alike), one with the background checkpointer, in alternating slices, every slice counted, yielding to the event loop after each lifecycle; the checkpointer is started and stopped (last batch finished, the rest signed) inside each of its slices, so all its work is timed on its side. verifyEvidence and its floor are likewise timed in alternating slices (order flipped each slice), every slice counted; the per-slice ranges are printed.`,
  '',
  ...lines.map((l) => `- ${l}`),
]);
