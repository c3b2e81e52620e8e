import assert from 'node:assert/strict';
import type { CasItem } from '@grantline/core';
import type pg from 'pg';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { type PostgresStore, createPostgresStore, migrate } from '../src/index.js';
import { PG_URL, freshSchema, makeEvents, makeGrant, nextVersion, pgAvailable, testPool } from './helpers.js';

/**
 * compareAndSetMany under concurrency on a real server: two batches over the same cases in
 * opposite order (what two sweepers whose claims overlap send) must not deadlock.
 */
describe('PostgreSQL compareAndSetMany', () => {
  let skip: string | null = null;
  let pool: pg.Pool;
  let store: PostgresStore;
  const schema = freshSchema('casmany');
  beforeAll(async () => {
    skip = await pgAvailable();
    if (skip) return;
    // The plan a large table gets (the primary key probed per item, in item order), forced here: on
    // a near-empty table the planner scans the heap and the lock order is accidental.
    pool = testPool(
      6,
      `${PG_URL}${PG_URL.includes('?') ? '&' : '?'}options=${encodeURIComponent('-c enable_seqscan=off -c enable_hashjoin=off -c enable_mergejoin=off')}`,
    );
    await migrate(pool, { schema });
    store = createPostgresStore({ db: pool, schema });
  });
  afterAll(async () => {
    if (skip) return;
    await store.close();
    await pool.query(`DROP SCHEMA "${schema}" CASCADE`);
    await pool.end();
  });

  it('two overlapping batches in opposite order do not deadlock: one commits, the other conflicts', async (ctx) => {
    if (skip) return ctx.skip();
    const made: { g: ReturnType<typeof makeGrant>; e: ReturnType<typeof makeEvents> }[] = [];
    for (const id of ['case-a', 'case-b']) {
      const g = makeGrant(`${schema}-${id}`);
      const e = makeEvents(g.id, undefined, ['requested']);
      await store.create(g, e);
      made.push({ g, e });
    }
    const item = (i: number, state: 'approved' | 'denied'): CasItem => {
      const { g, e } = made[i]!;
      const events = makeEvents(g.id, e[0], [state]);
      return { grant: nextVersion(g, { state }, events), expectedVersion: 1, events };
    };
    // Hold case a's row so that both batches queue behind it, then let them race.
    const holder = await pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM "${schema}".grants WHERE id = $1 FOR UPDATE`, [made[0]!.g.id]);
      const first = store.compareAndSetMany!([item(0, 'approved'), item(1, 'approved')]);
      await new Promise((r) => setTimeout(r, 200));
      const second = store.compareAndSetMany!([item(1, 'denied'), item(0, 'denied')]);
      await new Promise((r) => setTimeout(r, 200));
      await holder.query('COMMIT');
      const [a, b] = await Promise.allSettled([first, second]);
      assert.equal(a.status, 'fulfilled', `first batch: ${a.status === 'rejected' ? a.reason : ''}`);
      assert.equal(b.status, 'fulfilled', `second batch: ${b.status === 'rejected' ? b.reason : ''}`);
      const outcomes = [
        ...(a as PromiseFulfilledResult<unknown[]>).value,
        ...(b as PromiseFulfilledResult<unknown[]>).value,
      ] as {
        ok: boolean;
        error?: { code: string };
      }[];
      // Each case: exactly one writer of version 2 won; the loser got a conflict and wrote nothing.
      assert.equal(outcomes.filter((o) => o.ok).length, 2);
      assert.deepEqual(
        outcomes.filter((o) => !o.ok).map((o) => o.error?.code),
        ['ERR_CONFLICT', 'ERR_CONFLICT'],
      );
      for (const { g } of made) {
        assert.equal((await store.get(g.id))!.version, 2);
        assert.equal((await store.events(g.id)).length, 2);
      }
    } finally {
      holder.release();
    }
  });

  it('an item whose event is malformed fails alone; the others commit', async (ctx) => {
    if (skip) return ctx.skip();
    const a = makeGrant(`${schema}-m-a`);
    const b = makeGrant(`${schema}-m-b`);
    const ea = makeEvents(a.id, undefined, ['requested']);
    const eb = makeEvents(b.id, undefined, ['requested']);
    await store.create(a, ea);
    await store.create(b, eb);
    const na = makeEvents(a.id, ea[0], ['approved']);
    const nb = makeEvents(b.id, eb[0], ['approved']).map(({ at: _at, ...rest }) => rest) as typeof eb;
    const out = await store.compareAndSetMany!([
      { grant: nextVersion(a, { state: 'approved' }, na), expectedVersion: 1, events: na },
      { grant: nextVersion(b, { state: 'approved' }, nb), expectedVersion: 1, events: nb },
    ]);
    assert.equal(out[0]!.ok, true);
    assert.ok(!out[1]!.ok && out[1]!.error.code === 'ERR_STORE');
    assert.equal((await store.get(a.id))!.version, 2);
    assert.equal((await store.get(b.id))!.version, 1);
    assert.equal((await store.events(b.id)).length, 1);
  });
});
