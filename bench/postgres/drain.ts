/**
 * 100,000 cases expiring at the same instant, drained by 4 sweeper processes with a no-op
 * executor, side by side with (a) a raw set-based SQL sweep and (b) graphile-worker draining
 * 100,000 no-op jobs due at the same instant, all on the same database in one run.
 */
import { createPostgresStore, migrate } from '../../packages/store-postgres/src/index.js';
import { seedClones } from '../../packages/store-postgres/test/fixtures/grantline.js';
import { PG_URL, fmt, forkTs, pct, pool, sleep, stopAll, waitReady } from './common.js';

const N = Number(process.env.BENCH_CASES ?? 100_000);
const PROCS = 4;

export interface DrainResult {
  label: string;
  drainMs: number;
  p50: number;
  p99: number;
  note?: string;
}

/** Grantline: 4 processes, each `startSweeper({ limit: 500 })` over its own pool. */
export async function drainGrantline(): Promise<DrainResult> {
  const db = pool(8);
  const schema = 'bench_drain';
  await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await migrate(db, { schema });
  // Expiry is stamped ten minutes ahead; the workers' clocks are shifted so that it arrives 4 s
  // after they start (core's clock port), which lets seeding take as long as it needs.
  const expiresAt = new Date(Date.now() + 600_000);
  await seedClones(db, schema, N, { expiresAt });
  await db.query(`VACUUM ANALYZE ${schema}.grants`);
  const offset = expiresAt.getTime() - (Date.now() + 4_000);
  const children = Array.from({ length: PROCS }, (_, i) =>
    forkTs('../../packages/store-postgres/test/fixtures/sweeper-worker.ts', {
      PG_URL,
      SCHEMA: schema,
      INSTANCE: `bench-${i}`,
      CLOCK_OFFSET_MS: String(offset),
      LEASE_MS: '30000',
      LIMIT: '500',
      EXECUTOR: 'noop',
      POOL_MAX: '8',
    }),
  );
  await waitReady(children);
  const dueAtReal = expiresAt.getTime() - offset;
  for (;;) {
    const r = await db.query(
      `SELECT count(*)::int AS n FROM ${schema}.grants WHERE state IN ('issued', 'revoking')`,
    );
    if (r.rows[0].n === 0) break;
    await sleep(100);
  }
  const lags = await db.query(
    `SELECT (doc->'revocation'->>'lagToRevokedMs')::float8 AS lag FROM ${schema}.grants`,
  );
  const values = lags.rows.map((r) => Number(r.lag));
  await stopAll(children);
  await db.query(`DROP SCHEMA ${schema} CASCADE`);
  await db.end();
  void dueAtReal;
  return {
    label: 'grantline (4 processes)',
    drainMs: Math.max(...values),
    p50: pct(values, 50),
    p99: pct(values, 99),
  };
}

async function main() {
  const store = createPostgresStore;
  void store;
  const g = await drainGrantline();
  console.log(g, `${fmt(N / (g.drainMs / 1000))} cases/s`);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
