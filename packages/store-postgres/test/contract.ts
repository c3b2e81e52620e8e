import assert from 'node:assert/strict';
import { type AuditEvent, ErrorCodes, type GrantStore, isGrantlineError, verifyChain } from '@grantline/core';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { makeEvents, makeGrant, nextVersion } from './helpers.js';

/** What a backend under test provides. */
export interface Backend {
  store: GrantStore;
  /** Runs raw SQL against the same database, as an attacker or operator with access would. */
  raw(sql: string, values?: unknown[]): Promise<Record<string, unknown>[]>;
  schema: string;
  /** A second, independent store over the same tables (another process, in effect). */
  other(): GrantStore;
  teardown(): Promise<void>;
}

const code = async (p: Promise<unknown>): Promise<{ code: string; retryable: boolean }> => {
  try {
    await p;
  } catch (err) {
    assert.ok(isGrantlineError(err), `expected a GrantlineError, got ${String(err)}`);
    return { code: err.code, retryable: err.retryable };
  }
  assert.fail('expected a rejection');
};

/**
 * The GrantStore contract from ports.ts, run against one backend. (The lead's
 * `describeStoreConformance` kit from @grantline/core/testing is run in addition once it lands.)
 */
export function describeContract(name: string, setup: () => Promise<Backend | null>): void {
  describe(`${name}: GrantStore contract`, () => {
    let b: Backend | null = null;
    let n = 0;
    const id = () => `case-${++n}-${Math.random().toString(36).slice(2, 8)}`;
    beforeAll(async () => {
      b = await setup();
    });
    afterAll(async () => {
      await b?.teardown();
    });
    const be = () => {
      if (!b) throw new Error('backend unavailable');
      return b;
    };
    const countEvents = async (caseId: string) =>
      Number(
        (
          await be().raw(`SELECT count(*)::int AS n FROM "${be().schema}".audit_events WHERE case_id = $1`, [
            caseId,
          ])
        )[0]!.n,
      );

    it('creates, reads back equal copies, and rejects a duplicate id', async (ctx) => {
      if (!b) return ctx.skip();
      const g = makeGrant(id());
      const evs = makeEvents(g.id, undefined, ['requested']);
      const res = await b.store.create(g, evs);
      assert.equal(res.created, true);
      const got = await b.store.get(g.id);
      assert.deepEqual(got, g);
      got!.state = 'denied';
      assert.equal((await b.store.get(g.id))!.state, 'requested', 'returned objects are copies');
      assert.deepEqual(await code(b.store.create(g, evs)), { code: ErrorCodes.CONFLICT, retryable: false });
      assert.equal(await b.store.get('nope'), null);
    });

    it('honours idempotency keys: same key returns the first case, writes nothing', async (ctx) => {
      if (!b) return ctx.skip();
      const key = `key-${id()}`;
      const g1 = makeGrant(id(), { idempotencyKey: key });
      const g2 = makeGrant(id(), { idempotencyKey: key });
      assert.equal((await b.store.create(g1, makeEvents(g1.id, undefined, ['requested']))).created, true);
      const again = await b.store.create(g2, makeEvents(g2.id, undefined, ['requested']));
      assert.equal(again.created, false);
      assert.equal(again.grant.id, g1.id);
      assert.equal(await b.store.get(g2.id), null);
      assert.equal(await countEvents(g2.id), 0);
      assert.equal((await b.store.findByIdempotencyKey(key))!.id, g1.id);
      assert.equal(await b.store.findByIdempotencyKey('missing'), null);
      // Racing creates with one key: exactly one is created.
      const key2 = `race-${id()}`;
      const results = await Promise.all(
        Array.from({ length: 8 }, () => {
          const g = makeGrant(id(), { idempotencyKey: key2 });
          return be().store.create(g, makeEvents(g.id, undefined, ['requested']));
        }),
      );
      assert.equal(results.filter((r) => r.created).length, 1);
      assert.equal(new Set(results.map((r) => r.grant.id)).size, 1);
    });

    it('compare-and-set: writes grant and events together, bumps version, refuses stale versions', async (ctx) => {
      if (!b) return ctx.skip();
      const g = makeGrant(id());
      const e1 = makeEvents(g.id, undefined, ['requested']);
      await b.store.create(g, e1);
      const e2 = makeEvents(g.id, e1[0], ['approved', 'note']);
      const g2 = nextVersion(g, { state: 'approved' }, e2);
      assert.deepEqual(await b.store.compareAndSet(g2, 1, e2), g2);
      assert.deepEqual(await b.store.get(g.id), g2);
      const evs = await b.store.events(g.id);
      assert.deepEqual(
        evs.map((e) => e.seq),
        [1, 2, 3],
      );
      assert.ok(verifyChain(g.id, evs).valid);
      assert.ok(evs.every((e, i) => i === 0 || e.globalSeq! > evs[i - 1]!.globalSeq!));
      assert.deepEqual(
        (await b.store.events(g.id, 2)).map((e) => e.seq),
        [3],
      );
      // Stale version: nothing written.
      const e3 = makeEvents(g.id, e2[1], ['denied']);
      assert.deepEqual(await code(b.store.compareAndSet(nextVersion(g, { state: 'denied' }, e3), 1, e3)), {
        code: ErrorCodes.CONFLICT,
        retryable: true,
      });
      assert.equal(await countEvents(g.id), 3);
      assert.equal((await b.store.get(g.id))!.version, 2);
      // Unknown case.
      const ghost = makeGrant(id(), { version: 2 });
      assert.equal((await code(b.store.compareAndSet(ghost, 1, []))).code, ErrorCodes.NOT_FOUND);
      // Wrong new version.
      assert.equal((await code(b.store.compareAndSet({ ...g2, version: 9 }, 2, []))).code, ErrorCodes.STORE);
    });

    it('refuses audit events out of sequence and writes nothing', async (ctx) => {
      if (!b) return ctx.skip();
      const g = makeGrant(id());
      const e1 = makeEvents(g.id, undefined, ['requested']);
      await b.store.create(g, e1);
      const gap = makeEvents(g.id, { ...e1[0]!, seq: 5 }, ['x']);
      assert.equal(
        (await code(b.store.compareAndSet(nextVersion(g, {}, gap), 1, gap))).code,
        ErrorCodes.STORE,
      );
      const dup = makeEvents(g.id, undefined, ['x']);
      assert.equal(
        (await code(b.store.compareAndSet(nextVersion(g, {}, dup), 1, dup))).code,
        ErrorCodes.STORE,
      );
      const wrongCase = makeEvents('other', e1[0], ['x']);
      assert.equal(
        (await code(b.store.compareAndSet(nextVersion(g, {}, wrongCase), 1, wrongCase))).code,
        ErrorCodes.STORE,
      );
      assert.equal(await countEvents(g.id), 1);
      assert.equal((await b.store.get(g.id))!.version, 1);
      const badCreate = makeGrant(id());
      assert.equal(
        (await code(b.store.create(badCreate, makeEvents(badCreate.id, e1[0], ['x'])))).code,
        ErrorCodes.STORE,
      );
      assert.equal(await b.store.get(badCreate.id), null);
    });

    it('exactly one of many racing writers of a version commits', async (ctx) => {
      if (!b) return ctx.skip();
      const g = makeGrant(id());
      const e1 = makeEvents(g.id, undefined, ['requested']);
      await b.store.create(g, e1);
      const stores = [b.store, b.other(), b.store, b.other(), b.store, b.other(), b.store, b.other()];
      const results = await Promise.allSettled(
        stores.map((s, i) => {
          const e = makeEvents(g.id, e1[0], [`writer-${i}`]);
          return s.compareAndSet(nextVersion(g, { justification: { reason: `w${i}` } }, e), 1, e);
        }),
      );
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
      for (const r of results) if (r.status === 'rejected') assert.equal(r.reason.code, ErrorCodes.CONFLICT);
      const evs = await b.store.events(g.id);
      assert.equal(evs.length, 2);
      const winner = (await b.store.get(g.id))!;
      assert.equal(evs[1]!.type, `writer-${winner.justification.reason.slice(1)}`);
    });

    it('claimDue: due cases in (dueAt, id) order, leased to one owner until expiry or a write', async (ctx) => {
      if (!b) return ctx.skip();
      const prefix = id();
      const t = Date.parse('2031-01-01T00:00:00.000Z');
      const iso = (ms: number) => new Date(t + ms).toISOString();
      const specs: [string, string | null][] = [
        [`${prefix}-c`, iso(-3000)],
        [`${prefix}-a`, iso(-1000)],
        [`${prefix}-b`, iso(-1000)],
        [`${prefix}-later`, iso(60_000)],
        [`${prefix}-done`, null],
      ];
      for (const [gid, due] of specs)
        await b.store.create(makeGrant(gid, { dueAt: due }), makeEvents(gid, undefined, ['requested']));
      // Only this test's cases are due before `t` (others use 2030-01-02 due times, which are earlier!),
      // so claim with a wide limit and keep ours.
      const mine = (gs: { id: string }[]) => gs.map((g) => g.id).filter((x) => x.startsWith(prefix));
      const first = await b.store.claimDue(new Date(t), 10_000, 5_000, 'w1');
      assert.deepEqual(mine(first), [`${prefix}-c`, `${prefix}-a`, `${prefix}-b`]);
      const dueOrder = first.map((g) => `${g.dueAt}|${g.id}`);
      assert.deepEqual(dueOrder, [...dueOrder].sort(), 'ordered by dueAt then id');
      assert.deepEqual(
        mine(await b.other().claimDue(new Date(t + 1000), 10_000, 5_000, 'w2')),
        [],
        'leased cases are not handed out again',
      );
      // A write releases the lease.
      const a = (await b.store.get(`${prefix}-a`))!;
      const ev = makeEvents(a.id, (await b.store.events(a.id))[0], ['touched']);
      await b.store.compareAndSet(nextVersion(a, {}, ev), a.version, ev);
      assert.deepEqual(mine(await b.other().claimDue(new Date(t + 1000), 10_000, 5_000, 'w2')), [
        `${prefix}-a`,
      ]);
      // Lease expiry frees the rest.
      assert.deepEqual(mine(await b.other().claimDue(new Date(t + 5_000), 10_000, 5_000, 'w3')), [
        `${prefix}-c`,
        `${prefix}-b`,
      ]);
      // Limit is honoured.
      assert.equal((await b.store.claimDue(new Date(t + 100_000), 1, 1000, 'w4')).length, 1);
      assert.deepEqual(await b.store.claimDue(new Date(t + 100_000), 0, 1000, 'w4'), []);
    });

    it('nextDue: the earliest due time, or the end of a lease when that is later', async (ctx) => {
      if (!b) return ctx.skip();
      const next = await b.store.nextDue();
      assert.ok(next instanceof Date);
      const rows = await b.raw(
        `SELECT min(greatest(due_at, coalesce(lease_until, due_at))) AS m FROM "${b.schema}".grants WHERE due_at IS NOT NULL`,
      );
      assert.equal(next.getTime(), new Date(rows[0]!.m as Date).getTime());
    });

    it('list: filters, newest first, paged by cursor', async (ctx) => {
      if (!b) return ctx.skip();
      const subject = `subj-${id()}`;
      const made: string[] = [];
      for (let i = 0; i < 7; i++) {
        const gid = `${subject}-${i}`;
        made.push(gid);
        const created = new Date(Date.parse('2030-06-01T00:00:00.000Z') + (i % 3) * 1000).toISOString();
        await b.store.create(
          makeGrant(gid, {
            subject: { id: subject, kind: 'workload', roles: [], teams: [] },
            createdAt: created,
            state: i % 2 ? 'approved' : 'requested',
          }),
          makeEvents(gid, undefined, ['requested']),
        );
      }
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await b.store.list({ subjectId: subject, limit: 3, ...(cursor ? { cursor } : {}) });
        assert.ok(page.grants.length <= 3);
        seen.push(...page.grants.map((g) => g.id));
        cursor = page.nextCursor;
      } while (cursor);
      const expected = [...made].sort((x, y) => {
        const cx = Number(x.slice(-1)) % 3;
        const cy = Number(y.slice(-1)) % 3;
        return cx === cy ? (x < y ? 1 : -1) : cy - cx;
      });
      assert.deepEqual(seen, expected);
      const approved = await b.store.list({ subjectId: subject, states: ['approved'], limit: 100 });
      assert.deepEqual(approved.grants.map((g) => g.id).sort(), made.filter((_, i) => i % 2).sort());
      assert.equal((await b.store.list({ requesterId: 'nobody', limit: 10 })).grants.length, 0);
      assert.equal(
        (await code(b.store.list({ limit: 10, cursor: 'not-a-cursor' }))).code,
        ErrorCodes.VALIDATION,
      );
    });

    it('allEvents: store-wide, in globalSeq order, paged', async (ctx) => {
      if (!b) return ctx.skip();
      const all: AuditEvent[] = [];
      let after = 0;
      for (;;) {
        const page = await b.store.allEvents(after, 7);
        if (page.length === 0) break;
        all.push(...page);
        after = page[page.length - 1]!.globalSeq!;
      }
      const total = Number((await b.raw(`SELECT count(*)::int AS n FROM "${b.schema}".audit_events`))[0]!.n);
      assert.equal(all.length, total);
      assert.ok(all.every((e, i) => i === 0 || e.globalSeq! > all[i - 1]!.globalSeq!));
    });

    it('onChange reports this store’s writes', async (ctx) => {
      if (!b) return ctx.skip();
      const seen: string[] = [];
      const off = b.store.onChange!((cid) => seen.push(cid));
      const g = makeGrant(id());
      await b.store.create(g, makeEvents(g.id, undefined, ['requested']));
      off();
      const g2 = makeGrant(id());
      await b.store.create(g2, makeEvents(g2.id, undefined, ['requested']));
      assert.ok(seen.includes(g.id));
      assert.ok(!seen.includes(g2.id));
    });

    it('refuses text PostgreSQL cannot hold with ERR_VALIDATION, writing nothing', async (ctx) => {
      if (!b) return ctx.skip();
      const g = makeGrant(id(), { justification: { reason: 'nul\u0000byte' } });
      const res = await code(b.store.create(g, makeEvents(g.id, undefined, ['requested'])));
      assert.equal(res.code, ErrorCodes.VALIDATION);
      assert.equal(await b.store.get(g.id), null);
      assert.equal(await countEvents(g.id), 0);
    });

    it('refuses U+0000 and lone surrogates anywhere (case, columns, events, compareAndSet, compareAndSetMany) with ERR_VALIDATION, writing nothing', async (ctx) => {
      if (!b) return ctx.skip();
      const isValidation = (e: unknown) => isGrantlineError(e) && e.code === ErrorCodes.VALIDATION;
      for (const bad of ['nul\u0000byte', 'lone\ud800high', 'lone\udfffLow', 'end\ud83d']) {
        const label = JSON.stringify(bad);
        // In the jsonb document, and in the extracted text columns.
        const inDoc = makeGrant(id(), { justification: { reason: bad } });
        const inColumn = makeGrant(id(), {
          subject: { id: bad, kind: 'workload', roles: [], teams: [] },
          idempotencyKey: bad,
        });
        for (const g of [inDoc, inColumn]) {
          await assert.rejects(
            b.store.create(g, makeEvents(g.id, undefined, ['requested'])),
            isValidation,
            label,
          );
          assert.equal(await b.store.get(g.id), null, label);
          assert.equal(await countEvents(g.id), 0, label);
        }
        // In an event only.
        const g = makeGrant(id());
        const evs = makeEvents(g.id, undefined, ['requested']);
        (evs[0]!.data as Record<string, unknown>).note = bad;
        await assert.rejects(b.store.create(g, evs), isValidation, label);
        assert.equal(await b.store.get(g.id), null, label);
        assert.equal(await countEvents(g.id), 0, label);
        // On update: the stored case and its events are unchanged.
        const base = makeGrant(id());
        const baseEvs = makeEvents(base.id, undefined, ['requested']);
        await b.store.create(base, baseEvs);
        const nextEvs = makeEvents(base.id, baseEvs[0], ['approved']);
        const next = nextVersion(base, { state: 'approved', justification: { reason: bad } }, nextEvs);
        await assert.rejects(b.store.compareAndSet(next, 1, nextEvs), isValidation, label);
        const badEvs = makeEvents(base.id, baseEvs[0], ['approved']);
        (badEvs[0]!.data as Record<string, unknown>).note = bad;
        await assert.rejects(
          b.store.compareAndSet(nextVersion(base, { state: 'approved' }, badEvs), 1, badEvs),
          isValidation,
          label,
        );
        if (b.store.compareAndSetMany) {
          await assert.rejects(
            b.store.compareAndSetMany([{ grant: next, expectedVersion: 1, events: nextEvs }]),
            isValidation,
            label,
          );
        }
        assert.deepEqual(await b.store.get(base.id), base, label);
        assert.equal(await countEvents(base.id), 1, label);
      }
    });

    it('a BigInt (or a cycle) anywhere in a record is ERR_VALIDATION, writing nothing', async (ctx) => {
      if (!b) return ctx.skip();
      const isValidation = (e: unknown) => isGrantlineError(e) && e.code === ErrorCodes.VALIDATION;
      // In the case record.
      const g = makeGrant(id(), { justification: { reason: 'r', extra: 10n } as never });
      await assert.rejects(b.store.create(g, makeEvents(g.id, undefined, ['requested'])), isValidation);
      assert.equal(await b.store.get(g.id), null);
      assert.equal(await countEvents(g.id), 0);
      // In an event's data.
      const g2 = makeGrant(id());
      const evs = makeEvents(g2.id, undefined, ['requested']);
      (evs[0]!.data as Record<string, unknown>).n = 2n;
      await assert.rejects(b.store.create(g2, evs), isValidation);
      assert.equal(await b.store.get(g2.id), null);
      assert.equal(await countEvents(g2.id), 0);
      // compareAndSet, and compareAndSetMany: the bad item fails alone, the other commits.
      const ok = makeGrant(id());
      const okEvs = makeEvents(ok.id, undefined, ['requested']);
      await b.store.create(ok, okEvs);
      const other = makeGrant(id());
      const otherEvs = makeEvents(other.id, undefined, ['requested']);
      await b.store.create(other, otherEvs);
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      const badEvs = makeEvents(ok.id, okEvs[0], ['approved']);
      const bad = nextVersion(
        ok,
        { state: 'approved', justification: { reason: 'r', c: cyclic } as never },
        badEvs,
      );
      await assert.rejects(b.store.compareAndSet(bad, 1, badEvs), isValidation);
      const big = nextVersion(
        ok,
        { state: 'approved', justification: { reason: 'r', n: 1n } as never },
        badEvs,
      );
      const fineEvs = makeEvents(other.id, otherEvs[0], ['approved']);
      const fine = nextVersion(other, { state: 'approved' }, fineEvs);
      const out = await b.store.compareAndSetMany!([
        { grant: big, expectedVersion: 1, events: badEvs },
        { grant: fine, expectedVersion: 1, events: fineEvs },
      ]);
      assert.equal(out[0]!.ok, false);
      assert.ok(!out[0]!.ok && isValidation(out[0]!.error));
      assert.equal(out[1]!.ok, true);
      assert.equal((await b.store.get(ok.id))!.version, 1, 'nothing written for the bad item');
      assert.equal(await countEvents(ok.id), 1);
      assert.equal((await b.store.get(other.id))!.version, 2);
    });

    it('the audit table is append-only, whoever asks', async (ctx) => {
      if (!b) return ctx.skip();
      const g = makeGrant(id());
      await b.store.create(g, makeEvents(g.id, undefined, ['requested']));
      const t = `"${b.schema}".audit_events`;
      await assert.rejects(
        b.raw(`UPDATE ${t} SET type = 'forged' WHERE case_id = $1`, [g.id]),
        /append-only/,
      );
      await assert.rejects(b.raw(`DELETE FROM ${t} WHERE case_id = $1`, [g.id]), /append-only/);
      await assert.rejects(b.raw(`TRUNCATE ${t} CASCADE`), /append-only/);
      const evs = await b.store.events(g.id);
      assert.equal(evs.length, 1);
      assert.equal(evs[0]!.type, 'requested');
    });

    it('the state CHECK admits exactly the core states', async (ctx) => {
      if (!b) return ctx.skip();
      const g = makeGrant(id(), { state: 'bogus' as never });
      const res = await code(b.store.create(g, makeEvents(g.id, undefined, ['requested'])));
      assert.equal(res.code, ErrorCodes.STORE);
      assert.equal(await b.store.get(g.id), null);
      const { GRANT_STATES } = await import('@grantline/core');
      for (const state of GRANT_STATES) {
        const ok = makeGrant(id(), { state });
        assert.equal((await b.store.create(ok, makeEvents(ok.id, undefined, ['requested']))).created, true);
      }
    });

    it('after close, calls fail with ERR_CLOSED', async (ctx) => {
      if (!b) return ctx.skip();
      const s = b.other();
      await s.close();
      assert.equal((await code(s.get('x'))).code, ErrorCodes.CLOSED);
      assert.equal((await code(s.claimDue(new Date(), 1, 1, 'o'))).code, ErrorCodes.CLOSED);
    });
  });
}
