/**
 * Claim latency with 10,000 and with 1,000,000 finished cases in the table (1,000 due cases in
 * both): the claim walks the partial due index, so history should not change its cost.
 */
import { createPostgresStore, migrate } from '../../packages/store-postgres/src/index.js';
import { pct, pool } from './common.js';

const ITER = 300;

export interface ClaimResult {
  finished: number;
  p50: number;
  p99: number;
}

export async function benchClaim(): Promise<ClaimResult[]> {
  const db = pool(4);
  const schema = 'bench_claim';
  await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await migrate(db, { schema });
  const store = createPostgresStore({ db, schema });
  const g = `${schema}.grants`;
  // A realistic row width: finished cases carry a ~1.5 kB document like real ones.
  const doc = JSON.stringify({ pad: 'x'.repeat(1500) });
  const addFinished = (from: number, to: number) =>
    db.query(
      `INSERT INTO ${g} (id, version, state, due_at, subject_id, requester_id, created_at, updated_at, audit_seq, doc)
       SELECT 'done-' || lpad(i::text, 8, '0'), 5, 'verified', NULL, 's' || (i % 997), 'r', now(), now(), 5, $3::jsonb
       FROM generate_series($1::int, $2::int) i`,
      [from, to, doc],
    );
  const base = Date.parse('2030-01-01T00:00:00.000Z');
  await db.query(
    `INSERT INTO ${g} (id, version, state, due_at, subject_id, requester_id, created_at, updated_at, audit_seq, doc)
     SELECT 'live-' || lpad(i::text, 6, '0'), 3, 'issued', $1::timestamptz + (i || ' milliseconds')::interval, 's', 'r', now(), now(), 3,
            jsonb_build_object('id', 'live-' || lpad(i::text, 6, '0'), 'dueAt', $1::timestamptz + (i || ' milliseconds')::interval)
     FROM generate_series(1, 1000) i`,
    [new Date(base).toISOString()],
  );
  const results: ClaimResult[] = [];
  let t = base + 10_000;
  const measure = async (finished: number) => {
    await db.query(`VACUUM ANALYZE ${g}`);
    const lat: number[] = [];
    for (let i = 0; i < ITER + 20; i++) {
      // Each claim happens after the previous lease ended, so it claims the same first 100 rows.
      t += 2_000;
      const s = performance.now();
      const claimed = await store.claimDue(new Date(t), 100, 1_000, 'bench');
      const ms = performance.now() - s;
      if (claimed.length !== 100) throw new Error(`claimed ${claimed.length}`);
      if (i >= 20) lat.push(ms);
    }
    results.push({ finished, p50: pct(lat, 50), p99: pct(lat, 99) });
  };
  await addFinished(1, 10_000);
  await measure(10_000);
  for (let from = 10_001; from <= 1_000_000; from += 200_000)
    await addFinished(from, Math.min(1_000_000, from + 199_999));
  await measure(1_000_000);
  await store.close();
  await db.query(`DROP SCHEMA ${schema} CASCADE`);
  await db.end();
  return results;
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await benchClaim());
