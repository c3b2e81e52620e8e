import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createMemoryStore } from '@grantline/store-memory';
import { describe, expect, it } from 'vitest';
import {
  type AuditEvent,
  type Grant,
  type SignedCheckpoint,
  auditStore,
  chainEvents,
  checkpointDigest,
  createCheckpointer,
  createGrantline,
  createJoseSigner,
  createJwks,
  createMemoryCheckpointSink,
  generateSigningKey,
  verifyCheckpoint,
  verifyCheckpointSuccession,
  verifyEvidence,
} from '../src/index.js';
import { policy, runFullCase, setup } from './evidence-helpers.js';

async function world(cases = 3) {
  const sink = createMemoryCheckpointSink();
  const env = await setup({ checkpoints: { sink } });
  const ids: string[] = [];
  for (let i = 0; i < cases; i++) ids.push((await runFullCase(env, ` #${i}`)).caseId);
  const keys = createJwks(env.signer!);
  return { ...env, sink, ids, keys };
}

const codes = (r: { problems: { code: string }[] }) => r.problems.map((p) => p.code);
/** A case's head in a checkpoint's heads list. */
const headOf = (cp: SignedCheckpoint, id: string) => cp.heads.find((h) => h[0] === id);

/** A memory checkpoint sink whose `put` fails with "sink down" while `down` is set. */
function outageSink() {
  const inner = createMemoryCheckpointSink();
  return {
    down: false,
    latest: () => inner.latest(),
    async put(cp: Parameters<typeof inner.put>[0]) {
      if (this.down) throw new Error('sink down');
      await inner.put(cp);
    },
  };
}

