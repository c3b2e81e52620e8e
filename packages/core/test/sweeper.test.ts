import { type MemoryStoreOptions, createMemoryStore } from '@grantline/store-memory';
import { describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { type Executor, type Grant, GrantlineError, type GrantStore, createGrantline } from '../src/index.js';
import { autoPolicy, bot, issueCases, manualClock } from './helpers.js';

/**
 * A fake credential system with real state: it keeps live credentials, removes them on revoke and
 * reports what it holds on verify. It can fail transiently before or after applying a change
 * (a lost response), so "applied exactly once" is measured on the system itself.
 */
function flakySystem(opts: { failRate: number; seed?: number; afterApplyRate?: number }) {
  let s = opts.seed ?? 42;
  const rnd = () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
  const live = new Set<string>();
  const stats = {
    issueCalls: 0,
    revokeCalls: 0,
    verifyCalls: 0,
    removals: new Map<string, number>(),
    transientFailures: 0,
  };
  const transient = (what: string) => {
    stats.transientFailures++;
    return new GrantlineError('ERR_EXECUTOR', `flaky: ${what} timed out`, { retryable: true });
  };
  const executor: Executor<Record<string, unknown>> = {
    system: 'flaky',
    paramsSchema: z.record(z.string(), z.unknown()),
    async issue(ctx) {
      stats.issueCalls++;
      const key = `${ctx.grant.id}:${ctx.target.id}`;
      live.add(key);
      return { ref: { key }, expiresAt: new Date(ctx.grant.window.expiresAt!) };
    },
    async revoke(ctx) {
      stats.revokeCalls++;
      if (rnd() < opts.failRate) throw transient('revoke');
      const key = `${ctx.grant.id}:${ctx.target.id}`;
      const had = live.delete(key);
      if (had) stats.removals.set(key, (stats.removals.get(key) ?? 0) + 1);
      if (had && rnd() < (opts.afterApplyRate ?? 0)) throw transient('revoke response');
      return { alreadyGone: !had };
    },
    async verify(ctx) {
      stats.verifyCalls++;
      if (rnd() < opts.failRate) throw transient('verify');
      const key = `${ctx.grant.id}:${ctx.target.id}`;
      return live.has(key)
        ? { status: 'present', method: 'lookup', observation: { key, live: true } }
        : { status: 'absent', method: 'lookup', observation: { key, live: false } };
    },
  };
  return { executor, live, stats };
}

const policy = autoPolicy('sweep');

const issueMany = (gl: ReturnType<typeof createGrantline>, n: number, durationSeconds = 60, targets = 1) =>
  issueCases(gl, n, { system: 'flaky', durationSeconds, targets });

async function drain(
  gls: ReturnType<typeof createGrantline>[],
  clock: ReturnType<typeof manualClock>,
  store: GrantStore,
  maxRounds = 2000,
) {
  for (let round = 0; round < maxRounds; round++) {
    const swept = await Promise.all(gls.map((gl) => gl.sweep({ limit: 1000 })));
    if (swept.some((r) => r.claimed > 0)) continue;
    const pending = await store.list({ states: ['issued', 'revoking', 'revoked', 'issuing'], limit: 1 });
    if (pending.grants.length === 0) return round;
    const next = await store.nextDue();
    // Step at least 2 s so retries spread by jitter are swept in batches, as a real sweeper would.
    clock.set(new Date(Math.max(clock.now().getTime() + 2_000, next?.getTime() ?? 0)).toISOString());
  }
  const left = await store.list({ states: ['issued', 'revoking', 'revoked', 'issuing'], limit: 3 });
  throw new Error(
    `sweepers did not drain: ${JSON.stringify(left.grants.map((g) => [g.state, g.dueAt, g.retry, g.targets]))} now ${clock.now().toISOString()}`,
  );
}

// Every scenario runs on both sweeper paths: the batched one (the store offers compareAndSetMany,
// as the memory and PostgreSQL stores do) and the per-case one (a store without it).
const storeModes = [
  { mode: 'batched commits', makeStore: (o?: MemoryStoreOptions): GrantStore => createMemoryStore(o) },
  {
    mode: 'per-case commits',
    makeStore: (o?: MemoryStoreOptions): GrantStore => {
      const s = createMemoryStore(o);
      s.compareAndSetMany = undefined;
      return s;
    },
  },
];

describe.each(storeModes)('the sweeper under faults ($mode)', ({ makeStore }) => {
  it('10,000 cases with an executor failing 30% of the time all reach verified; each removal applied exactly once', async () => {
    const clock = manualClock();
    const store = makeStore();
    const sys = flakySystem({ failRate: 0.3, afterApplyRate: 0.1 });
    const gl = createGrantline({
      store,
      policy,
      executors: [sys.executor],
      clock,
      retry: { baseMs: 500, maxMs: 20_000, maxAttempts: 50 },
    });
    const ids = await issueMany(gl, 10_000);
    expect(sys.live.size).toBe(10_000);
    clock.advance(61_000);
    await drain([gl], clock, store);
    let verified = 0;
    for (const id of ids) if ((await store.get(id))!.state === 'verified') verified++;
    expect(verified).toBe(10_000);
    expect(sys.live.size).toBe(0);
    expect(sys.stats.removals.size).toBe(10_000);
    expect([...sys.stats.removals.values()].every((n) => n === 1)).toBe(true);
    expect(sys.stats.transientFailures).toBeGreaterThan(3000);
    const sample = await gl.history(ids[0]!);
    expect(sample.filter((e) => e.type === 'target.revoked')).toHaveLength(1);
  }, 240_000);

  it('four sweepers on one store revoke each case exactly once (executor calls and audit events counted)', async () => {
    const clock = manualClock();
    const store = makeStore({ latencyMs: 0 });
    const sys = flakySystem({ failRate: 0 });
    const make = (i: number) =>
      createGrantline({ store, policy, executors: [sys.executor], clock, instanceId: `sweeper-${i}` });
    const gls = [0, 1, 2, 3].map(make);
    const ids = await issueMany(gls[0]!, 2_000);
    clock.advance(61_000);
    const results = await Promise.all(gls.map((gl) => gl.sweep({ limit: 600, concurrency: 4 })));
    expect(results.reduce((a, r) => a + r.claimed, 0)).toBe(2_000);
    expect(results.filter((r) => r.claimed > 0).length).toBeGreaterThan(1);
    await drain(gls, clock, store);
    expect(sys.stats.revokeCalls).toBe(2_000);
    expect(sys.stats.verifyCalls).toBe(2_000);
    for (const id of ids.slice(0, 200)) {
      const h = await store.events(id);
      expect(h.filter((e) => e.type === 'target.revoked')).toHaveLength(1);
      expect(h.filter((e) => e.type === 'revoke.requested')).toHaveLength(1);
    }
  }, 120_000);

  it('four sweepers contending on a store with latency (claims interleave) still revoke each case once', async () => {
    const clock = manualClock();
    const store = makeStore({ latencyMs: 1 });
    const sys = flakySystem({ failRate: 0 });
    const make = (i: number) =>
      createGrantline({ store, policy, executors: [sys.executor], clock, instanceId: `contender-${i}` });
    const gls = [0, 1, 2, 3].map(make);
    const ids = await issueMany(gls[0]!, 120);
    clock.advance(61_000);
    // Small limits: each sweeper claims in several rounds while the others are mid-call.
    await Promise.all(gls.map((gl) => gl.sweep({ limit: 7, concurrency: 3 })));
    await drain(gls, clock, store);
    expect(sys.live.size).toBe(0);
    expect(sys.stats.revokeCalls).toBe(120); // no case was worked on by two sweepers at once
    expect(sys.stats.verifyCalls).toBe(120);
    expect(sys.stats.removals.size).toBe(120);
    expect([...sys.stats.removals.values()].every((n) => n === 1)).toBe(true);
    for (const id of ids) {
      const h = await store.events(id);
      expect(h.filter((e) => e.type === 'target.revoked')).toHaveLength(1);
      expect(h.filter((e) => e.type === 'target.verified')).toHaveLength(1);
      expect(h.filter((e) => e.type === 'verified')).toHaveLength(1);
    }
  }, 120_000);

  it('tracks revocation per target: one target failing does not hold back or repeat the other', async () => {
    const clock = manualClock();
    const store = makeStore();
    const good = flakySystem({ failRate: 0 });
    const bad = flakySystem({ failRate: 0 });
    const badExec = { ...bad.executor, system: 'broken' };
    let breakRevoke = true;
    const revokeBad = badExec.revoke;
    badExec.revoke = async (ctx) => {
      if (breakRevoke) throw new GrantlineError('ERR_EXECUTOR', 'broken: unavailable', { retryable: true });
      return revokeBad(ctx);
    };
    const gl = createGrantline({ store, policy, executors: [good.executor, badExec], clock });
    const g = await gl.request({
      requester: bot,
      subject: bot,
      justification: { reason: 'two systems' },
      targets: [
        { id: 'a', system: 'flaky', resource: 'db://a', permissions: ['db:read'] },
        { id: 'b', system: 'broken', resource: 'db://b', permissions: ['db:read'] },
      ],
      durationSeconds: 60,
      template: 'auto',
    });
    await gl.issue(g.id);
    clock.advance(61_000);
    await gl.sweep();
    let cur = await gl.get(g.id);
    expect(cur.state).toBe('revoking');
    const [a, b] = cur.targets;
    expect(a!.revocation?.confirmedAt).toBeDefined(); // the healthy target is revoked at once
    expect(good.live.size).toBe(0);
    expect(b!.revocation?.confirmedAt).toBeUndefined();
    expect(b!.revocation?.lastError?.message).toBe('broken: unavailable');
    expect(bad.live.size).toBe(1);
    breakRevoke = false;
    for (let i = 0; i < 10 && cur.state !== 'verified'; i++) {
      clock.advance(600_000);
      await gl.sweep();
      cur = await gl.get(g.id);
    }
    expect(cur.state).toBe('verified');
    expect(bad.live.size).toBe(0);
    expect(good.stats.revokeCalls).toBe(1); // never revoked twice while the other target was retried
    const h = await gl.history(g.id);
    expect(h.filter((e) => e.type === 'target.revoked').map((e) => e.data.targetId)).toEqual(['a', 'b']);
    expect(
      h
        .filter((e) => e.type === 'target.verified')
        .map((e) => e.data.targetId)
        .sort(),
    ).toEqual(['a', 'b']);
  });

  it('expires an approved case that was never issued when its activation window passes', async () => {
    const clock = manualClock();
    const store = makeStore();
    const sys = flakySystem({ failRate: 0 });
    const gl = createGrantline({ store, policy, executors: [sys.executor], clock });
    const g = await gl.request({
      requester: bot,
      subject: bot,
      justification: { reason: 'never used' },
      targets: [{ id: 't', system: 'flaky', resource: 'db://x', permissions: ['db:read'] }],
      durationSeconds: 60,
      template: 'auto',
    });
    expect(g.state).toBe('approved');
    clock.set(g.window.requestExpiresAt);
    clock.advance(1);
    const pass = await gl.sweep();
    expect(pass.expired).toBe(1);
    const after = await gl.get(g.id);
    expect(after.state).toBe('expired');
    expect(after.dueAt).toBeNull();
    await expect(gl.issue(g.id)).rejects.toMatchObject({ code: 'ERR_INVALID_TRANSITION' });
    expect(sys.stats.issueCalls).toBe(0);
  });

  it('a sweeper abandoned mid-pass leaves nothing stuck: a later sweep finishes issuing and revoking cases', async () => {
    const clock = manualClock();
    const store = makeStore();
    const sys = flakySystem({ failRate: 0 });
    const gl = createGrantline({
      store,
      policy,
      executors: [sys.executor],
      clock,
      issuingTimeoutMs: 60_000,
      leaseMs: 30_000,
    });
    // A case whose issuer crashed after recording the intent and calling the executor.
    const crashed = await gl.request({
      requester: bot,
      subject: bot,
      justification: { reason: 'x' },
      targets: [{ id: 't0', system: 'flaky', resource: 'db://c', permissions: ['db:read'] }],
      durationSeconds: 60,
      template: 'auto',
    });
    const hanging: Executor<Record<string, unknown>> = {
      ...sys.executor,
      async issue(ctx) {
        await sys.executor.issue(ctx); // the credential exists ...
        return new Promise(() => {}); // ... but the process never hears back
      },
    };
    const dying = createGrantline({ store, policy, executors: [hanging], clock });
    // A crashed process never hears back. This one's call times out after executorTimeoutMs (15 s of
    // real time), when the sweeper has long failed the case: its late issueFailed is refused then, and
    // uncaught that would surface as an unhandled rejection in whatever test runs at that moment.
    dying.issue(crashed.id).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 20));
    expect((await store.get(crashed.id))!.state).toBe('issuing');
    expect(sys.live.size).toBe(1);
    // A case whose sweeper died between the revocation intent and the executor call.
    const [abandoned] = await issueMany(gl, 1);
    const stuckExec: Executor<Record<string, unknown>> = {
      ...sys.executor,
      revoke: () => new Promise(() => {}),
    };
    const deadSweeper = createGrantline({ store, policy, executors: [stuckExec], clock, instanceId: 'dead' });
    clock.advance(61_000);
    deadSweeper.sweep().catch(() => undefined); // its revoke call times out later, as above
    await new Promise((r) => setTimeout(r, 20));
    expect((await store.get(abandoned!))!.state).toBe('revoking');
    // Nothing happens before the lease and the issuing timeout run out ...
    await gl.sweep();
    expect((await store.get(abandoned!))!.state).toBe('revoking');
    // ... and after that a healthy sweeper finishes both.
    clock.advance(61_000);
    await gl.sweep();
    const a = (await store.get(abandoned!))!;
    const c = (await store.get(crashed.id))!;
    expect(a.state).toBe('verified');
    expect(c.state).toBe('failed');
    expect(c.revocation?.trigger).toBe('rollback');
    expect(sys.live.size).toBe(0);
  });

  it('permanent failures raise revocation:failed and keep the case visible as exposed, retrying', async () => {
    const clock = manualClock();
    const store = makeStore();
    const sys = flakySystem({ failRate: 0 });
    let broken = true;
    const denied: Executor<Record<string, unknown>> = {
      ...sys.executor,
      async revoke(ctx) {
        if (broken)
          throw new GrantlineError('ERR_EXECUTOR', 'access denied to the revocation API', {
            retryable: false,
          });
        return sys.executor.revoke(ctx);
      },
    };
    const gl = createGrantline({
      store,
      policy,
      executors: [denied],
      clock,
      retry: { baseMs: 1000, maxMs: 60_000, maxAttempts: 3 },
    });
    const failed: string[] = [];
    gl.on('revocation:failed', (p) => failed.push(p.caseId));
    const [id] = await issueMany(gl, 1);
    clock.advance(61_000);
    await gl.sweep();
    const g = (await store.get(id!))!;
    expect(g.state).toBe('revoking');
    expect(g.revocation?.exposed).toBe(true);
    expect(failed).toEqual([id]);
    expect(g.dueAt).not.toBeNull();
    const exposed = await gl.list({ states: ['revoking'] });
    expect(exposed.grants.map((x) => x.id)).toEqual([id]);
    broken = false;
    clock.advance(120_000);
    await gl.sweep();
    const after = (await store.get(id!))!;
    expect(after.state).toBe('verified');
    expect(after.revocation?.exposed).toBeUndefined();
    expect(after.targets[0]!.revocation?.attempts).toBe(2);
  });

  it('verification that keeps finding the access present re-revokes it, never reports verified', async () => {
    const clock = manualClock();
    const store = makeStore();
    const sys = flakySystem({ failRate: 0 });
    // A target system that acknowledges the revoke but does not remove the access the first time.
    let lie = true;
    const liar: Executor<Record<string, unknown>> = {
      ...sys.executor,
      async revoke(ctx) {
        if (lie) {
          lie = false;
          return { alreadyGone: false };
        }
        return sys.executor.revoke(ctx);
      },
    };
    const gl = createGrantline({
      store,
      policy,
      executors: [liar],
      clock,
      retry: { baseMs: 1000, maxMs: 10_000, maxAttempts: 3 },
    });
    const events: string[] = [];
    gl.on('verification:failed', (p) => events.push(p.caseId));
    const [id] = await issueMany(gl, 1);
    clock.advance(61_000);
    await drain([gl], clock, store);
    const g = (await store.get(id!))!;
    expect(g.state).toBe('verified');
    expect(sys.live.size).toBe(0);
    expect(events).toEqual([id]);
    const h = await store.events(id!);
    expect(h.filter((e) => e.type === 'target.verify-failed').length).toBe(3);
    expect(h.filter((e) => e.type === 'target.revoked').length).toBe(2);
  });

  it('multi-target issuance is all or nothing: a failure rolls back the issued targets', async () => {
    const clock = manualClock();
    const store = makeStore();
    const sys = flakySystem({ failRate: 0 });
    let n = 0;
    const third: Executor<Record<string, unknown>> = {
      ...sys.executor,
      async issue(ctx) {
        if (++n === 3) throw new GrantlineError('ERR_EXECUTOR', 'quota exceeded', { retryable: false });
        return sys.executor.issue(ctx);
      },
    };
    const gl = createGrantline({ store, policy, executors: [third], clock });
    await expect(issueMany(gl, 1, 60, 4)).rejects.toMatchObject({ code: 'ERR_ISSUANCE_FAILED' });
    const [g] = (await gl.list()).grants as Grant[];
    expect(g!.state).toBe('failed');
    expect(sys.live.size).toBe(0);
    expect(g!.targets.map((t) => Boolean(t.issuance))).toEqual([true, true, false, false]);
    expect(g!.targets.every((t) => t.verification?.result === 'absent')).toBe(true);
  });

  it('a pass starts no case once 80% of the lease is spent: the rest is left to the next pass, removed once', async () => {
    const clock = manualClock();
    const store = makeStore();
    const sys = flakySystem({ failRate: 0 });
    // A slow system: every removal takes 3 s of the (injected) clock.
    const slow: Executor<Record<string, unknown>> = {
      ...sys.executor,
      async revoke(ctx) {
        clock.advance(3_000);
        return sys.executor.revoke(ctx);
      },
    };
    const gl = createGrantline({ store, policy, executors: [slow], clock, leaseMs: 10_000, instanceId: 'a' });
    const other = createGrantline({
      store,
      policy,
      executors: [slow],
      clock,
      leaseMs: 10_000,
      instanceId: 'b',
    });
    const ids = await issueMany(gl, 10);
    clock.advance(61_000);
    const first = await gl.sweep({ limit: 10, concurrency: 1 });
    // Cases started at +0, +3 and +6 s; at +9 s (past 8 s, 80% of the lease) no new one is started.
    expect(first).toMatchObject({ claimed: 10, revoked: 3, verified: 3, deferred: 7, errors: 0 });
    // Until the lease (or the recorded intent's resumeAt) passes, nobody else takes them...
    expect((await other.sweep({ limit: 10 })).claimed).toBe(0);
    clock.advance(1_000);
    // ...then another instance does.
    await drain([other], clock, store);
    for (const id of ids) expect((await store.get(id))!.state).toBe('verified');
    expect(sys.stats.removals.size).toBe(10);
    expect([...sys.stats.removals.values()].every((n) => n === 1)).toBe(true);
    expect(sys.stats.revokeCalls).toBe(10);
  });

  it('the background sweeper wakes at the due time (not a poll) and on changes, and stops cleanly', async () => {
    const store = makeStore();
    const sys = flakySystem({ failRate: 0 });
    const gl = createGrantline({ store, policy, executors: [sys.executor] });
    const ac = new AbortController();
    gl.startSweeper({ signal: ac.signal, maxSleepMs: 60_000 });
    const t0 = Date.now();
    const [id] = await issueMany(gl, 1, 1);
    const revoked = new Promise<number>((resolve) => gl.on('grant:verified', () => resolve(Date.now())));
    const at = await revoked;
    const g = (await store.get(id!))!;
    expect(g.state).toBe('verified');
    expect(at - Date.parse(g.window.expiresAt!)).toBeLessThan(1000);
    expect(at - t0).toBeGreaterThanOrEqual(900);
    ac.abort();
    await gl.close();
  });
});

