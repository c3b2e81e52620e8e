import assert from 'node:assert/strict';
import type pg from 'pg';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { type PostgresStore, createPostgresStore, migrate } from '../src/index.js';
import { freshSchema, pgAvailable, testPool } from './helpers.js';

interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  'Relation Name'?: string;
  Plans?: PlanNode[];
}

const nodes = (p: PlanNode): PlanNode[] => [p, ...(p.Plans ?? []).flatMap(nodes)];
const describePlan = (p: PlanNode) =>
  nodes(p)
    .map(
      (n) =>
        `${n['Node Type']}${n['Index Name'] ? `(${n['Index Name']})` : n['Relation Name'] ? `(${n['Relation Name']})` : ''}`,
    )
    .join(' > ');

/** The rule the claim must obey: no sequential scan, no explicit sort of the due rows. */
function badNodes(plan: PlanNode): string[] {
  return nodes(plan)
    .filter(
      (n) =>
        n['Node Type'] === 'Seq Scan' || n['Node Type'] === 'Sort' || n['Node Type'] === 'Incremental Sort',
    )
    .map((n) => `${n['Node Type']}${n['Relation Name'] ? ` on ${n['Relation Name']}` : ''}`);
}

describe('the claim query plan', () => {
  let skip: string | null = null;
  let pool: pg.Pool;
  let store: PostgresStore;
  const schema = freshSchema('explain');
  const now = new Date('2030-06-01T00:00:00.000Z');
  const params = () => [now.toISOString(), 100, 'sweeper-1', new Date(now.getTime() + 30_000).toISOString()];

  beforeAll(async () => {
    skip = await pgAvailable();
    if (skip) return;
    pool = testPool(4);
    await migrate(pool, { schema });
    store = createPostgresStore({ db: pool, schema });
    // 100,000 finished cases (no due time) and 2,000 active ones, 300 of them leased.
    const s = `"${schema}".grants`;
    await pool.query(
      `INSERT INTO ${s} (id, version, state, due_at, subject_id, requester_id, created_at, updated_at, audit_seq, doc)
       SELECT 'done-' || i, 5, 'verified', NULL, 's' || (i % 97), 'r', now(), now(), 0, '{}'::jsonb FROM generate_series(1, 100000) i`,
    );
    await pool.query(
      `INSERT INTO ${s} (id, version, state, due_at, subject_id, requester_id, created_at, updated_at, audit_seq, doc, lease_owner, lease_until)
       SELECT 'live-' || i, 3, 'issued', $1::timestamptz - (i || ' seconds')::interval + interval '1000 seconds', 's', 'r', now(), now(), 0, '{}'::jsonb,
              CASE WHEN i % 7 = 0 THEN 'other' END, CASE WHEN i % 7 = 0 THEN $1::timestamptz + interval '1 minute' END
       FROM generate_series(1, 2000) i`,
      [now.toISOString()],
    );
    await pool.query(`ANALYZE ${s}`);
  }, 60_000);

  afterAll(async () => {
    if (skip) return;
    await store.close();
    await pool.query(`DROP SCHEMA "${schema}" CASCADE`);
    await pool.end();
  });

  it('the checker itself catches a sequential scan and a sort (canary)', async (ctx) => {
    if (skip) return ctx.skip();
    const [row] = (
      await pool.query(`EXPLAIN (FORMAT JSON) SELECT id FROM "${schema}".grants ORDER BY updated_at LIMIT 5`)
    ).rows;
    const bad = badNodes(row['QUERY PLAN'][0].Plan);
    assert.ok(bad.length > 0, 'an unindexed ORDER BY must be flagged');
  });

  it('uses the partial due index, without a sequential scan or a sort (custom plan)', async (ctx) => {
    if (skip) return ctx.skip();
    const [row] = (await pool.query(`EXPLAIN (FORMAT JSON) ${store.claimSql()}`, params())).rows;
    const plan: PlanNode = row['QUERY PLAN'][0].Plan;
    assert.deepEqual(badNodes(plan), [], describePlan(plan));
    assert.ok(
      nodes(plan).some((n) => n['Index Name'] === 'grants_due_idx'),
      describePlan(plan),
    );
  });

  it('does the same with a generic plan (as a prepared statement reused by a pool)', async (ctx) => {
    if (skip) return ctx.skip();
    const client = await pool.connect();
    try {
      await client.query('SET plan_cache_mode = force_generic_plan');
      await client.query(`PREPARE claim_probe(timestamptz, int, text, timestamptz) AS ${store.claimSql()}`);
      // EXECUTE takes no bind parameters; with a forced generic plan the literal values do not matter.
      const [t, limit, owner, until] = params();
      const [row] = (
        await client.query(
          `EXPLAIN (FORMAT JSON) EXECUTE claim_probe('${t}', ${limit}, '${owner}', '${until}')`,
        )
      ).rows;
      const plan: PlanNode = row['QUERY PLAN'][0].Plan;
      assert.deepEqual(badNodes(plan), [], describePlan(plan));
      assert.ok(
        nodes(plan).some((n) => n['Index Name'] === 'grants_due_idx'),
        describePlan(plan),
      );
      await client.query('DEALLOCATE claim_probe');
    } finally {
      await client.query('RESET plan_cache_mode');
      client.release();
    }
  });

  it('claims the first due, unleased rows in (due_at, id) order', async (ctx) => {
    if (skip) return ctx.skip();
    const g = `"${schema}".grants`;
    const expected = (
      await pool.query(
        `SELECT id FROM ${g} WHERE due_at <= $1 AND (lease_until IS NULL OR lease_until <= $1) ORDER BY due_at, id LIMIT 100`,
        [now.toISOString()],
      )
    ).rows.map((r) => r.id);
    assert.equal(expected.length, 100);
    const claimed = await store.claimDue(now, 100, 30_000, 'sweeper-1');
    assert.equal(claimed.length, 100);
    const leased = (
      await pool.query(`SELECT id FROM ${g} WHERE lease_owner = 'sweeper-1' ORDER BY due_at, id`)
    ).rows.map((r) => r.id);
    assert.deepEqual(leased, expected);
  });
});
