import assert from 'node:assert/strict';
import { ErrorCodes, GRANT_STATES, isGrantlineError } from '@grantline/core';
import pg from 'pg';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { createPostgresStore, loadMigrations, migrate, stateCheckSql } from '../src/index.js';
import { PG_URL, freshSchema, makeEvents, makeGrant, pgAvailable, testPool } from './helpers.js';

const skip = await pgAvailable();
const soon = () => new Date(Date.now() + 5_000).toISOString();

describe.skipIf(skip !== null)('store-postgres on a real server', () => {
  let pool: pg.Pool;
  const schema = freshSchema('srv');
  beforeAll(async () => {
    pool = testPool(8);
    await migrate(pool, { schema });
  });
  afterAll(async () => {
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await pool.end();
  });

  it('migrate: four instances starting at once apply each migration exactly once', async () => {
    const s = freshSchema('mig');
    const pools = Array.from({ length: 4 }, () => testPool(2));
    try {
      const results = await Promise.all(pools.map((p) => migrate(p, { schema: s })));
      const shipped = (await loadMigrations()).map((m) => m.version);
      assert.deepEqual(results.flatMap((r) => r.applied).sort(), shipped);
      assert.equal(results.filter((r) => r.statesUpdated).length, 1);
      const again = await migrate(pool, { schema: s });
      assert.deepEqual(again, { schema: s, applied: [], statesUpdated: false });
      // A shipped migration edited after it was applied is refused, not skipped.
      await pool.query(`UPDATE "${s}".grantline_migrations SET checksum = 'edited' WHERE version = 1`);
      await assert.rejects(
        migrate(pool, { schema: s }),
        (e: unknown) =>
          isGrantlineError(e) &&
          e.code === ErrorCodes.STORE &&
          /changed after it was applied/.test(e.message),
      );
    } finally {
      await pool.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
      await Promise.all(pools.map((p) => p.end()));
    }
  });

  it('migrate: the state CHECK only widens (an older instance in a rolling upgrade never narrows it)', async () => {
    const s = freshSchema('chk');
    try {
      await migrate(pool, { schema: s });
      const constraint = async () =>
        String(
          (
            await pool.query(
              `SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conname = 'grants_state_check' AND conrelid = '"${s}".grants'::regclass`,
            )
          ).rows[0].def,
        );
      // A newer core added a state: simulate what its migrate wrote.
      const newer = stateCheckSql([...GRANT_STATES, 'archived']);
      await pool.query(
        `ALTER TABLE "${s}".grants DROP CONSTRAINT grants_state_check, ADD CONSTRAINT grants_state_check ${newer}`,
      );
      await pool.query(`UPDATE "${s}".grantline_meta SET value = $1 WHERE key = 'state_check'`, [newer]);
      // This (older) core migrates again: nothing narrows.
      assert.deepEqual(await migrate(pool, { schema: s }), { schema: s, applied: [], statesUpdated: false });
      assert.match(await constraint(), /'archived'/);
      // A stored CHECK missing one of core's states is widened, keeping the states it had.
      const older = stateCheckSql([...GRANT_STATES.filter((x) => x !== 'failed'), 'archived']);
      await pool.query(
        `ALTER TABLE "${s}".grants DROP CONSTRAINT grants_state_check, ADD CONSTRAINT grants_state_check ${older}`,
      );
      await pool.query(`UPDATE "${s}".grantline_meta SET value = $1 WHERE key = 'state_check'`, [older]);
      assert.equal((await migrate(pool, { schema: s })).statesUpdated, true);
      const def = await constraint();
      assert.match(def, /'failed'/);
      assert.match(def, /'archived'/);
    } finally {
      await pool.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
    }
  });

  it('migrate and the store refuse schema names that are not plain identifiers', async () => {
    for (const bad of ['Grantline', 'a"; DROP SCHEMA public; --', '', '1abc', 'x'.repeat(64)]) {
      await assert.rejects(
        migrate(pool, { schema: bad }),
        (e: unknown) => isGrantlineError(e) && e.code === ErrorCodes.VALIDATION,
      );
      assert.throws(
        () => createPostgresStore({ db: pool, schema: bad }),
        (e: unknown) => isGrantlineError(e) && e.code === ErrorCodes.VALIDATION,
      );
    }
  });

  it('LISTEN/NOTIFY: another process’s change that makes a case due soon wakes this store’s listeners', async () => {
    const writer = createPostgresStore({ db: pool, schema });
    const reader = createPostgresStore({ db: pool, schema, listen: PG_URL });
    const seen: string[] = [];
    let wake: (() => void) | undefined;
    reader.onChange!((id) => {
      seen.push(id);
      wake?.();
    });
    const waitFor = (id: string, ms: number) =>
      new Promise<boolean>((resolve) => {
        if (seen.includes(id)) return resolve(true);
        const t = setTimeout(() => resolve(false), ms);
        wake = () => {
          if (seen.includes(id)) {
            clearTimeout(t);
            resolve(true);
          }
        };
      });
    try {
      // The LISTEN connection opens on the first subscription; wait until the server has it.
      for (let i = 0; i < 50; i++) {
        const r = await pool.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = $1`, [
          `LISTEN "grantline:${schema}"`,
        ]);
        if (r.rows[0].n > 0) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const due = makeGrant(`listen-due-${Date.now()}`, { dueAt: soon() });
      await writer.create(due, makeEvents(due.id, undefined, ['requested']));
      assert.ok(await waitFor(due.id, 5_000), 'notified of a case due in 5 s');
      const idle = makeGrant(`listen-idle-${Date.now()}`, { dueAt: null });
      await writer.create(idle, makeEvents(idle.id, undefined, ['requested']));
      assert.equal(await waitFor(idle.id, 500), false, 'no wake-up for a case with nothing due');

      // Kill the LISTEN connection: the store reconnects and notifications flow again.
      const killed = await pool.query(
        `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE query = $1`,
        [`LISTEN "grantline:${schema}"`],
      );
      assert.ok(killed.rows.length >= 1);
      let delivered = false;
      for (let i = 0; i < 40 && !delivered; i++) {
        const again = makeGrant(`listen-again-${Date.now()}-${i}`, { dueAt: soon() });
        await writer.create(again, makeEvents(again.id, undefined, ['requested']));
        delivered = await waitFor(again.id, 250);
      }
      assert.ok(delivered, 'notifications resume after the LISTEN connection was killed');
    } finally {
      await reader.close();
      await writer.close();
    }
  });

  it('transaction mode: writes commit or roll back with the host’s own transaction', async () => {
    const client = await pool.connect();
    try {
      const store = createPostgresStore({ db: client, schema, mode: 'transaction' });
      const outside = createPostgresStore({ db: pool, schema });
      await client.query('BEGIN');
      const a = makeGrant(`tx-rollback-${Date.now()}`);
      await store.create(a, makeEvents(a.id, undefined, ['requested']));
      assert.equal((await store.get(a.id))?.id, a.id, 'visible inside the transaction');
      assert.equal(await outside.get(a.id), null, 'invisible outside before commit');
      await client.query('ROLLBACK');
      assert.equal(await outside.get(a.id), null);
      assert.deepEqual(await outside.events(a.id), []);

      await client.query('BEGIN');
      const b = makeGrant(`tx-commit-${Date.now()}`);
      await store.create(b, makeEvents(b.id, undefined, ['requested']));
      await client.query(`INSERT INTO "${schema}".grantline_meta (key, value) VALUES ($1, 'host row')`, [
        `host-${b.id}`,
      ]);
      await client.query('COMMIT');
      assert.equal((await outside.get(b.id))?.id, b.id);
      assert.equal((await outside.events(b.id)).length, 1);
      // allEvents in transaction mode uses a SAVEPOINT, never BEGIN/COMMIT of its own.
      await client.query('BEGIN');
      assert.ok((await store.allEvents(0, 10)).length > 0);
      await client.query('ROLLBACK');
      await outside.close();
      await store.close();
    } finally {
      client.release();
    }
  });

  it('a connection the server dropped surfaces as a retryable ERR_STORE; nothing half-written', async () => {
    const client = new pg.Client({ connectionString: PG_URL });
    client.on('error', () => undefined);
    await client.connect();
    const store = createPostgresStore({ db: client, schema });
    const pid = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    await pool.query('SELECT pg_terminate_backend($1)', [pid]);
    const g = makeGrant(`dropped-${Date.now()}`);
    await assert.rejects(store.create(g, makeEvents(g.id, undefined, ['requested'])), (e: unknown) => {
      assert.ok(isGrantlineError(e));
      assert.equal(e.code, ErrorCodes.STORE);
      assert.equal(e.retryable, true);
      return true;
    });
    const outside = createPostgresStore({ db: pool, schema });
    assert.equal(await outside.get(g.id), null);
    await store.close();
    await outside.close();
    await client.end().catch(() => undefined);
  });
});
