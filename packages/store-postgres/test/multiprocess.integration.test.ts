import assert from 'node:assert/strict';
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type AuditEvent, verifyChain } from '@grantline/core';
import type pg from 'pg';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { createPostgresStore, migrate } from '../src/index.js';
import { seedClones } from './fixtures/grantline.js';
import { createTargetTables } from './fixtures/table-executor.js';
import { PG_URL, freshSchema, pgAvailable, testPool } from './helpers.js';

const CASES = 20_000;
const WORKERS = 4;
const CLAIM_LIMIT = 24; // cases each sweeper claims per pass
// Claims are small (24) and leases 5 s: a batch must finish well within its lease, or a second
// sweeper may take a case over and call the executor again (core does not renew leases).
const worker = fileURLToPath(new URL('./fixtures/sweeper-worker.ts', import.meta.url));

describe('four sweeper processes over one database', () => {
  let skip: string | null = null;
  let pool: pg.Pool;
  const schema = freshSchema('mp');
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    skip = await pgAvailable();
    if (skip) return;
    pool = testPool(16);
    await migrate(pool, { schema });
    await createTargetTables(pool, schema);
    // Every case expires one hour from now; the sweepers run with a clock two hours ahead, so from
    // their point of view all 20,000 expired at the same instant. Cases are cloned from one produced
    // by core (real audit chains), inserted in bulk to keep seeding out of the test's time.
    const t0 = Date.now();
    await seedClones(pool, schema, CASES, { expiresAt: new Date(Date.now() + 3600_000) });
    console.log(`multiprocess: seeded ${CASES} issued cases in ${Date.now() - t0} ms`);
    await pool.query(
      `INSERT INTO "${schema}".target_credentials (ref) SELECT id || ':t1' FROM "${schema}".grants`,
    );
  }, 120_000);

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    if (!skip) {
      await pool.query(`DROP SCHEMA "${schema}" CASCADE`);
      await pool.end();
    }
  });

  it('revokes 20,000 expiring cases exactly once each; a SIGKILLed sweeper loses nothing', async (ctx) => {
    if (skip) return ctx.skip();
    const spawnWorker = (i: number) => {
      const child = fork(worker, [], {
        execArgv: ['--conditions=source', '--import', 'tsx'],
        env: {
          ...process.env,
          PG_URL,
          SCHEMA: schema,
          INSTANCE: `w${i}`,
          CLOCK_OFFSET_MS: String(2 * 3600_000),
          LEASE_MS: '5000',
          LIMIT: String(CLAIM_LIMIT),
        },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      children.push(child);
      return child;
    };
    const started = Date.now();
    for (let i = 0; i < WORKERS; i++) spawnWorker(i);
    const count = async () => {
      const r = await pool.query(
        `SELECT count(*) FILTER (WHERE state = 'verified')::int AS verified, count(*) FILTER (WHERE state IN ('revoking','revoked','verified'))::int AS started FROM "${schema}".grants`,
      );
      return r.rows[0] as { verified: number; started: number };
    };
    let killed = false;
    let killedCalls = 0;
    for (;;) {
      const c = await count();
      if (!killed && c.verified >= CASES * 0.25) {
        children[0]!.kill('SIGKILL');
        killed = true;
        await new Promise((r) => children[0]!.once('exit', r));
        killedCalls = Number(
          (
            await pool.query(
              `SELECT count(*)::int AS n FROM "${schema}".target_revoke_calls WHERE instance = 'w0'`,
            )
          ).rows[0].n,
        );
      }
      if (c.verified === CASES) break;
      assert.ok(Date.now() - started < 400_000, `timed out with ${c.verified}/${CASES} verified`);
      await new Promise((r) => setTimeout(r, 200));
    }
    for (const c of children.slice(1)) {
      c.kill('SIGTERM');
      await new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r)));
    }
    assert.ok(killed && killedCalls > 0, 'the killed sweeper had done work before it died');

    // Audit: every lifecycle step of the revocation recorded exactly once per case.
    const perType = await pool.query(
      `SELECT type, count(*)::int AS n, count(DISTINCT case_id)::int AS cases FROM "${schema}".audit_events
       WHERE type IN ('revoke.requested','target.revoked','revoked','target.verified','verified') GROUP BY type ORDER BY type`,
    );
    assert.equal(perType.rows.length, 5);
    for (const row of perType.rows) assert.deepEqual([row.type, row.n, row.cases], [row.type, CASES, CASES]);

    // Executor calls: every case revoked; a second call only where the killed process had called
    // revoke but died before committing the result. Its removals are committed in groups, without
    // holding up the next case, so that is at most one claim of its (LIMIT cases), all first by w0.
    const calls = await pool.query(
      `SELECT case_id, count(*)::int AS n, array_agg(instance ORDER BY at) AS who FROM "${schema}".target_revoke_calls GROUP BY case_id`,
    );
    assert.equal(calls.rows.length, CASES, 'every case had its revoke call');
    const dup = calls.rows.filter((r) => r.n > 1);
    assert.ok(dup.length <= CLAIM_LIMIT, `${dup.length} cases were revoked twice`);
    for (const d of dup)
      assert.equal(d.who[0], 'w0', `case ${d.case_id} was revoked twice without the killed process involved`);
    const byInstance = await pool.query(
      `SELECT instance, count(*)::int AS n FROM "${schema}".target_revoke_calls GROUP BY instance ORDER BY instance`,
    );
    assert.equal(byInstance.rows.length, WORKERS, 'all four processes shared the work');
    console.log(
      `multiprocess: ${CASES} cases in ${Date.now() - started} ms; revoke calls per process ${JSON.stringify(byInstance.rows)}; repeated after SIGKILL: ${dup.length}`,
    );

    // The hash chains of a sample still verify, and no global_seq is repeated.
    const sample = await pool.query(`SELECT id FROM "${schema}".grants ORDER BY random() LIMIT 200`);
    const store = createPostgresStore({ db: pool, schema });
    for (const { id } of sample.rows) {
      const evs: AuditEvent[] = await store.events(id);
      assert.ok(verifyChain(id, evs).valid, `chain of ${id}`);
    }
    const g = await pool.query(
      `SELECT count(*)::int AS n, count(DISTINCT global_seq)::int AS d FROM "${schema}".audit_events`,
    );
    assert.equal(g.rows[0].n, g.rows[0].d);
  }, 500_000);
});
