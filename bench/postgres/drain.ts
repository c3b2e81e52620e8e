/**
 * 100,000 cases expiring at the same instant, drained by 4 sweeper processes with a no-op
 * executor, side by side with (a) a raw set-based SQL sweep and (b) graphile-worker draining
 * 100,000 no-op jobs due at the same instant, all on the same database in one run.
 */
import { migrate } from '../../packages/store-postgres/src/index.js';
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
  return {
    label: 'grantline (4 processes)',
    drainMs: Math.max(...values),
    p50: pct(values, 50),
    p99: pct(values, 99),
  };
}

/**
 * The floor for doing this in SQL at all: 4 connections each looping one set-based statement that
 * claims 1,000 due rows with SKIP LOCKED, marks them revoked and appends an audit event per case.
 * No executor call, no per-case hashing: not what Grantline can do, a reference point.
 */
export async function drainRawSql(): Promise<DrainResult> {
  const db = pool(PROCS + 1);
  const schema = 'bench_drain_raw';
  await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await migrate(db, { schema });
  const expiresAt = new Date(Date.now() + 600_000);
  await seedClones(db, schema, N, { expiresAt });
  await db.query(`VACUUM ANALYZE ${schema}.grants`);
  const s = schema;
  const sql = `
    WITH c AS (SELECT id FROM ${s}.grants WHERE due_at IS NOT NULL AND due_at <= $1 ORDER BY due_at, id LIMIT 1000 FOR UPDATE SKIP LOCKED),
    u AS (
      UPDATE ${s}.grants g SET state = 'revoked', version = g.version + 1, due_at = NULL, updated_at = clock_timestamp(),
        audit_seq = g.audit_seq + 1, doc = jsonb_set(jsonb_set(g.doc, '{state}', '"revoked"'), '{version}', to_jsonb(g.version + 1))
      WHERE g.id = ANY (ARRAY(SELECT id FROM c))
      RETURNING g.id, g.audit_seq, g.updated_at
    ),
    ins AS (
      INSERT INTO ${s}.audit_events (case_id, seq, type, at, doc)
      SELECT id, audit_seq, 'revoked', updated_at, jsonb_build_object('caseId', id, 'seq', audit_seq, 'type', 'revoked') FROM u
    )
    SELECT count(*)::int AS n FROM u`;
  const start = performance.now();
  const lags: number[] = [];
  await Promise.all(
    Array.from({ length: PROCS }, async () => {
      for (;;) {
        const r = await db.query(sql, [expiresAt.toISOString()]);
        const n = r.rows[0].n as number;
        if (n === 0) return;
        const lag = performance.now() - start;
        for (let i = 0; i < n; i++) lags.push(lag);
      }
    }),
  );
  const drainMs = performance.now() - start;
  await db.query(`DROP SCHEMA ${schema} CASCADE`);
  await db.end();
  return { label: 'raw set-based SQL (4 connections)', drainMs, p50: pct(lags, 50), p99: pct(lags, 99) };
}

/**
 * graphile-worker 0.16: 100,000 no-op jobs due at one instant, 4 worker processes of concurrency 8
 * (the same as the 4 sweepers' 8 in flight each). Jobs are added ten minutes ahead, then all made
 * due at T0 with one UPDATE. Completion is sampled every 50 ms (finished jobs are deleted), so its
 * p50/p99 are the times when half and 99% of the jobs were gone, to ±50 ms.
 */
export async function drainGraphile(): Promise<DrainResult> {
  const { runMigrations } = await import('graphile-worker');
  const db = pool(4);
  await db.query('DROP SCHEMA IF EXISTS graphile_worker CASCADE');
  await runMigrations({ connectionString: PG_URL });
  const later = new Date(Date.now() + 600_000).toISOString();
  for (let from = 1; from <= N; from += 10_000) {
    await db.query(
      `SELECT count(*) FROM graphile_worker.add_jobs((
         SELECT array_agg(ROW('noop', json_build_object('i', i), NULL, $1::timestamptz, NULL, NULL, NULL, NULL)::graphile_worker.job_spec)
         FROM generate_series($2::int, $3::int) i))`,
      [later, from, Math.min(N, from + 9_999)],
    );
  }
  await db.query('VACUUM ANALYZE graphile_worker._private_jobs');
  const children = Array.from({ length: PROCS }, () =>
    forkTs('./graphile-proc.ts', { PG_URL, CONCURRENCY: '8' }),
  );
  await waitReady(children);
  await sleep(1_000);
  await db.query('UPDATE graphile_worker._private_jobs SET run_at = now()');
  const start = performance.now();
  let p50 = Number.NaN;
  let p99 = Number.NaN;
  for (;;) {
    const left = (await db.query('SELECT count(*)::int AS n FROM graphile_worker._private_jobs')).rows[0]
      .n as number;
    const t = performance.now() - start;
    if (Number.isNaN(p50) && left <= N / 2) p50 = t;
    if (Number.isNaN(p99) && left <= N / 100) p99 = t;
    if (left === 0) break;
    await sleep(50);
  }
  const drainMs = performance.now() - start;
  await stopAll(children);
  await db.query('DROP SCHEMA graphile_worker CASCADE');
  await db.end();
  return {
    label: 'graphile-worker (4 processes x 8)',
    drainMs,
    p50,
    p99,
    note: 'p50/p99 sampled every 50 ms',
  };
}

async function main() {
  for (const f of [drainGrantline, drainRawSql, drainGraphile]) {
    const r = await f();
    console.log(
      r.label,
      `drain ${fmt(r.drainMs / 1000, 2)} s (${fmt(N / (r.drainMs / 1000), 0)} /s), p50 ${fmt(r.p50, 0)} ms, p99 ${fmt(r.p99, 0)} ms`,
    );
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