describe('signed checkpoints', () => {
  it('sign the whole audit stream in one batch and verify offline', async () => {
    const w = await world();
    const all = await w.store.allEvents(0, 10_000);
    assert.equal(w.sink.all().length, 0, 'nothing is signed per event');
    const cp = await w.service.checkpoint();
    assert.ok(cp);
    assert.equal(w.sink.all().length, 1);
    const v = await verifyCheckpoint(JSON.parse(JSON.stringify(cp)), w.keys);
    assert.deepEqual(v.problems, []);
    assert.equal(v.checkpoint!.upTo, all[all.length - 1]!.globalSeq);
    assert.equal(v.checkpoint!.events, all.length);
    assert.deepEqual([...v.checkpoint!.heads.keys()], w.ids, 'in the order the cases came');
    const g = await w.store.get(w.ids[0]!);
    assert.deepEqual(v.checkpoint!.heads.get(w.ids[0]!), [g!.audit.seq, g!.audit.head]);
    assert.equal(await w.service.checkpoint(), null, 'nothing new: no checkpoint');
  });

  it('rejects edited heads, an unknown key and a foreign type', async () => {
    const w = await world(1);
    const cp = (await w.service.checkpoint())!;
    const [id, , hash] = cp.heads[0]!;
    const edited = { ...cp, heads: [[id, 3, hash]] };
    assert.deepEqual(codes(await verifyCheckpoint(edited, w.keys)), ['CHECKPOINT_HEADS_MISMATCH']);
    const twice = { ...cp, heads: [cp.heads[0]!, cp.heads[0]!] };
    const listedTwice = await verifyCheckpoint(twice, w.keys);
    assert.deepEqual(codes(listedTwice), ['CHECKPOINT_MALFORMED']);
    assert.match(listedTwice.problems[0]!.message, /listed twice/);
    const other = createJwks(await createJoseSigner({ privateJwk: (await generateSigningKey()).privateJwk }));
    assert.deepEqual(codes(await verifyCheckpoint(cp, other)), ['KEY_UNKNOWN']);
    const bundle = await w.service.evidence(w.ids[0]!);
    // An evidence signature cannot pass for a checkpoint signature (typ is signed).
    const swapped = { ...cp, protected: bundle.protected, signature: bundle.signature };
    assert.equal((await verifyCheckpoint(swapped, w.keys)).valid, false);
  });

  it('the memory sink keeps its own copy of a head a caller froze around a getter', async () => {
    const w = await world(1);
    const cp = (await w.service.checkpoint())!;
    const [id, seq, hash] = cp.heads[0]!;
    let name = id;
    const sly = Object.freeze(
      Object.defineProperty([undefined, seq, hash], 0, { get: () => name, enumerable: true }),
    ) as unknown as (typeof cp.heads)[number];
    const sink = createMemoryCheckpointSink();
    await sink.put({ ...cp, heads: [sly] });
    name = 'someone-else';
    const kept = (await sink.latest())!;
    assert.deepEqual(kept.heads, [[id, seq, hash]]);
    assert.deepEqual((await verifyCheckpoint(kept, w.keys)).problems, []);
  });

  it('the background checkpointer signs in batches, off the transition path', async () => {
    const sink = createMemoryCheckpointSink();
    const env = await setup();
    const cpr = createCheckpointer({
      store: env.store,
      signer: env.signer!,
      sink,
      everyChanges: 20,
      intervalMs: 60_000,
    });
    cpr.start();
    for (let i = 0; i < 6; i++) {
      await runFullCase(env, ` ${i}`);
      await new Promise((r) => setImmediate(r));
    }
    const events = (await env.store.allEvents(0, 1e6)).length;
    await cpr.stop();
    const n = sink.all().length;
    assert.ok(n >= 2, `the change feed triggered checkpoints before stop (${n})`);
    assert.ok(
      n <= Math.ceil(events / 20) + 1,
      `${n} checkpoints for ${events} events: batched, not per event`,
    );
    const v = await verifyCheckpoint(sink.all()[n - 1]!, createJwks(env.signer!));
    assert.equal(v.valid, true);
    assert.equal(v.checkpoint!.events, events, 'stop() signs what is left');
  });

  it('the service runs checkpoints with its sweeper and signs the rest on close', async () => {
    const sink = createMemoryCheckpointSink();
    const env = await setup({ checkpoints: { sink, intervalMs: 60_000 } });
    await runFullCase(env);
    env.service.startSweeper({ maxSleepMs: 50 });
    await env.service.close();
    const last = sink.all().at(-1)!;
    const v = await verifyCheckpoint(last, createJwks(env.signer!));
    assert.equal(v.checkpoint!.events, (await env.store.allEvents(0, 1e6)).length);
  });

  it('checkpoints need a signer', async () => {
    await expect(
      setup({ signer: null, checkpoints: { sink: createMemoryCheckpointSink() } }),
    ).rejects.toMatchObject({ code: 'ERR_VALIDATION' });
    const env = await setup();
    await expect(env.service.checkpoint()).rejects.toMatchObject({ code: 'ERR_EVIDENCE' });
  });

  it('a restarted checkpointer resumes from the last checkpoint in the sink', async () => {
    const w = await world(2);
    const first = (await w.service.checkpoint())!;
    await runFullCase(w, ' later');
    const again = createCheckpointer({ store: w.store, signer: w.signer!, sink: w.sink });
    const second = (await again.run())!;
    const a = (await verifyCheckpoint(first, w.keys)).checkpoint!;
    const b = (await verifyCheckpoint(second, w.keys)).checkpoint!;
    assert.ok(b.upTo > a.upTo);
    assert.equal(b.cases, 3);
    assert.equal(b.events, (await w.store.allEvents(0, 1e6)).length);
  });

  it('a sink without latest() is refused unless fromScratch: every restart would attest a deleted case or a truncated tail', async () => {
    const w = await world(3);
    const first = (await w.service.checkpoint())!;
    const put: SignedCheckpoint[] = [];
    const bare = { put: async (cp: SignedCheckpoint) => void put.push(cp) };
    assert.throws(() => createCheckpointer({ store: w.store, signer: w.signer!, sink: bare }), {
      code: 'ERR_VALIDATION',
    });
    await expect(setup({ checkpoints: { sink: bare } })).rejects.toMatchObject({ code: 'ERR_VALIDATION' });
    // What the refusal prevents: after a restart, a case deleted and a tail truncated below the last
    // checkpoint. A checkpointer over a sink with latest() is held to that checkpoint...
    w.store.tamperDeleteCase(w.ids[1]!);
    w.store.tamperTruncate(w.ids[0]!, 2);
    assert.deepEqual(
      [...new Set(codes(await auditStore(w.store, { checkpoint: first, keys: w.keys })))].sort(),
      ['CASE_DELETED', 'CASE_TRUNCATED', 'CHECKPOINT_COUNT_MISMATCH', 'RECORD_HEAD_MISMATCH'],
    );
    // ...while one from scratch, when explicitly asked for, signs the store as it now is.
    const fresh = createCheckpointer({ store: w.store, signer: w.signer!, sink: bare, fromScratch: true });
    const cp = (await fresh.run())!;
    assert.equal(put.length, 1);
    assert.equal((await verifyCheckpoint(cp, w.keys)).checkpoint!.cases, 2);
    assert.equal(headOf(cp, w.ids[1]!), undefined);
    await expect(setup({ checkpoints: { sink: bare, fromScratch: true } })).resolves.toBeTruthy();
  });

  it('each checkpoint names the one before (prev), also across a restart; verifyCheckpointSuccession checks the pair', async () => {
    const w = await world(2);
    const first = (await w.service.checkpoint())!;
    assert.equal(
      (await verifyCheckpoint(first, w.keys)).checkpoint!.prev,
      undefined,
      'the first of the sink',
    );
    await runFullCase(w, ' later');
    const second = (await w.service.checkpoint())!;
    assert.equal((await verifyCheckpoint(second, w.keys)).checkpoint!.prev, checkpointDigest(first));
    await runFullCase(w, ' after restart');
    const third = (await createCheckpointer({ store: w.store, signer: w.signer!, sink: w.sink }).run())!;
    assert.equal((await verifyCheckpoint(third, w.keys)).checkpoint!.prev, checkpointDigest(second));
    assert.deepEqual(await verifyCheckpointSuccession(first, second, w.keys), { valid: true, problems: [] });
    assert.deepEqual(await verifyCheckpointSuccession(second, third, w.keys), { valid: true, problems: [] });
    // A checkpoint removed from the sink, the order swapped, a forged one.
    assert.deepEqual(codes(await verifyCheckpointSuccession(first, third, w.keys)), [
      'CHECKPOINT_NOT_SUCCESSOR',
    ]);
    assert.deepEqual(codes(await verifyCheckpointSuccession(third, second, w.keys)), [
      'CHECKPOINT_NOT_SUCCESSOR',
      'CHECKPOINT_REGRESSED',
      'CHECKPOINT_CASE_DROPPED',
    ]);
    assert.deepEqual(codes(await verifyCheckpointSuccession(second, { ...third, signature: 'x' }, w.keys)), [
      'CHECKPOINT_INVALID',
    ]);
  });

  it('a checkpointer started over (fromScratch) on a tampered store fails the succession check', async () => {
    const w = await world(3);
    const first = (await w.service.checkpoint())!;
    w.store.tamperDeleteCase(w.ids[1]!);
    w.store.tamperTruncate(w.ids[0]!, 2);
    const fresh = createCheckpointer({
      store: w.store,
      signer: w.signer!,
      sink: { put: async () => {} },
      fromScratch: true,
    });
    const cp = (await fresh.run())!;
    assert.equal((await verifyCheckpoint(cp, w.keys)).valid, true, 'a valid checkpoint on its own');
    const s = await verifyCheckpointSuccession(first, cp, w.keys);
    assert.equal(s.valid, false);
    assert.deepEqual(
      s.problems.map((p) => [p.code, p.caseId]),
      [
        ['CHECKPOINT_NOT_SUCCESSOR', undefined],
        ['CHECKPOINT_REGRESSED', undefined],
        ['CHECKPOINT_HEAD_REWRITTEN', w.ids[0]],
        ['CHECKPOINT_CASE_DROPPED', w.ids[1]],
      ],
    );
  });

  it('after a key rotation, a service resumes from a checkpoint signed with the retired key (resumeKeys)', async () => {
    const w = await world(2);
    const first = (await w.service.checkpoint())!;
    await runFullCase(w, ' after rotation');
    const rotated = await createJoseSigner({ privateJwk: (await generateSigningKey()).privateJwk });
    const retiredAndNew = { keys: [...w.keys.keys, ...createJwks(rotated).keys] };
    // Without the retired key the last checkpoint cannot be trusted: refused, every time.
    const blind = createGrantline({
      store: w.store,
      policy,
      executors: [w.authority.executor],
      signer: rotated,
      checkpoints: { sink: w.sink },
    });
    await expect(blind.checkpoint()).rejects.toMatchObject({ code: 'ERR_EVIDENCE' });
    await expect(blind.checkpoint()).rejects.toMatchObject({ code: 'ERR_EVIDENCE' });
    assert.equal(w.sink.all().length, 1, 'a refused resume never signs a fresh stream');
    const resumed = createGrantline({
      store: w.store,
      policy,
      executors: [w.authority.executor],
      signer: rotated,
      checkpoints: { sink: w.sink, resumeKeys: retiredAndNew },
    });
    const second = (await resumed.checkpoint())!;
    const a = (await verifyCheckpoint(first, retiredAndNew)).checkpoint!;
    const b = (await verifyCheckpoint(second, retiredAndNew)).checkpoint!;
    assert.equal(b.events, (await w.store.allEvents(0, 1e6)).length);
    assert.ok(b.upTo > a.upTo);
    assert.notEqual(second.protected, first.protected, 'signed under the new kid');
  });

  it('refuses to sign over events that do not extend the checkpointed chains', async () => {
    const w = await world(1);
    await w.service.checkpoint();
    const id = (await runFullCase(w, ' after')).caseId;
    const evs = await w.store.events(id);
    w.store.tamperReplaceEvent(id, 2, { ...evs[1]!, prevHash: 'f'.repeat(64) });
    await expect(w.service.checkpoint()).rejects.toMatchObject({ code: 'ERR_EVIDENCE' });
    assert.equal(w.sink.all().length, 1, 'no checkpoint was signed over the tampered stream');
  });

  it('a failed read or sink leaves the checkpointer at its last checkpoint: the next run signs the same events', async () => {
    const w = await world(2);
    const sink = outageSink();
    sink.down = true;
    let failRead = true;
    const store = {
      ...w.store,
      async allEvents(after: number, limit: number) {
        if (failRead) throw new Error('store down');
        return w.store.allEvents(after, limit);
      },
    };
    const cpr = createCheckpointer({ store, signer: w.signer!, sink });
    await expect(cpr.run()).rejects.toThrow('store down');
    failRead = false;
    await expect(cpr.run()).rejects.toThrow('sink down');
    sink.down = false;
    const cp = (await cpr.run())!;
    const all = await w.store.allEvents(0, 1e6);
    const v = await verifyCheckpoint(cp, w.keys);
    assert.deepEqual(v.problems, []);
    assert.equal(v.checkpoint!.events, all.length);
    assert.equal(v.checkpoint!.cases, 2);
    assert.deepEqual(codes(await auditStore(w.store, { checkpoint: cp, keys: w.keys })), []);
  });

  it('successive checkpoints share the heads of unchanged cases; a head that moved is never taken from the last one', async () => {
    const w = await world(2);
    const sink = outageSink();
    const cpr = createCheckpointer({ store: w.store, signer: w.signer!, sink });
    const [a, b] = w.ids as [string, string];
    const use = async (id: string) => {
      const before = (await w.store.events(id)).length;
      await w.service.recordUsage(id, { sourceIp: '10.1.2.3', action: 'keys:rotate' });
      assert.equal((await w.store.events(id)).length, before + 1, 'usage after revocation is recorded');
    };
    const first = (await cpr.run())!;
    await use(b); // case b moves on; case a does not
    const second = (await cpr.run())!;
    assert.equal(headOf(second, a), headOf(first, a), 'unchanged head is shared, not copied');
    assert.ok(Object.isFrozen(headOf(second, a)));
    assert.notDeepEqual(headOf(second, b), headOf(first, b));
    assert.deepEqual((await verifyCheckpoint(second, w.keys)).problems, []);
    // Case a moves on in a run that fails after it built its heads: the cursors go back.
    await use(a);
    sink.down = true;
    await expect(cpr.run()).rejects.toThrow('sink down');
    sink.down = false;
    // Its newest event is then replaced in place, same seq and link, another hash (an edit the
    // checkpointer, which checks links only, leaves to the audit): the next checkpoint must attest the
    // head the store now holds, not one remembered from the failed run at the same seq.
    const evs = await w.store.events(a);
    const last = evs[evs.length - 1]!;
    w.store.tamperReplaceEvent(a, last.seq, { ...last, hash: 'f'.repeat(64) } as AuditEvent);
    const third = (await cpr.run())!;
    assert.deepEqual(headOf(third, a), [a, last.seq, 'f'.repeat(64)]);
    assert.equal(headOf(third, b), headOf(second, b));
    assert.deepEqual((await verifyCheckpoint(third, w.keys)).problems, []);
  });

  it('after a failed run, a case whose new events then vanish is attested at the head it was rolled back to', async () => {
    const w = await world(2);
    const sink = outageSink();
    const cpr = createCheckpointer({ store: w.store, signer: w.signer!, sink });
    const [a] = w.ids as [string, string];
    const first = (await cpr.run())!;
    await w.service.recordUsage(a, { sourceIp: '10.1.2.3', action: 'keys:rotate' });
    sink.down = true;
    await expect(cpr.run()).rejects.toThrow('sink down');
    sink.down = false;
    // The event the failed run had read is removed; another case moves so that there is something to sign.
    w.store.tamperTruncate(a, 1);
    await runFullCase(w, ' #3');
    const next = (await cpr.run())!;
    assert.deepEqual(headOf(next, a), headOf(first, a));
    const evs = await w.store.events(a);
    assert.deepEqual(headOf(next, a), [a, evs.length, evs[evs.length - 1]!.hash]);
    assert.deepEqual((await verifyCheckpoint(next, w.keys)).problems, []);
  });

  it('cases whose ids sort before earlier ones keep the order they came in across checkpoints', async () => {
    const w = await world(1);
    let n = 100;
    const env = {
      ...w,
      service: createGrantline({
        store: w.store,
        policy,
        executors: [w.authority.executor],
        clock: w.clock,
        ids: () => `case-${String(--n).padStart(4, '0')}`,
      }),
    };
    const cpr = createCheckpointer({ store: w.store, signer: w.signer!, sink: w.sink });
    for (let i = 0; i < 3; i++) {
      await runFullCase(env, ` #${i}`);
      await runFullCase(w, ` again #${i}`);
      const cp = (await cpr.run())!;
      const v = await verifyCheckpoint(cp, w.keys);
      assert.deepEqual(v.problems, [], `checkpoint ${i}`);
      assert.deepEqual(codes(await auditStore(w.store, { checkpoint: cp, keys: w.keys })), []);
    }
    const latest = (await w.sink.latest())!;
    assert.equal((await verifyCheckpoint(latest, w.keys)).checkpoint!.cases, 7);
    const firstSeen = [...new Set((await w.store.allEvents(0, 1e6)).map((e) => e.caseId))];
    assert.deepEqual(
      latest.heads.map((h) => h[0]),
      firstSeen,
    );
  });
});

