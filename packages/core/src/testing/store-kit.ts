import assert from 'node:assert/strict';
import { isGrantlineError } from '../errors.js';
import { type Grant, type ListQueryParsed, listQuerySchema } from '../model.js';
import type { GrantStore } from '../ports.js';
import { makeGrant, nextVersion } from './fixtures.js';

// #region kit-options
/** The parts of a test runner the kits use; pass vitest's, jest's or node:test's. */
export interface TestRunner {
  describe(name: string, fn: () => void): void;
  it(name: string, fn: () => Promise<void> | void, timeoutMs?: number): void;
}

/** How the store kit obtains a store. */
export interface StoreKitOptions {
  /** Shown in test names. */
  name: string;
  /** A fresh, empty store for each test. */
  create(): Promise<GrantStore>;
  /** Disposes of a store made by `create` (default: `store.close()`). */
  destroy?(store: GrantStore): Promise<void>;
}
// #endregion

const q = (v: Parameters<typeof listQuerySchema.parse>[0]) => listQuerySchema.parse(v);

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isGrantlineError(err), `expected a GrantlineError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

/**
 * The conformance kit every `GrantStore` runs, ours or a user's: compare-and-set races, atomic audit
 * append, idempotency keys, ordering, paging, leases and the store-wide sequence.
 */
export function describeStoreConformance(runner: TestRunner, options: StoreKitOptions): void {
  const { describe, it } = runner;
  const withStore = (fn: (s: GrantStore) => Promise<void>) => async () => {
    const store = await options.create();
    try {
      await fn(store);
    } finally {
      await (options.destroy ? options.destroy(store) : store.close());
    }
  };

  describe(`GrantStore conformance: ${options.name}`, () => {
    it(
      'creates and reads back a case and its events unchanged',
      withStore(async (s) => {
        const { grant, events } = makeGrant({ reason: 'quote \' " \\ and unicode ✓' });
        const res = await s.create(grant, events);
        assert.equal(res.created, true);
        assert.deepEqual(await s.get(grant.id), grant);
        const stored = await s.events(grant.id);
        assert.equal(stored.length, 1);
        const { globalSeq, ...rest } = stored[0]!;
        assert.deepEqual(rest, events[0]);
        assert.equal(await s.get('no-such-case'), null);
      }),
    );

    it(
      'isolates stored state: mutating a result, or the value passed in, does not change the store',
      withStore(async (s) => {
        const { grant, events } = makeGrant();
        const input = structuredClone(grant);
        await s.create(input, events);
        // After the write, the caller's own object is still theirs: changing it changes nothing stored.
        input.state = 'verified';
        input.targets[0]!.resource = 'mutated-input';
        const a = (await s.get(grant.id))!;
        assert.equal(a.targets[0]!.resource, 'api://orders');
        // A result is either a private copy or an immutable (frozen) value: a write to it either
        // throws or leaves the store unchanged.
        const attempt = (write: () => void) => {
          try {
            write();
          } catch (err) {
            assert.ok(err instanceof TypeError, `a refused write throws TypeError, got ${String(err)}`);
          }
        };
        attempt(() => {
          a.state = 'verified';
        });
        attempt(() => {
          a.targets[0]!.resource = 'mutated';
        });
        const b = (await s.get(grant.id))!;
        assert.equal(b.state, 'requested');
        assert.equal(b.targets[0]!.resource, 'api://orders');
        // The same for the record a compare-and-set returns, and for the value it was given.
        const next = { ...structuredClone(b), version: 2, updatedAt: new Date().toISOString() };
        const returned = await s.compareAndSet(next, 1, []);
        next.targets[0]!.resource = 'mutated-next';
        attempt(() => {
          returned.targets[0]!.resource = 'mutated-returned';
        });
        const c = (await s.get(grant.id))!;
        assert.equal(c.version, 2);
        assert.equal(c.targets[0]!.resource, 'api://orders');
      }),
    );

    it(
      'refuses a second case with the same id and writes nothing',
      withStore(async (s) => {
        const { grant, events } = makeGrant();
        await s.create(grant, events);
        const again = makeGrant({ id: grant.id });
        await rejectsWith(s.create(again.grant, again.events), 'ERR_CONFLICT');
        assert.equal((await s.events(grant.id)).length, 1);
        assert.deepEqual(await s.get(grant.id), grant);
      }),
    );

    it(
      'returns the existing case for a repeated idempotency key, writing nothing',
      withStore(async (s) => {
        const first = makeGrant({ idempotencyKey: 'key-1' });
        await s.create(first.grant, first.events);
        const second = makeGrant({ idempotencyKey: 'key-1' });
        const res = await s.create(second.grant, second.events);
        assert.equal(res.created, false);
        assert.equal(res.grant.id, first.grant.id);
        assert.equal(await s.get(second.grant.id), null);
        assert.equal((await s.events(second.grant.id)).length, 0);
        assert.equal((await s.findByIdempotencyKey('key-1'))?.id, first.grant.id);
        assert.equal(await s.findByIdempotencyKey('key-2'), null);
      }),
    );

    it(
      'compare-and-set commits the next version with its events',
      withStore(async (s) => {
        const { grant, events } = makeGrant();
        await s.create(grant, events);
        const v2 = nextVersion(grant, { state: 'approved' }, 2);
        const stored = await s.compareAndSet(v2.grant, 1, v2.events);
        assert.equal(stored.version, 2);
        assert.equal((await s.get(grant.id))!.state, 'approved');
        assert.deepEqual(
          (await s.events(grant.id)).map((e) => e.seq),
          [1, 2, 3],
        );
        assert.deepEqual(
          (await s.events(grant.id, 1)).map((e) => e.seq),
          [2, 3],
        );
      }),
    );

    it(
      'a stale compare-and-set fails with ERR_CONFLICT and writes neither record nor events',
      withStore(async (s) => {
        const { grant, events } = makeGrant();
        await s.create(grant, events);
        const v2 = nextVersion(grant, { state: 'approved' });
        await s.compareAndSet(v2.grant, 1, v2.events);
        const stale = nextVersion(grant, { state: 'denied' });
        await rejectsWith(s.compareAndSet(stale.grant, 1, stale.events), 'ERR_CONFLICT');
        assert.equal((await s.get(grant.id))!.state, 'approved');
        assert.equal((await s.events(grant.id)).length, 2);
      }),
    );

    it(
      'of many racing writers of one version, exactly one commits',
      withStore(async (s) => {
        const { grant, events } = makeGrant();
        await s.create(grant, events);
        const writers = Array.from({ length: 12 }, (_, i) =>
          nextVersion(grant, { justification: { reason: `writer ${i}` } }),
        );
        const results = await Promise.allSettled(writers.map((w) => s.compareAndSet(w.grant, 1, w.events)));
        const ok = results.filter((r) => r.status === 'fulfilled');
        assert.equal(ok.length, 1, 'exactly one writer commits');
        for (const r of results) {
          if (r.status === 'rejected') assert.equal((r.reason as { code?: string }).code, 'ERR_CONFLICT');
        }
        const stored = (await s.get(grant.id))!;
        assert.equal(stored.version, 2);
        assert.equal((await s.events(grant.id)).length, 2, 'only the winner appended its event');
        assert.equal(
          stored.justification.reason,
          (ok[0] as PromiseFulfilledResult<{ justification: { reason: string } }>).value.justification.reason,
        );
      }),
    );

    it(
      'compare-and-set on a missing case fails with ERR_NOT_FOUND',
      withStore(async (s) => {
        const { grant } = makeGrant();
        const v2 = nextVersion(grant);
        await rejectsWith(s.compareAndSet(v2.grant, 1, v2.events), 'ERR_NOT_FOUND');
      }),
    );

    it(
      'rejects audit events out of sequence without writing anything',
      withStore(async (s) => {
        const { grant, events } = makeGrant();
        await s.create(grant, events);
        const v2 = nextVersion(grant, { state: 'approved' }, 2);
        const gap = [v2.events[1]!];
        await assert.rejects(s.compareAndSet(v2.grant, 1, gap));
        assert.equal((await s.get(grant.id))!.version, 1);
        assert.equal((await s.events(grant.id)).length, 1);
      }),
    );

    it(
      'assigns a strictly increasing store-wide sequence across cases',
      withStore(async (s) => {
        const a = makeGrant();
        const b = makeGrant();
        await s.create(a.grant, a.events);
        await s.create(b.grant, b.events);
        const a2 = nextVersion(a.grant, {}, 3);
        await s.compareAndSet(a2.grant, 1, a2.events);
        const all = await s.allEvents(0, 100);
        assert.equal(all.length, 5);
        for (let i = 1; i < all.length; i++) assert.ok(all[i]!.globalSeq! > all[i - 1]!.globalSeq!);
        const afterTwo = await s.allEvents(all[1]!.globalSeq!, 2);
        assert.deepEqual(
          afterTwo.map((e) => e.globalSeq),
          [all[2]!.globalSeq, all[3]!.globalSeq],
        );
      }),
    );

    it(
      'lists by state, subject and requester, newest first, paging without gaps or repeats',
      withStore(async (s) => {
        const made = [];
        for (let i = 0; i < 7; i++) {
          const m = makeGrant({
            createdAt: new Date(Date.UTC(2026, 1, 1, 0, 0, i)).toISOString(),
            state: i % 2 === 0 ? 'requested' : 'approved',
            subjectId: i < 3 ? 'svc-a' : 'svc-b',
          });
          await s.create(m.grant, m.events);
          made.push(m.grant);
        }
        const seen: string[] = [];
        let cursor: string | undefined;
        do {
          const page = await s.list(q({ limit: 3, ...(cursor ? { cursor } : {}) }));
          assert.ok(page.grants.length <= 3);
          seen.push(...page.grants.map((g) => g.id));
          cursor = page.nextCursor;
        } while (cursor);
        assert.deepEqual(
          seen,
          [...made].reverse().map((g) => g.id),
        );
        const approved = await s.list(q({ states: ['approved'] }));
        assert.deepEqual(
          approved.grants.map((g) => g.id).sort(),
          made
            .filter((g) => g.state === 'approved')
            .map((g) => g.id)
            .sort(),
        );
        const svcA = await s.list(q({ subjectId: 'svc-a' }));
        assert.equal(svcA.grants.length, 3);
        const none = await s.list(q({ requesterId: 'nobody' }));
        assert.equal(none.grants.length, 0);
      }),
    );

    it(
      'lists newest first even when cases were created out of order, paging filtered results',
      withStore(async (s) => {
        // Seconds in a shuffled order with repeats: order is (createdAt desc, id desc) regardless of
        // the order of creation, and a filtered page's cursor resumes below its last case.
        const secs = [5, 1, 9, 1, 3, 9, 0, 7, 3, 5, 2];
        const made = [];
        for (const [i, sec] of secs.entries()) {
          const m = makeGrant({
            createdAt: new Date(Date.UTC(2026, 1, 2, 0, 0, sec)).toISOString(),
            state: i % 3 === 0 ? 'approved' : 'requested',
          });
          await s.create(m.grant, m.events);
          made.push(m.grant);
        }
        const newestFirst = (a: Grant, b: Grant) =>
          a.createdAt === b.createdAt ? (a.id < b.id ? 1 : -1) : a.createdAt < b.createdAt ? 1 : -1;
        const walk = async (extra: Partial<ListQueryParsed>) => {
          const seen: string[] = [];
          let cursor: string | undefined;
          do {
            const page = await s.list(q({ limit: 2, ...extra, ...(cursor ? { cursor } : {}) }));
            assert.ok(page.grants.length <= 2);
            seen.push(...page.grants.map((g) => g.id));
            cursor = page.nextCursor;
          } while (cursor);
          return seen;
        };
        assert.deepEqual(
          await walk({}),
          [...made].sort(newestFirst).map((g) => g.id),
        );
        assert.deepEqual(
          await walk({ states: ['approved'] }),
          made
            .filter((g) => g.state === 'approved')
            .sort(newestFirst)
            .map((g) => g.id),
        );
      }),
    );

    it(
      'claims due cases in due order, leases them, and never hands one case to two owners',
      withStore(async (s) => {
        const base = Date.UTC(2026, 2, 1);
        const ids: string[] = [];
        for (let i = 0; i < 6; i++) {
          const m = makeGrant({ dueAt: new Date(base + (6 - i) * 1000).toISOString() });
          await s.create(m.grant, m.events);
          ids.push(m.grant.id);
        }
        const notDue = makeGrant({ dueAt: new Date(base + 3_600_000).toISOString() });
        await s.create(notDue.grant, notDue.events);
        const idle = makeGrant({ dueAt: null });
        await s.create(idle.grant, idle.events);
        const now = new Date(base + 10_000);
        const first = await s.claimDue(now, 4, 30_000, 'a');
        assert.deepEqual(
          first.map((g) => g.id),
          [ids[5], ids[4], ids[3], ids[2]],
        );
        const second = await s.claimDue(now, 10, 30_000, 'b');
        assert.deepEqual(
          second.map((g) => g.id),
          [ids[1], ids[0]],
        );
        assert.equal(
          (await s.claimDue(now, 10, 30_000, 'c')).length,
          0,
          'leased cases are not claimed again',
        );
        const later = await s.claimDue(new Date(base + 45_000), 10, 30_000, 'c');
        assert.equal(later.length, 6, 'expired leases are claimable again');
      }),
    );

    it(
      'concurrent claimers get disjoint sets',
      withStore(async (s) => {
        const base = Date.UTC(2026, 3, 1);
        for (let i = 0; i < 40; i++) {
          const m = makeGrant({ dueAt: new Date(base + i).toISOString() });
          await s.create(m.grant, m.events);
        }
        const now = new Date(base + 60_000);
        const claims = await Promise.all(['w1', 'w2', 'w3', 'w4'].map((o) => s.claimDue(now, 15, 30_000, o)));
        const all = claims.flat().map((g) => g.id);
        assert.equal(new Set(all).size, all.length, 'no case claimed twice');
        assert.equal(all.length, 40);
      }),
    );

    it(
      'a commit releases the lease, and nextDue reports the earliest due time',
      withStore(async (s) => {
        const base = Date.UTC(2026, 4, 1);
        const m = makeGrant({ dueAt: new Date(base).toISOString() });
        await s.create(m.grant, m.events);
        const other = makeGrant({ dueAt: new Date(base + 5000).toISOString() });
        await s.create(other.grant, other.events);
        assert.equal((await s.nextDue())?.getTime(), base);
        const [claimed] = await s.claimDue(new Date(base + 1), 1, 60_000, 'a');
        assert.equal(claimed?.id, m.grant.id);
        const v2 = nextVersion(claimed!, { dueAt: new Date(base + 2000).toISOString() });
        await s.compareAndSet(v2.grant, 1, v2.events);
        const again = await s.claimDue(new Date(base + 2500), 5, 60_000, 'b');
        assert.deepEqual(
          again.map((g) => g.id),
          [m.grant.id],
          'after commit the case is claimable at its new due time',
        );
        const v3 = nextVersion(again[0]!, { dueAt: null });
        await s.compareAndSet(v3.grant, 2, v3.events);
        assert.equal((await s.nextDue())?.getTime(), base + 5000);
      }),
    );

    it(
      'compareAndSetMany (when offered) writes each item atomically and independently, in one call',
      withStore(async (s) => {
        if (!s.compareAndSetMany) return;
        const base = Date.UTC(2026, 5, 1);
        const made: Grant[] = [];
        for (let i = 0; i < 5; i++) {
          const m = makeGrant({ dueAt: new Date(base + i).toISOString() });
          await s.create(m.grant, m.events);
          made.push(m.grant);
        }
        // Lease them all, then move case 1 on behind the batch's back: its item must conflict.
        await s.claimDue(new Date(base + 60_000), 10, 60_000, 'batcher');
        const moved = nextVersion(made[1]!, { state: 'approved', dueAt: null });
        await s.compareAndSet(moved.grant, 1, moved.events);
        const ok0 = nextVersion(made[0]!, { state: 'approved', dueAt: null }, 2);
        const stale1 = nextVersion(made[1]!, { state: 'denied' }, 0); // no events: only the version check stops it
        const ok2 = nextVersion(made[2]!, { state: 'approved' }, 0);
        const missing = nextVersion(makeGrant().grant, { state: 'approved' });
        // Case 3: events that do not follow the stored head (seq 3 where 2 is next).
        const gap = nextVersion(made[3]!, { state: 'approved' });
        gap.events = gap.events.map((e) => ({ ...e, seq: e.seq + 1 }));
        const outcomes = await s.compareAndSetMany([
          { grant: ok0.grant, expectedVersion: 1, events: ok0.events },
          { grant: stale1.grant, expectedVersion: 1, events: stale1.events },
          { grant: ok2.grant, expectedVersion: 1, events: ok2.events },
          { grant: missing.grant, expectedVersion: 1, events: missing.events },
          { grant: gap.grant, expectedVersion: 1, events: gap.events },
        ]);
        assert.equal(outcomes.length, 5);
        assert.ok(outcomes[0]!.ok && outcomes[0]!.grant.version === 2);
        assert.ok(!outcomes[1]!.ok && outcomes[1]!.error.code === 'ERR_CONFLICT');
        assert.ok(outcomes[2]!.ok);
        assert.ok(!outcomes[3]!.ok && outcomes[3]!.error.code === 'ERR_NOT_FOUND');
        assert.ok(!outcomes[4]!.ok && outcomes[4]!.error.code === 'ERR_STORE');
        assert.deepEqual(await s.get(made[0]!.id), ok0.grant);
        assert.deepEqual(
          (await s.events(made[0]!.id)).map((e) => e.seq),
          [1, 2, 3],
        );
        assert.equal((await s.get(made[1]!.id))!.state, 'approved', 'the racing commit stands');
        assert.equal((await s.events(made[1]!.id)).length, 2);
        assert.equal((await s.get(made[2]!.id))!.version, 2);
        assert.equal((await s.events(made[2]!.id)).length, 1, 'an item without events writes none');
        assert.deepEqual(await s.get(made[3]!.id), made[3], 'out-of-sequence item: nothing written');
        assert.equal((await s.events(made[3]!.id)).length, 1);
        assert.equal(await s.get(missing.grant.id), null);
        // Committed items released their leases; the untouched case 4 is still leased to 'batcher'.
        const again = await s.claimDue(new Date(base + 60_001), 10, 60_000, 'other');
        assert.deepEqual(
          again.map((g) => g.id),
          [made[2]!.id],
          'only the committed case still due is claimable by another owner',
        );
        // The store-wide sequence covers the batch's events in item order.
        const all = await s.allEvents(0, 1000);
        const batch = all.filter((e) => e.caseId === made[0]!.id && e.seq > 1);
        assert.equal(batch.length, 2);
        assert.ok(batch[0]!.globalSeq! < batch[1]!.globalSeq!);
      }),
    );

    it(
      'compareAndSetMany (when offered) refuses a malformed call and writes nothing',
      withStore(async (s) => {
        if (!s.compareAndSetMany) return;
        const { grant, events } = makeGrant();
        await s.create(grant, events);
        const v2 = nextVersion(grant, { state: 'approved' });
        const item = { grant: v2.grant, expectedVersion: 1, events: v2.events };
        await rejectsWith(s.compareAndSetMany([item, item]), 'ERR_VALIDATION');
        await rejectsWith(s.compareAndSetMany('nope' as never), 'ERR_VALIDATION');
        await rejectsWith(
          s.compareAndSetMany([item, { grant: { version: 2 } as Grant, expectedVersion: 1, events: [] }]),
          'ERR_VALIDATION',
        );
        await rejectsWith(s.compareAndSetMany([{ ...item, expectedVersion: 1.5 }]), 'ERR_VALIDATION');
        await rejectsWith(s.compareAndSetMany([{ ...item, events: 'x' as never }]), 'ERR_VALIDATION');
        assert.deepEqual(await s.get(grant.id), grant);
        assert.equal((await s.events(grant.id)).length, 1);
        assert.deepEqual(await s.compareAndSetMany([]), []);
        // A new version that does not follow the expected one is the item's ERR_STORE, on any store.
        const ghost = nextVersion(makeGrant().grant, {}, 0);
        const [wrong] = await s.compareAndSetMany([
          { grant: { ...ghost.grant, version: 9 }, expectedVersion: 1, events: [] },
        ]);
        assert.ok(wrong && !wrong.ok && wrong.error.code === 'ERR_STORE');
      }),
    );

    it('fails with ERR_CLOSED after close', async () => {
      const s = await options.create();
      await s.close();
      await rejectsWith(s.get('x'), 'ERR_CLOSED');
    });
  });
}
