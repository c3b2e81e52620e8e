import assert from 'node:assert/strict';
import { ErrorCodes, isGrantlineError } from '@grantline/core';
import type pg from 'pg';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { createPostgresStore, migrate } from '../src/index.js';
import { freshSchema, makeEvents, makeGrant, pgAvailable, testPool } from './helpers.js';

const skip = await pgAvailable();

describe.skipIf(skip !== null)('store-postgres in a host transaction (mode "transaction")', () => {
  let pool: pg.Pool;
  const schema = freshSchema('txm');
  beforeAll(async () => {
    pool = testPool(6);
    await migrate(pool, { schema });
  });
  afterAll(async () => {
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await pool.end();
  });

  // A failed assertion must not hand a connection with an open transaction back to the pool.
  const release = async (...clients: pg.PoolClient[]) => {
    for (const c of clients) {
      await c.query('ROLLBACK').catch(() => undefined);
      c.release();
    }
  };
  const pidOf = async (c: pg.PoolClient) =>
    Number((await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid);
  const advisoryLocks = async (pid: number, granted: boolean) =>
    Number(
      (
        await pool.query(
          `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = $1 AND granted = $2`,
          [pid, granted],
        )
      ).rows[0].n,
    );

  it('a store call that fails inside the host transaction does not abort it (savepoint): earlier and later work commits', async () => {
    const outside = createPostgresStore({ db: pool, schema });
    const client = await pool.connect();
    try {
      const store = createPostgresStore({ db: client, schema, mode: 'transaction' });
      await client.query('BEGIN');
      const before = makeGrant(`sp-before-${Date.now()}`);
      await store.create(before, makeEvents(before.id, undefined, ['requested']));
      const bad = makeGrant(`sp-bad-${Date.now()}`, { justification: { reason: 'nul\u0000byte' } });
      await assert.rejects(
        store.create(bad, makeEvents(bad.id, undefined, ['requested'])),
        (e: unknown) => isGrantlineError(e) && e.code === ErrorCodes.VALIDATION,
      );
      const after = makeGrant(`sp-after-${Date.now()}`);
      await store.create(after, makeEvents(after.id, undefined, ['requested']));
      await client.query('COMMIT');
      assert.equal((await outside.get(before.id))?.id, before.id);
      assert.equal((await outside.get(after.id))?.id, after.id);
      assert.equal(await outside.get(bad.id), null);
      assert.deepEqual(await outside.events(bad.id), []);
      await store.close();
    } finally {
      await release(client);
      await outside.close();
    }
  });

  it('a failed store call leaves no savepoint open in the host transaction (ROLLBACK TO keeps it; it is released too)', async () => {
    const client = await pool.connect();
    try {
      const store = createPostgresStore({ db: client, schema, mode: 'transaction' });
      await client.query('BEGIN');
      for (let i = 0; i < 3; i++) {
        const bad = makeGrant(`sp-leak-${i}-${Date.now()}`, { justification: { reason: 'nul\u0000byte' } });
        await assert.rejects(store.create(bad, makeEvents(bad.id, undefined, ['requested'])));
      }
      // Before, each failure left one `grantline_op` savepoint behind: three RELEASEs succeeded.
      await assert.rejects(client.query('RELEASE SAVEPOINT grantline_op'), /does not exist/);
      await client.query('ROLLBACK');
      await store.close();
    } finally {
      await release(client);
    }
  });

  it('allEvents holds no lock once it returns, so writers of the schema are not stalled until the host commits', async () => {
    const outside = createPostgresStore({ db: pool, schema });
    const seed = makeGrant(`seed-${Date.now()}`);
    await outside.create(seed, makeEvents(seed.id, undefined, ['requested']));
    const client = await pool.connect();
    try {
      const store = createPostgresStore({ db: client, schema, mode: 'transaction' });
      await client.query('BEGIN');
      assert.ok((await store.allEvents(0, 10)).some((e) => e.caseId === seed.id));
      assert.equal(
        await advisoryLocks(await pidOf(client), true),
        0,
        'no advisory lock left held by the host',
      );
      // A writer elsewhere completes while the host's transaction is still open.
      const w = makeGrant(`writer-${Date.now()}`);
      assert.equal((await outside.create(w, makeEvents(w.id, undefined, ['requested']))).created, true);
      await client.query('COMMIT');
      await store.close();
    } finally {
      await release(client);
      await outside.close();
    }
  });

  it('allEvents still waits for an appender whose global_seq is uncommitted, then returns its event', async () => {
    const writerClient = await pool.connect();
    const readerClient = await pool.connect();
    try {
      const writer = createPostgresStore({ db: writerClient, schema, mode: 'transaction' });
      const reader = createPostgresStore({ db: readerClient, schema, mode: 'transaction' });
      await writerClient.query('BEGIN');
      const g = makeGrant(`inflight-${Date.now()}`);
      await writer.create(g, makeEvents(g.id, undefined, ['requested']));
      await readerClient.query('BEGIN');
      const readerPid = await pidOf(readerClient);
      const read = reader.allEvents(0, 100_000);
      // Wait (no deadline but the test's) until the reader is queued behind the writer's shared lock.
      while ((await advisoryLocks(readerPid, false)) === 0) await new Promise((r) => setTimeout(r, 20));
      await writerClient.query('COMMIT');
      const events = await read;
      assert.ok(
        events.some((e) => e.caseId === g.id),
        'the committed event is returned',
      );
      assert.ok(events.every((e, i) => i === 0 || e.globalSeq! > events[i - 1]!.globalSeq!));
      assert.equal(await advisoryLocks(readerPid, true), 0);
      await readerClient.query('COMMIT');
      await writer.close();
      await reader.close();
    } finally {
      await release(writerClient, readerClient);
    }
  });

  it('allEvents refuses a REPEATABLE READ host transaction (its old snapshot could skip a global_seq)', async () => {
    const client = await pool.connect();
    try {
      const store = createPostgresStore({ db: client, schema, mode: 'transaction' });
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await assert.rejects(
        store.allEvents(0, 10),
        (e: unknown) =>
          isGrantlineError(e) && e.code === ErrorCodes.VALIDATION && /READ COMMITTED/.test(e.message),
      );
      assert.equal(await advisoryLocks(await pidOf(client), true), 0);
      assert.equal((await client.query('SELECT 1 AS one')).rows[0].one, 1, 'the host transaction is usable');
      await client.query('ROLLBACK');
      await store.close();
    } finally {
      await release(client);
    }
  });
  it('two host transactions that appended and then call allEvents at once: one gets a retryable ERR_STORE and stays usable, the other returns when that one ends', async () => {
    const [a, b] = [await pool.connect(), await pool.connect()];
    try {
      const [sa, sb] = [a, b].map((db) => createPostgresStore({ db, schema, mode: 'transaction' }));
      await a.query('BEGIN');
      await b.query('BEGIN');
      const [ga, gb] = [makeGrant(`dl-a-${Date.now()}`), makeGrant(`dl-b-${Date.now()}`)];
      await sa!.create(ga, makeEvents(ga.id, undefined, ['requested']));
      await sb!.create(gb, makeEvents(gb.id, undefined, ['requested']));
      const settle = (p: Promise<unknown>, who: 'a' | 'b') =>
        p.then(
          () => ({ who, err: undefined }),
          (err: unknown) => ({ who, err }),
        );
      const ra = settle(sa!.allEvents(0, 100_000), 'a');
      const rb = settle(sb!.allEvents(0, 100_000), 'b');
      const first = await Promise.race([ra, rb]);
      assert.ok(isGrantlineError(first.err), 'the first to finish is the deadlock victim');
      assert.equal(first.err.code, ErrorCodes.STORE);
      assert.equal(first.err.retryable, true);
      const victim = first.who === 'a' ? a : b;
      assert.equal((await victim.query('SELECT 1 AS one')).rows[0].one, 1, 'its host transaction is usable');
      await victim.query('COMMIT');
      const second = await (first.who === 'a' ? rb : ra);
      assert.equal(second.err, undefined);
      await (first.who === 'a' ? b : a).query('COMMIT');
      for (const st of [sa, sb]) await st!.close();
    } finally {
      await release(a, b);
    }
  });
});
