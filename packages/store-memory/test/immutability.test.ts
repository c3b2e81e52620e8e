import { makeGrant } from '@grantline/core/testing';
import { chainEvents, verifyChain } from '@grantline/core';
import { describe, expect, it } from 'vitest';
import { createMemoryStore } from '../src/index.js';

describe('memory store: audit events are immutable', () => {
  it('hands out frozen events: an edit throws and the stored trail is unchanged', async () => {
    const s = createMemoryStore();
    const { grant, events } = makeGrant();
    await s.create(grant, events);
    const [e] = await s.events(grant.id);
    expect(() => {
      (e as { type: string }).type = 'forged';
    }).toThrow(TypeError);
    expect(() => {
      (e!.actor as { id: string }).id = 'mallory';
    }).toThrow(TypeError);
    const [again] = await s.allEvents(0, 10);
    expect(again!.type).toBe(events[0]!.type);
    expect(again!.actor.id).toBe(events[0]!.actor.id);
  });

  it('hands out events frozen at every depth, by events() and by allEvents()', async () => {
    // Nothing a caller is handed is mutable, at any depth, whichever read hands it out.
    const deepFrozen = (v: unknown): boolean =>
      v === null ||
      typeof v !== 'object' ||
      (Object.isFrozen(v) && Object.values(v as object).every(deepFrozen));
    const s = createMemoryStore();
    const a = makeGrant();
    const b = makeGrant();
    const nested: { list: [{ deep: { x: number } }, unknown[]]; empty: object } = {
      list: [{ deep: { x: 1 } }, []],
      empty: {},
    };
    a.events[0]!.data = { ...a.events[0]!.data, nested };
    b.events[0]!.data = { ...b.events[0]!.data, nested };
    await s.create(a.grant, a.events);
    await s.create(b.grant, b.events);
    const viaCase = await s.events(a.grant.id);
    expect(viaCase.length).toBeGreaterThan(0);
    expect(viaCase.every(deepFrozen)).toBe(true);
    const viaStream = await s.allEvents(0, 100);
    expect(viaStream.length).toBe(a.events.length + b.events.length);
    expect(viaStream.every(deepFrozen)).toBe(true);
    const first = viaStream.find((e) => e.caseId === b.grant.id)!;
    const deep = (first.data.nested as typeof nested).list[0]!.deep;
    expect(() => {
      deep.x = 2;
    }).toThrow(TypeError);
    expect(((await s.events(b.grant.id))[0]!.data.nested as typeof nested).list[0]!.deep.x).toBe(1);
    nested.list[0]!.deep.x = 3; // the caller's own object: the store kept none of it
    expect(((await s.events(a.grant.id))[0]!.data.nested as typeof nested).list[0]!.deep.x).toBe(1);
  });

  it('keeps one frozen object per event actor, and copies an actor with more fields as it is', async () => {
    const s = createMemoryStore();
    const a = makeGrant({ requesterId: 'ci-bot' });
    const b = makeGrant({ requesterId: 'ci-bot' });
    const c = makeGrant({ requesterId: 'other-bot' });
    // Same id, another kind: a different actor.
    const d = makeGrant({ requesterId: 'ci-bot' });
    d.events[0]!.actor = { id: 'ci-bot', kind: 'human' };
    // Not an actor core writes: an extra field. Kept as given (the store copies, never interns it).
    const e = makeGrant({ requesterId: 'ci-bot' });
    (e.events[0]!.actor as Record<string, unknown>).note = 'extra';
    for (const x of [a, b, c, d, e]) await s.create(x.grant, x.events);
    const actorOf = async (x: typeof a) => (await s.events(x.grant.id))[0]!.actor;
    const [aa, ba, ca, da, ea] = await Promise.all([a, b, c, d, e].map(actorOf));
    expect(aa).toEqual({ id: 'ci-bot', kind: 'workload' });
    expect(Object.isFrozen(aa)).toBe(true);
    expect(ba).toBe(aa); // one stored object for one actor
    expect(aa).not.toBe(a.events[0]!.actor); // ... and never the caller's
    expect(ca).toEqual({ id: 'other-bot', kind: 'workload' });
    expect(da).toEqual({ id: 'ci-bot', kind: 'human' });
    expect(da).not.toBe(aa);
    expect(ea).toEqual({ id: 'ci-bot', kind: 'workload', note: 'extra' });
    expect(ea).not.toBe(e.events[0]!.actor);
    expect(Object.isFrozen(ea)).toBe(true);
    // A caller changing its actors afterwards changes nothing stored.
    (a.events[0]!.actor as { id: string }).id = 'mallory';
    (e.events[0]!.actor as Record<string, unknown>).note = 'changed';
    expect(await actorOf(a)).toEqual({ id: 'ci-bot', kind: 'workload' });
    expect(await actorOf(b)).toEqual({ id: 'ci-bot', kind: 'workload' });
    expect(((await actorOf(e)) as Record<string, unknown>).note).toBe('extra');
  });

  it("stores the actor it checked: an id that answers differently per read cannot rewrite others' events", async () => {
    const s = createMemoryStore();
    // An actor whose id is a getter: 'bob' on the first read, 'mallory' after. Interned under one
    // id and stored with the other, every later event of bob would name mallory.
    const tricky = makeGrant({ requesterId: 'bob' });
    let reads = 0;
    tricky.events[0]!.actor = {
      kind: 'workload',
      get id() {
        reads += 1;
        return reads === 1 ? 'bob' : 'mallory';
      },
    } as { id: string; kind: 'workload' };
    await s.create(tricky.grant, tricky.events);
    const honest = makeGrant({ requesterId: 'bob' });
    await s.create(honest.grant, honest.events);
    const [stored] = await s.events(honest.grant.id);
    expect(stored!.actor).toEqual({ id: 'bob', kind: 'workload' });
    const [first] = await s.events(tricky.grant.id);
    expect(first!.actor.id).toBe('bob'); // the value that was checked, read once
    // A non-enumerable id is not an { id, kind } actor: copied as the old store copied it.
    const hidden = makeGrant({ requesterId: 'bob' });
    const actor = { kind: 'workload' } as { id: string; kind: 'workload' };
    Object.defineProperty(actor, 'id', { value: 'bob', enumerable: false });
    hidden.events[0]!.actor = actor;
    await s.create(hidden.grant, hidden.events);
    expect((await s.events(hidden.grant.id))[0]!.actor).toEqual({ kind: 'workload' });
  });

  it('keeps an event as given: acting role, extra keys (as the PostgreSQL store does), no added keys', async () => {
    const s = createMemoryStore();
    const withRole = makeGrant();
    withRole.events[0]!.actingRole = 'approver';
    const extra = makeGrant();
    (extra.events[0] as Record<string, unknown>).note = 'kept';
    const undefinedRole = makeGrant();
    undefinedRole.events[0]!.actingRole = undefined;
    for (const x of [withRole, extra, undefinedRole]) await s.create(x.grant, x.events);
    const first = async (x: typeof withRole) => (await s.events(x.grant.id))[0]!;
    const r = await first(withRole);
    expect(r.actingRole).toBe('approver');
    const { globalSeq: _r, ...rRest } = r;
    expect(rRest).toStrictEqual(withRole.events[0]);
    const x = await first(extra);
    expect((x as Record<string, unknown>).note).toBe('kept');
    expect(Object.isFrozen(x)).toBe(true);
    const u = await first(undefinedRole);
    expect(Object.keys(u)).not.toContain('actingRole');
  });

  it('a write that cannot be copied writes nothing: no record version, no event, no sequence number', async () => {
    const s = createMemoryStore();
    const { grant, events } = makeGrant();
    await s.create(grant, events);
    const next = { ...grant, version: 2 };
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    const good = { ...events[0]!, seq: 2, prevHash: events[0]!.hash, hash: 'h2', data: { ok: true } };
    const bad = { ...events[0]!, seq: 3, prevHash: 'h2', hash: 'h3', data: { cyclic } };
    await expect(s.compareAndSet(next, 1, [good, bad])).rejects.toThrow();
    expect((await s.get(grant.id))!.version).toBe(1);
    expect(await s.events(grant.id)).toHaveLength(1);
    const fresh = makeGrant();
    (fresh.events[0]!.data as Record<string, unknown>).cyclic = cyclic;
    await expect(s.create(fresh.grant, fresh.events)).rejects.toThrow();
    expect(await s.get(fresh.grant.id)).toBeNull();
    // The numbers the failed writes would have used are still free: the next event gets 2.
    const after = makeGrant();
    await s.create(after.grant, after.events);
    expect((await s.allEvents(0, 10)).map((e) => e.globalSeq)).toEqual([1, 2]);
  });

  it('a batch with an item that cannot be copied writes no item; items that fail their checks get their errors', async () => {
    const s = createMemoryStore();
    const cases = [makeGrant(), makeGrant(), makeGrant()];
    for (const { grant, events } of cases) await s.create(grant, events);
    const step = (i: number, data: Record<string, unknown>) => {
      const { grant, events } = cases[i]!;
      const e = { ...events[0]!, seq: 2, prevHash: events[0]!.hash, hash: `h${i}`, data };
      return { grant: { ...grant, version: 2 }, expectedVersion: 1, events: [e] };
    };
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    await expect(s.compareAndSetMany!([step(0, {}), step(1, { cyclic }), step(2, {})])).rejects.toThrow();
    for (const { grant } of cases) expect((await s.get(grant.id))!.version).toBe(1);
    expect(await s.allEvents(0, 10)).toHaveLength(3);
    // A stale item fails on its own; the others are written, their events numbered in order.
    const stale = { ...step(1, {}), expectedVersion: 0, grant: { ...cases[1]!.grant, version: 1 } };
    const seen: string[] = [];
    s.onChange?.((id) => seen.push(id));
    const out = await s.compareAndSetMany!([step(0, {}), stale, step(2, {})]);
    expect(out.map((o) => o.ok)).toEqual([true, false, true]);
    expect((await s.allEvents(3, 10)).map((e) => [e.caseId, e.globalSeq])).toEqual([
      [cases[0]!.grant.id, 4],
      [cases[2]!.grant.id, 5],
    ]);
    expect(seen).toEqual([cases[0]!.grant.id, cases[2]!.grant.id]);
  });

  it("a write started from a getter in another write's input is refused; numbering stays whole", async () => {
    const s = createMemoryStore();
    const a = makeGrant();
    const b = makeGrant();
    await s.create(a.grant, a.events);
    await s.create(b.grant, b.events);
    const stepOf = (x: typeof a, data: Record<string, unknown>) => ({
      grant: { ...x.grant, version: 2 },
      expectedVersion: 1,
      events: [{ ...x.events[0]!, seq: 2, prevHash: x.events[0]!.hash, hash: 'h2', data }],
    });
    // Copying b's event data runs this getter, which writes a's next version from inside the copy.
    let inner: Promise<unknown> | undefined;
    const data = {
      get sneaky() {
        const st = stepOf(a, {});
        inner = s.compareAndSet(st.grant, 1, st.events);
        return 1;
      },
    };
    const outer = stepOf(b, data);
    await s.compareAndSet(outer.grant, 1, outer.events); // the outer write goes through ...
    await expect(inner).rejects.toMatchObject({ code: 'ERR_STORE' }); // ... the one inside it does not
    expect((await s.get(a.grant.id))!.version).toBe(1);
    expect((await s.get(b.grant.id))!.version).toBe(2);
    // a's write afterwards is numbered 4: no number given twice, none skipped.
    const st = stepOf(a, {});
    await s.compareAndSet(st.grant, 1, st.events);
    expect((await s.allEvents(0, 10)).map((e) => [e.caseId, e.seq, e.globalSeq])).toEqual([
      [a.grant.id, 1, 1],
      [b.grant.id, 1, 2],
      [b.grant.id, 2, 3],
      [a.grant.id, 2, 4],
    ]);
  });

  it('with latency, a batch reads its items after the pause: a case put in twice meanwhile is refused', async () => {
    const s = createMemoryStore({ latencyMs: 5 });
    const a = makeGrant();
    await s.create(a.grant, a.events);
    const stepOf = (hash: string) => ({
      grant: { ...a.grant, version: 2 },
      expectedVersion: 1,
      events: [{ ...a.events[0]!, seq: 2, prevHash: a.events[0]!.hash, hash, data: {} }],
    });
    const other = makeGrant();
    await s.create(other.grant, other.events);
    const items = [stepOf('h2'), { ...stepOf('x'), grant: { ...other.grant, version: 2 }, events: [] }];
    const call = s.compareAndSetMany!(items);
    items[1] = stepOf('h2-again'); // during the pause: a second item for case a
    await expect(call).rejects.toMatchObject({ code: 'ERR_VALIDATION' });
    expect((await s.events(a.grant.id)).map((e) => e.seq)).toEqual([1]);
  });

  it('stores what it checked: a version that reads differently the second time is refused', async () => {
    const s = createMemoryStore();
    const a = makeGrant();
    await s.create(a.grant, a.events);
    let reads = 0;
    const grant = { ...a.grant } as typeof a.grant;
    Object.defineProperty(grant, 'version', {
      enumerable: true,
      get: () => (++reads <= 2 ? 2 : 9), // checked as 2 (checkGrant, then the version check), copied as 9
    });
    const e = { ...a.events[0]!, seq: 2, prevHash: a.events[0]!.hash, hash: 'h2', data: {} };
    await expect(s.compareAndSet(grant, 1, [e])).rejects.toMatchObject({ code: 'ERR_STORE' });
    expect((await s.get(a.grant.id))!.version).toBe(1);
    expect(await s.events(a.grant.id)).toHaveLength(1);
  });

  it('keeps no reference to the caller’s event objects', async () => {
    const s = createMemoryStore();
    const { grant, events } = makeGrant();
    await s.create(grant, events);
    (events[0]!.data as Record<string, unknown>).injected = true;
    const [stored] = await s.events(grant.id);
    expect(stored!.data).not.toHaveProperty('injected');
  });

  it('never gives out a global sequence number twice, also after a tamper helper removed events', async () => {
    const s = createMemoryStore();
    const cases = [makeGrant(), makeGrant(), makeGrant()];
    for (const { grant, events } of cases) await s.create(grant, events);
    s.tamperDeleteCase(cases[1]!.grant.id); // an attacker's deletion: the numbers it used stay used
    const next = makeGrant();
    await s.create(next.grant, next.events);
    const seqs = (await s.allEvents(0, 10)).map((e) => e.globalSeq);
    expect(seqs).toEqual([1, 3, 4]);
  });

  it('a read-only sweeper look (nextDue) leaves the dump as it was', async () => {
    const s = createMemoryStore();
    const { grant, events } = makeGrant({ dueAt: '2026-01-01T00:10:00.000Z' });
    await s.create(grant, events);
    const before = s.dump();
    expect((await s.nextDue())?.toISOString()).toBe('2026-01-01T00:10:00.000Z');
    expect(s.dump()).toBe(before);
  });
});

