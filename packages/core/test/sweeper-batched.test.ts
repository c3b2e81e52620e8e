import { type MemoryStore, createMemoryStore } from '@grantline/store-memory';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  type AuditEvent,
  type CasItem,
  type Executor,
  type GrantStore,
  GrantlineError,
  createGrantline,
} from '../src/index.js';
import { autoPolicy, bot, issueCases, manualClock } from './helpers.js';

/**
 * The sweeper's batched path (stores with compareAndSetMany): same records as the per-case path in
 * far fewer store calls, and nothing lost when a grouped commit fails or a case moves on meanwhile.
 */

/** A credential system with real state: live credentials, removed on revoke, looked up on verify. */
function system(hooks: { onRevoke?: (caseId: string) => Promise<void> } = {}) {
  const live = new Set<string>();
  const calls = { revoke: 0, verify: 0 };
  const executor: Executor<Record<string, unknown>> = {
    system: 'sys',
    paramsSchema: z.record(z.string(), z.unknown()),
    async issue(ctx) {
      live.add(`${ctx.grant.id}:${ctx.target.id}`);
      return {
        ref: { key: `${ctx.grant.id}:${ctx.target.id}` },
        expiresAt: new Date(ctx.now.getTime() + 3_600_000),
      };
    },
    async revoke(ctx) {
      calls.revoke++;
      await hooks.onRevoke?.(ctx.grant.id);
      return { alreadyGone: !live.delete(`${ctx.grant.id}:${ctx.target.id}`) };
    },
    async verify(ctx) {
      calls.verify++;
      const key = `${ctx.grant.id}:${ctx.target.id}`;
      return live.has(key)
        ? { status: 'present', method: 'lookup', observation: { key } }
        : { status: 'absent', method: 'lookup', observation: { key } };
    },
  };
  return { executor, live, calls };
}

const policy = autoPolicy('batched');

/** Counts the store's write calls; `failMany` decides per compareAndSetMany call whether it throws. */
function counted(
  inner: MemoryStore,
  failMany?: (call: number) => 'before' | 'after' | undefined,
): GrantStore & { writes: { single: number; many: number; manyItems: number } } {
  const writes = { single: 0, many: 0, manyItems: 0 };
  const lost = () =>
    new GrantlineError('ERR_STORE', 'connection terminated unexpectedly', { retryable: true });
  return Object.assign(Object.create(inner) as MemoryStore, {
    writes,
    capabilities: inner.capabilities,
    async compareAndSet(...args: Parameters<GrantStore['compareAndSet']>) {
      writes.single++;
      return inner.compareAndSet(...args);
    },
    async compareAndSetMany(items: CasItem[]) {
      writes.many++;
      writes.manyItems += items.length;
      const fault = failMany?.(writes.many);
      if (fault === 'before') throw lost();
      const out = await inner.compareAndSetMany!(items);
      if (fault === 'after') throw lost(); // committed, but the answer was lost
      return out;
    },
  });
}

const issueMany = (gl: ReturnType<typeof createGrantline>, n: number, targets = 1) =>
  issueCases(gl, n, { system: 'sys', targets });

const types = (events: AuditEvent[]) => events.map((e) => e.type);