describe('timing with an injected clock', () => {
  it('revokes a case within one sweeper wake-up of its expiry', async () => {
    vi.useFakeTimers({
      toFake: ['setTimeout', 'clearTimeout', 'Date'],
      now: new Date('2026-12-01T09:00:00Z'),
    });
    try {
      const inner = createMemoryStore();
      let claims = 0;
      const store: GrantStore = {
        ...inner,
        claimDue: (...a) => {
          claims++;
          return inner.claimDue(...a);
        },
      };
      const sys = flakySystem({ failRate: 0 });
      const gl = createGrantline({ store, policy, executors: [sys.executor], leaseMs: 30_000 });
      const handle = gl.startSweeper({ maxSleepMs: 3_600_000 });
      const [id] = await issueMany(gl, 1, 600);
      await vi.advanceTimersByTimeAsync(100); // let the change-triggered passes settle
      const before = claims;
      await vi.advanceTimersByTimeAsync(600_000 - 100 - 1);
      expect(claims).toBe(before); // slept through the whole window: no polling
      expect((await inner.get(id!))!.state).toBe('issued');
      await vi.advanceTimersByTimeAsync(1); // exactly the expiry: the one wake-up the sweeper had planned
      expect(claims).toBe(before + 1);
      const g = (await inner.get(id!))!;
      expect(g.state).toBe('verified');
      expect(g.revocation!.lagToRevokedMs).toBe(0);
      await handle.stop();
    } finally {
      vi.useRealTimers();
    }
  });
});