describe('heads digested in blocks', () => {
  /**
   * One round: new cases (one event each), then one more event for each chosen case, then a run. A
   * run may fail at the sink or at the read; after a failure the round's new cases may be deleted
   * (never signed, so nothing attests them), and before the run the checkpointer may be replaced by a
   * fresh one that resumes from the sink.
   */
  type Round = {
    newCases: number;
    moves: number[];
    fault?: 'sink' | 'read';
    dropNew?: boolean;
    restart?: boolean;
  };

  /**
   * Replays the rounds on a fresh memory store: every checkpoint the incremental digest signs must
   * verify (verifyCheckpoint digests every block from scratch) and list exactly the store's heads in
   * the order the cases came; a failed run changes nothing. Returns how many were signed.
   */
  async function replay(rounds: Round[]) {
    const w = await world(1);
    const template = (await w.store.get(w.ids[0]!)) as Grant;
    const inner = createMemoryStore();
    let readDown = false;
    const store = {
      ...inner,
      async allEvents(after: number, limit: number) {
        if (readDown) throw new Error('store down');
        return inner.allEvents(after, limit);
      },
    };
    const sink = outageSink();
    let cpr = createCheckpointer({ store, signer: w.signer!, sink });
    let ids: string[] = [];
    let made = 0;
    const at = new Date().toISOString();
    const draft = (n: number) => ({
      type: 'usage',
      actor: { id: 'svc', kind: 'workload' as const },
      data: { n },
    });
    let signed = 0;
    let covered = 0; // upTo of the last checkpoint signed: where a restarted checkpointer resumes
    for (const r of rounds) {
      const added: string[] = [];
      for (let k = 0; k < r.newCases; k++) {
        const id = `c-${String(made++).padStart(5, '0')}`;
        const evs = chainEvents(id, at, undefined, [draft(0)]);
        await inner.create(
          {
            ...template,
            id,
            idempotencyKey: undefined,
            version: 1,
            audit: { seq: 1, head: evs[0]!.hash },
          } as Grant,
          evs,
        );
        added.push(id);
      }
      ids.push(...added);
      for (const m of r.moves) {
        if (ids.length === 0) break;
        const id = ids[m % ids.length]!;
        const g = (await inner.get(id))!;
        const prev = (await inner.events(id)).at(-1)!;
        const evs = chainEvents(id, at, prev, [draft(prev.seq)]);
        await inner.compareAndSet(
          { ...g, version: g.version + 1, audit: { seq: evs[0]!.seq, head: evs[0]!.hash } },
          g.version,
          evs,
        );
      }
      if (r.restart) cpr = createCheckpointer({ store, signer: w.signer!, sink });
      // A restarted checkpointer's upTo is 0 until its first run resumes from the sink.
      const anything = (await inner.allEvents(Math.max(cpr.upTo, covered), 1)).length > 0;
      if (r.fault) {
        sink.down = r.fault === 'sink';
        readDown = r.fault === 'read';
        if (anything) await expect(cpr.run()).rejects.toThrow(/down/);
        sink.down = false;
        readDown = false;
        if (r.dropNew) {
          for (const id of added) inner.tamperDeleteCase(id);
          ids = ids.filter((id) => !added.includes(id));
        }
        continue;
      }
      const cp = await cpr.run();
      if (!anything) {
        assert.equal(cp, null);
        continue;
      }
      signed += 1;
      const v = await verifyCheckpoint(JSON.parse(JSON.stringify(cp)), w.keys);
      assert.deepEqual(v.problems, []);
      covered = v.checkpoint!.upTo;
      const expected = [];
      for (const id of ids) {
        const last = (await inner.events(id)).at(-1)!;
        expected.push([id, last.seq, last.hash]);
      }
      assert.deepEqual(cp!.heads, expected);
      assert.deepEqual(codes(await auditStore(inner, { checkpoint: cp!, keys: w.keys })), []);
    }
    return signed;
  }

  it('a checkpoint over several blocks with moves in old blocks, new cases and a failed sink verifies from scratch', async () => {
    const signed = await replay([
      { newCases: 600, moves: [] },
      { newCases: 0, moves: [3, 300] }, // blocks 0 and 1 only
      { newCases: 10, moves: [599, 5], fault: 'sink' }, // read, then rolled back
      { newCases: 2, moves: [255, 256, 511, 512] }, // block edges
      { newCases: 0, moves: [] }, // nothing new
      { newCases: 0, moves: [1], restart: true }, // resumed from the sink, then incremental again
      { newCases: 300, moves: [0, 700] },
    ]);
    assert.equal(signed, 5);
  });

  it('new cases read by a failed run and then deleted leave no block behind', async () => {
    // 512 cases fill two blocks; the failed run had read a case into a third.
    for (const fault of ['sink', 'read'] as const) {
      const signed = await replay([
        { newCases: 512, moves: [] },
        { newCases: 1, moves: [], fault, dropNew: true },
        { newCases: 0, moves: [0] },
        { newCases: 0, moves: [300], restart: true },
      ]);
      assert.equal(signed, 3, fault);
    }
  });

  it('a restart with nothing new since the last checkpoint signs nothing (fast-check counterexample)', async () => {
    assert.equal(
      await replay([
        { newCases: 1, moves: [] },
        { newCases: 0, moves: [], restart: true },
      ]),
      1,
    );
    assert.equal(
      await replay([
        { newCases: 3, moves: [] },
        { newCases: 0, moves: [], restart: true, fault: 'sink' },
      ]),
      1,
    );
  });

  it('random rounds of new cases, moves, failures, deletions after failures and restarts', async () => {
    const round = fc.record(
      {
        newCases: fc.nat(300),
        moves: fc.array(fc.nat(), { maxLength: 30 }),
        fault: fc.constantFrom(undefined, 'sink' as const, 'read' as const),
        dropNew: fc.boolean(),
        restart: fc.boolean(),
      },
      { requiredKeys: ['newCases', 'moves'] },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(round, { minLength: 1, maxLength: 6 }), async (rounds) => {
        await replay(rounds);
      }),
      { numRuns: 30 },
    );
  });
});