describe('the batched sweeper path', () => {
  it('records the same events as the per-case path, in a few grouped store calls', async () => {
    const run = async (batched: boolean) => {
      const clock = manualClock();
      const inner = createMemoryStore();
      if (!batched) inner.compareAndSetMany = undefined;
      const store = counted(inner);
      if (!batched) store.compareAndSetMany = undefined as never;
      const sys = system();
      const gl = createGrantline({ store, policy, executors: [sys.executor], clock, instanceId: 'sweeper' });
      const ids = await issueMany(gl, 300, 2);
      clock.advance(61_000);
      const before = { ...store.writes };
      const res = await gl.sweep({ limit: 500 });
      const histories = await Promise.all(ids.map((id) => gl.history(id)));
      const states = await Promise.all(ids.map(async (id) => (await gl.get(id)).state));
      const checks = await Promise.all(ids.map((id) => gl.checkChain(id)));
      return {
        res,
        sys,
        states,
        checks,
        histories,
        single: store.writes.single - before.single,
        many: store.writes.many - before.many,
        items: store.writes.manyItems - before.manyItems,
      };
    };
    const perCase = await run(false);
    const batched = await run(true);
    for (const r of [perCase, batched]) {
      expect(r.res).toMatchObject({ claimed: 300, revoked: 300, verified: 300, errors: 0 });
      expect(r.states.every((s) => s === 'verified')).toBe(true);
      expect(r.checks.every((c) => c.valid)).toBe(true);
      expect(r.sys.live.size).toBe(0);
      expect(r.sys.calls).toEqual({ revoke: 600, verify: 600 });
    }
    // Same evidence, event for event, on every case.
    const expected = types(perCase.histories[0]!);
    expect(expected).toContain('revoke.requested');
    expect(expected.filter((t) => t === 'target.verified')).toHaveLength(2);
    for (const h of [...perCase.histories, ...batched.histories]) expect(types(h)).toEqual(expected);
    // Per case: intent, two target removals, two verifications = 5 commits; batched: 2 per case, grouped.
    expect(perCase.single).toBe(300 * 5);
    expect(perCase.many).toBe(0);
    expect(batched.single).toBe(0);
    expect(batched.items).toBe(300 * 2);
    expect(batched.many).toBeLessThanOrEqual(60);
  });

  it('a grouped commit that fails (before or after committing) loses nothing: the next pass finishes', async () => {
    for (const fault of ['before', 'after'] as const) {
      const clock = manualClock();
      // Call 1 commits the intents; call 2 (the first group of removals) fails.
      const store = counted(createMemoryStore(), (call) => (call === 2 ? fault : undefined));
      const sys = system();
      const gl = createGrantline({ store, policy, executors: [sys.executor], clock, leaseMs: 30_000 });
      const ids = await issueMany(gl, 40);
      clock.advance(61_000);
      const first = await gl.sweep({ limit: 100 });
      expect(first.errors).toBeGreaterThan(0);
      expect(sys.live.size).toBe(0); // the executor did remove everything
      const stuck = (await Promise.all(ids.map((id) => gl.get(id)))).filter((g) => g.state !== 'verified');
      if (fault === 'before') {
        expect(stuck.length).toBe(first.errors);
        // The intent was recorded before any executor call: a failed commit leaves the case revoking.
        for (const g of stuck) expect(g.state).toBe('revoking');
      } else expect(stuck.length).toBe(0);
      // Past the recorded intent's resumeAt: 80% of the lease (the last start) plus a whole lease.
      clock.advance(55_000);
      await gl.sweep({ limit: 100 });
      for (const id of ids) {
        const g = await gl.get(id);
        expect(g.state).toBe('verified');
        const h = types(await gl.history(id));
        expect(h.filter((t) => t === 'revoke.requested')).toHaveLength(1);
        expect(h.filter((t) => t === 'target.revoked')).toHaveLength(1);
        expect(h.filter((t) => t === 'verified')).toHaveLength(1);
        expect((await gl.checkChain(id)).valid).toBe(true);
      }
    }
  });

  it('a case moved on by someone else during the pass is left to the per-case path, recorded once', async () => {
    const clock = manualClock();
    const store = createMemoryStore();
    let other: ReturnType<typeof createGrantline> | undefined;
    let raced: string | undefined;
    const sys = system({
      async onRevoke(caseId) {
        // The first removal the sweeper makes: another instance revokes the same case by hand, now.
        if (raced || !other) return;
        raced = caseId;
        await other.revoke(caseId, { actor: { id: 'rita', kind: 'human', roles: [] }, reason: 'by hand' });
      },
    });
    const gl = createGrantline({ store, policy, executors: [sys.executor], clock, instanceId: 'sweeper' });
    const ids = await issueMany(gl, 20);
    other = createGrantline({ store, policy, executors: [system().executor], clock, instanceId: 'other' });
    clock.advance(61_000);
    const res = await gl.sweep({ limit: 100 });
    expect(raced).toBeDefined();
    expect(res.errors).toBe(0);
    for (const id of ids) {
      expect((await gl.get(id)).state).toBe('verified');
      const h = types(await gl.history(id));
      expect(h.filter((t) => t === 'target.revoked')).toHaveLength(1);
      expect(h.filter((t) => t === 'verified')).toHaveLength(1);
    }
  });
});

// Found by review of the batched path; each holds on both paths (the per-case one is the reference).
const modes = [
  { mode: 'batched', batched: true },
  { mode: 'per-case', batched: false },
];
const storeFor = (batched: boolean) => {
  const s = createMemoryStore();
  if (!batched) s.compareAndSetMany = undefined;
  return s;
};