describe('memory store: case records are immutable and shared, not copied per read', () => {
  it('hands out one frozen record: edits throw at every depth, and the stored case is unchanged', async () => {
    const s = createMemoryStore();
    const { grant, events } = makeGrant();
    await s.create(grant, events);
    const a = (await s.get(grant.id))!;
    expect(Object.isFrozen(a)).toBe(true);
    expect(() => {
      a.state = 'verified';
    }).toThrow(TypeError);
    expect(() => {
      a.targets[0]!.resource = 'mutated';
    }).toThrow(TypeError);
    expect(() => {
      (a.policy.approvals as { count: number }).count = 0;
    }).toThrow(TypeError);
    expect(() => {
      a.approvals.push(a.approvals[0]!);
    }).toThrow(TypeError);
    const b = (await s.get(grant.id))!;
    expect(b).toBe(a); // no copy per read
    expect(b).toEqual(grant);
  });

  it('copies only the changed parts of a copy-on-write update, and never adopts a caller object', async () => {
    const s = createMemoryStore();
    const { grant, events } = makeGrant();
    await s.create(grant, events);
    const stored = (await s.get(grant.id))!;
    // A caller's object is copied even when frozen: only the store's own sealed values are shared.
    const frozenInput = Object.freeze({ ...stored, version: 2, state: 'cancelled' as const });
    const after = await s.compareAndSet(frozenInput, 1, []);
    expect(after).not.toBe(frozenInput);
    expect(after.policy).toBe(stored.policy); // unchanged sub-object: shared, not copied
    const withNewTargets = { ...after, version: 3, targets: [{ ...after.targets[0]!, resource: 'api://x' }] };
    const third = await s.compareAndSet(withNewTargets, 2, []);
    expect(third.targets).not.toBe(withNewTargets.targets);
    withNewTargets.targets[0]!.resource = 'changed-after-write';
    expect((await s.get(grant.id))!.targets[0]!.resource).toBe('api://x');
    expect(third.requester).toBe(stored.requester);
  });
});

describe('memory store: an own __proto__ key is kept as a key', () => {
  it('stores it as given (an assignment would set the prototype): the stored event still matches its hash', async () => {
    const s = createMemoryStore();
    const { grant } = makeGrant();
    // A direct store caller's event (core refuses such data): parsed JSON has an own `__proto__`.
    const data = JSON.parse('{"x":{"__proto__":{"p":1}}}') as Record<string, unknown>;
    const [event] = chainEvents(grant.id, grant.createdAt, undefined, [
      { type: 'requested', actor: { id: 'kit', kind: 'system' }, data },
    ]);
    await s.create({ ...grant, audit: { seq: 1, head: event!.hash } }, [event!]);
    const [stored] = await s.events(grant.id);
    const x = stored!.data.x as Record<string, unknown>;
    expect(Object.keys(x)).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(x)).toBe(Object.prototype);
    expect((x as { p?: unknown }).p).toBeUndefined();
    expect(verifyChain(grant.id, [stored!]).valid).toBe(true);
  });
});