describe('checkpoints and content edits', () => {
  it('a content edit keeping the hash is left to the audit, which recomputes every hash', async () => {
    const w = await world(1);
    await w.service.checkpoint();
    const id = (await runFullCase(w, ' after')).caseId;
    const evs = await w.store.events(id);
    w.store.tamperReplaceEvent(id, 2, { ...evs[1]!, data: { ...evs[1]!.data, reason: 'edited' } });
    const cp = (await w.service.checkpoint())!;
    const r = await auditStore(w.store, { checkpoint: cp, keys: w.keys });
    assert.deepEqual(codes(r), ['CHAIN_HASH_MISMATCH']);
    assert.equal(r.problems[0]!.caseId, id);
  });
});

describe('whole-store audit', () => {
  it('a clean store passes, with and without a checkpoint', async () => {
    const w = await world();
    const cp = (await w.service.checkpoint())!;
    await runFullCase(w, ' after checkpoint');
    const r = await auditStore(w.store, { checkpoint: cp, keys: w.keys });
    assert.deepEqual(r.problems, []);
    assert.equal(r.valid, true);
    assert.equal(r.cases, 4);
    assert.equal(r.records, 4);
    assert.ok(r.checkpoint);
  });

  it('detects a deleted case against the last checkpoint (and only with it)', async () => {
    const w = await world();
    const cp = (await w.service.checkpoint())!;
    w.store.tamperDeleteCase(w.ids[1]!);
    const without = await auditStore(w.store);
    assert.equal(without.valid, true, 'a clean deletion leaves no trace inside the database');
    const r = await auditStore(w.store, { checkpoint: cp, keys: w.keys });
    assert.equal(r.valid, false);
    assert.ok(r.problems.some((p) => p.code === 'CASE_DELETED' && p.caseId === w.ids[1]));
    assert.ok(codes(r).includes('CHECKPOINT_COUNT_MISMATCH'));
  });

  it('detects the newest events of a case removed, even with the record rewritten to match', async () => {
    const w = await world();
    const cp = (await w.service.checkpoint())!;
    const id = w.ids[2]!;
    w.store.tamperTruncate(id, 3);
    const plain = await auditStore(w.store, { checkpoint: cp, keys: w.keys });
    assert.ok(plain.problems.some((p) => p.code === 'CASE_TRUNCATED' && p.caseId === id));
    assert.ok(codes(plain).includes('RECORD_HEAD_MISMATCH'));

    // A careful attacker also rewrites the record to the shortened chain: only the checkpoint sees it.
    const events = await w.store.events(id);
    const last = events[events.length - 1] as AuditEvent;
    const g = (await w.store.get(id)) as Grant;
    await w.store.compareAndSet(
      { ...g, version: g.version + 1, state: 'revoked', audit: { seq: last.seq, head: last.hash } },
      g.version,
      [],
    );
    const careful = await auditStore(w.store, { checkpoint: cp, keys: w.keys });
    assert.deepEqual(
      careful.problems.map((p) => p.code),
      ['CASE_TRUNCATED', 'CHECKPOINT_COUNT_MISMATCH'],
    );
    // The exported evidence of that case looks consistent on its own, but not against the checkpoint.
    const bundle = await w.service.evidence(id);
    const alone = await verifyEvidence(bundle, { keys: w.keys });
    assert.equal(
      alone.problems.some((p) => p.code.startsWith('CHAIN') || p.code === 'RECORD_HEAD_MISMATCH'),
      false,
    );
    const against = await verifyEvidence(bundle, { keys: w.keys, checkpoint: cp });
    assert.equal(against.valid, false);
    assert.ok(against.problems.some((p) => p.code === 'CHECKPOINT_TRUNCATED'));
  });

  it('detects an event edited in place', async () => {
    const w = await world(1);
    const cp = (await w.service.checkpoint())!;
    const id = w.ids[0]!;
    const e = (await w.store.events(id))[4]!;
    w.store.tamperReplaceEvent(id, e.seq, { ...e, at: '2020-01-01T00:00:00.000Z' });
    const r = await auditStore(w.store, { checkpoint: cp, keys: w.keys });
    assert.deepEqual(codes(r), ['CHAIN_HASH_MISMATCH']);
  });

  it('a forged checkpoint is reported, not trusted', async () => {
    const w = await world(1);
    const cp = (await w.service.checkpoint())!;
    const r = await auditStore(w.store, { checkpoint: { ...cp, heads: [] }, keys: w.keys });
    assert.ok(codes(r).includes('CHECKPOINT_INVALID'));
    assert.equal(r.valid, false);
  });
});