describe.each(modes)('sweeper parity ($mode)', ({ batched }) => {
  it('a case started in a pass is not taken over by another instance while its removal runs', async () => {
    const clock = manualClock();
    const store = storeFor(batched);
    const live = new Set<string>();
    const revokers = new Map<string, Set<string>>();
    let other: ReturnType<typeof createGrantline> | undefined;
    let otherSwept = false;
    let t0 = 0;
    const exec = (who: string, slow: boolean): Executor<Record<string, unknown>> => ({
      system: 'sys',
      paramsSchema: z.record(z.string(), z.unknown()),
      async issue(ctx) {
        live.add(ctx.grant.id);
        return { ref: { key: ctx.grant.id }, expiresAt: new Date(ctx.now.getTime() + 3_600_000) };
      },
      async revoke(ctx) {
        const set = revokers.get(ctx.grant.id) ?? new Set<string>();
        revokers.set(ctx.grant.id, set.add(who));
        if (slow) clock.advance(4_000);
        return { alreadyGone: !live.delete(ctx.grant.id) };
      },
      async verify(ctx) {
        if (slow) {
          clock.advance(6_000);
          // 30 s into A's pass (its claim lease is over), B sweeps.
          if (!otherSwept && clock.now().getTime() - t0 >= 30_000) {
            otherSwept = true;
            await other!.sweep({ limit: 100 });
          }
        }
        return live.has(ctx.grant.id)
          ? { status: 'present', method: 'm', observation: {} }
          : { status: 'absent', method: 'm', observation: {} };
      },
    });
    const gl = createGrantline({
      store,
      policy,
      executors: [exec('A', true)],
      clock,
      instanceId: 'A',
      leaseMs: 30_000,
    });
    other = createGrantline({
      store,
      policy,
      executors: [exec('B', false)],
      clock,
      instanceId: 'B',
      leaseMs: 30_000,
    });
    const ids = await issueMany(gl, 10);
    clock.advance(61_000);
    t0 = clock.now().getTime();
    await gl.sweep({ limit: 100, concurrency: 1 });
    expect(otherSwept).toBe(true);
    expect(ids.filter((id) => (revokers.get(id)?.size ?? 0) > 1)).toEqual([]);
  });

  it('cheap due steps are not put off behind slow removals: cases are taken in due order', async () => {
    const clock = manualClock();
    const store = storeFor(batched);
    const exec: Executor<Record<string, unknown>> = {
      system: 'sys',
      paramsSchema: z.record(z.string(), z.unknown()),
      async issue(ctx) {
        return { ref: { k: ctx.grant.id }, expiresAt: new Date(ctx.now.getTime() + 3_600_000) };
      },
      async revoke() {
        clock.advance(3_000);
        return { alreadyGone: false };
      },
      async verify() {
        clock.advance(3_000);
        return { status: 'absent', method: 'm', observation: {} };
      },
    };
    const gl = createGrantline({
      store,
      policy: { ...autoPolicy('order'), activationTtlSeconds: 30 },
      executors: [exec],
      clock,
      leaseMs: 30_000,
    });
    const req = (i: number) =>
      gl.request({
        requester: bot,
        subject: bot,
        justification: { reason: `j${i}` },
        targets: [{ id: 't', system: 'sys', resource: `db://${i}`, permissions: ['db:read'] }],
        durationSeconds: 60,
        template: 'auto',
      });
    const pending = await req(99); // approved, never issued: its deadline comes at +30 s
    for (let i = 0; i < 6; i++) await gl.issue((await req(i)).id); // windows end at +60 s
    clock.advance(61_000);
    const res = await gl.sweep({ limit: 100, concurrency: 1 });
    expect((await gl.get(pending.id)).state).toBe('expired');
    expect(res.expired).toBe(1);
  });

  it('events keep the time of their step, as the record does', async () => {
    const clock = manualClock();
    const store = storeFor(batched);
    const sys = system();
    const slow: Executor<Record<string, unknown>> = {
      ...sys.executor,
      async revoke(ctx) {
        clock.advance(1_000);
        return sys.executor.revoke(ctx);
      },
      async verify(ctx) {
        clock.advance(1_000);
        return sys.executor.verify(ctx);
      },
    };
    const gl = createGrantline({ store, policy, executors: [slow], clock });
    const [id] = await issueMany(gl, 1, 2);
    clock.advance(61_000);
    await gl.sweep();
    const h = await gl.history(id!);
    const g = await gl.get(id!);
    expect(g.state).toBe('verified');
    expect(h.filter((e) => e.type === 'target.revoked').map((e) => e.at)).toEqual(
      g.targets.map((t) => t.revocation!.confirmedAt),
    );
    expect(h.find((e) => e.type === 'revoked')!.at).toBe(g.revocation!.revokedAt);
    expect(new Set(h.filter((e) => e.type.startsWith('target.')).map((e) => e.at)).size).toBeGreaterThan(1);
  });

  it('access still present after the last verification is revoked again in the same pass', async () => {
    const clock = manualClock();
    const store = storeFor(batched);
    const live = new Set<string>();
    let revokes = 0;
    const exec: Executor<Record<string, unknown>> = {
      system: 'sys',
      paramsSchema: z.record(z.string(), z.unknown()),
      async issue(ctx) {
        live.add(ctx.grant.id);
        return { ref: { k: ctx.grant.id }, expiresAt: new Date(ctx.now.getTime() + 3_600_000) };
      },
      async revoke(ctx) {
        revokes++;
        // The first removal silently does nothing (a replica that had not caught up).
        if (revokes > 1) live.delete(ctx.grant.id);
        return {};
      },
      async verify(ctx) {
        return live.has(ctx.grant.id)
          ? { status: 'present', method: 'm', observation: {} }
          : { status: 'absent', method: 'm', observation: {} };
      },
    };
    const gl = createGrantline({ store, policy, executors: [exec], clock, retry: { maxAttempts: 1 } });
    const [id] = await issueMany(gl, 1);
    clock.advance(61_000);
    await gl.sweep();
    expect({ state: (await gl.get(id!)).state, revokes }).toEqual({ state: 'verified', revokes: 2 });
  });
});
