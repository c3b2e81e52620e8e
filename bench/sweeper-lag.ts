import { writeSection } from './results.js';
import { type Executor, createGrantline } from '@grantline/core';
import { createMemoryStore } from '@grantline/store-memory';
import { z } from 'zod';

/**
 * Expiry → revoked lag on the memory store with the real background sweeper (`startSweeper`): N cases
 * whose windows end at the same instant. Set-up runs on a frozen clock so every window ends at the
 * same time; the clock is then switched to real time, shifted so the shared expiry is "now + 200 ms".
 * The lag of each case is what Grantline itself records (`revocation.lagToRevokedMs`).
 */
async function run(
  n: number,
): Promise<{ n: number; p50: number; p99: number; max: number; drainMs: number }> {
  let frozen: number | null = Date.UTC(2026, 0, 1);
  let offset = 0;
  const clock = { now: () => new Date(frozen ?? Date.now() - offset) };
  const noop: Executor<Record<string, unknown>> = {
    system: 'noop',
    paramsSchema: z.record(z.string(), z.unknown()),
    async issue(ctx) {
      return { ref: { id: ctx.grant.id }, expiresAt: new Date(ctx.grant.window.expiresAt!) };
    },
    async revoke() {
      return {};
    },
    async verify() {
      return { status: 'absent', method: 'noop', observation: { ok: true } };
    },
  };
  const store = createMemoryStore();
  const gl = createGrantline({
    store,
    clock,
    executors: [noop],
    policy: {
      id: 'lag',
      version: '1',
      owner: 'gov',
      rules: [
        {
          id: 'auto',
          risk: 'low',
          template: 'auto',
          match: { systems: ['noop'], resources: ['db://*'], permissions: ['db:read'] },
          operator: 'ops',
          maxDurationSeconds: 3600,
          approvals: { count: 0, roles: [] },
        },
      ],
    },
  });
  const bot = { id: 'bot', kind: 'workload' as const, roles: [] };
  for (let i = 0; i < n; i++) {
    const g = await gl.request({
      requester: bot,
      subject: bot,
      justification: { reason: 'lag' },
      targets: [{ id: 't', system: 'noop', resource: `db://${i}`, permissions: ['db:read'] }],
      durationSeconds: 60,
      template: 'auto',
    });
    await gl.issue(g.id);
  }
  const expiry = frozen! + 60_000;
  offset = Date.now() + 200 - expiry; // real now + 200 ms is the shared expiry
  frozen = null;
  const done = new Promise<void>((resolve) => {
    let left = n;
    gl.on('grant:revoked', () => {
      if (--left === 0) resolve();
    });
  });
  const handle = gl.startSweeper({ limit: 1000 });
  await done;
  const drainMs = clock.now().getTime() - expiry;
  await handle.stop();
  const lags: number[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.list({ limit: 5000, ...(cursor ? { cursor } : {}) });
    for (const g of page.grants) lags.push(g.revocation!.lagToRevokedMs!);
    cursor = page.nextCursor;
  } while (cursor);
  lags.sort((a, b) => a - b);
  const q = (p: number) => lags[Math.min(lags.length - 1, Math.floor(p * lags.length))]!;
  return { n, p50: q(0.5), p99: q(0.99), max: lags[lags.length - 1]!, drainMs };
}

console.log(
  'Grantline sweeper lag — expiry → revoked on the memory store, one in-process background sweeper',
);
console.log(
  'method: N cases share one expiry instant; startSweeper (sleeps until the next due time, claims 1,000 at a',
);
console.log('        time, 8 concurrent steps); lag per case as recorded by Grantline; no-op executor.');
const lines: string[] = [`node ${process.version}, ${new Date().toISOString()}`];
for (const n of [1, Number(process.env.BENCH_LAG_N ?? 100_000)]) {
  const r = await run(n);
  const line = `${r.n} case(s): p50 ${r.p50} ms, p99 ${r.p99} ms, max ${r.max} ms, all revoked ${r.drainMs} ms after expiry`;
  console.log(line);
  lines.push(line);
}
writeSection(
  'sweeper lag (pnpm bench:lag)',
  lines.map((l) => `- ${l}`),
);
