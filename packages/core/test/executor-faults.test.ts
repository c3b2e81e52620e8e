import { createMemoryStore } from '@grantline/store-memory';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { type Executor, GrantlineError, createGrantline, isGrantlineError } from '../src/index.js';
import { autoPolicy, bot, manualClock } from './helpers.js';

/**
 * Executor failure paths the happy-path tests never reach: an `issue` that answers after the sweeper
 * rolled its case back, and calls that never answer at all. The fake system keeps real state (live
 * credentials), so "nothing left behind" is measured on the system, not on the case record.
 */
function slowSystem() {
  const live = new Set<string>();
  let releaseIssue: (() => void) | undefined;
  let issueStarted: (() => void) | undefined;
  const started = new Promise<void>((r) => {
    issueStarted = r;
  });
  const control = {
    /** Revoke with an issuance ref: 'ok', 'transient' (retryable) or 'permanent'. */
    revokeWithRef: 'ok' as 'ok' | 'transient' | 'permanent',
    /** Revoke without a ref (the rollback of a case whose issuance was never recorded). */
    revokeWithoutRef: 'ok' as 'ok' | 'transient',
    hangRevokeFor: new Set<string>(),
    signals: [] as AbortSignal[],
  };
  const executor: Executor<Record<string, unknown>> = {
    system: 'slow',
    paramsSchema: z.record(z.string(), z.unknown()),
    async issue(ctx) {
      const key = `${ctx.grant.id}:${ctx.target.id}`;
      if (ctx.target.params.gate) {
        issueStarted!();
        await new Promise<void>((r) => {
          releaseIssue = r;
        });
      }
      live.add(key);
      return { ref: { key }, expiresAt: new Date(ctx.grant.window.expiresAt!) };
    },
    async revoke(ctx) {
      const key = `${ctx.grant.id}:${ctx.target.id}`;
      if (control.hangRevokeFor.has(ctx.grant.id)) {
        if (ctx.signal) control.signals.push(ctx.signal);
        return new Promise(() => {}); // never answers
      }
      const mode = ctx.issuance ? control.revokeWithRef : control.revokeWithoutRef;
      if (mode === 'transient')
        throw new GrantlineError('ERR_EXECUTOR', 'slow: revoke unavailable', { retryable: true });
      if (mode === 'permanent')
        throw new GrantlineError('ERR_EXECUTOR', 'slow: revoke denied', { retryable: false });
      return { alreadyGone: !live.delete(key) };
    },
    async verify(ctx) {
      const key = `${ctx.grant.id}:${ctx.target.id}`;
      return live.has(key)
        ? { status: 'present', method: 'lookup', observation: { key } }
        : { status: 'absent', method: 'lookup', observation: { key } };
    },
  };
  return {
    executor,
    live,
    control,
    started,
    release: () => releaseIssue!(),
  };
}

const policy = autoPolicy('faults');

function setup(extra: { executorTimeoutMs?: number } = {}) {
  const sys = slowSystem();
  const clock = manualClock();
  const store = createMemoryStore();
  const events: { name: string; payload: Record<string, unknown> }[] = [];
  const gl = createGrantline({
    store,
    policy,
    executors: [sys.executor],
    clock,
    issuingTimeoutMs: 60_000,
    ...extra,
  });
  for (const name of ['revocation:failed', 'grant:failed'] as const)
    gl.on(name, (p) => events.push({ name, payload: p as unknown as Record<string, unknown> }));
  const open = (gate: boolean, durationSeconds = 600) =>
    gl.request({
      requester: bot,
      subject: bot,
      justification: { reason: 'job' },
      targets: [
        {
          id: 't',
          system: 'slow',
          resource: 'db://x',
          permissions: ['db:read'],
          params: gate ? { gate: true } : {},
        },
      ],
      durationSeconds,
      template: 'auto',
    });
  return { sys, clock, store, gl, events, open };
}

/** Starts an issue that blocks inside the executor, and lets the sweeper roll the case back meanwhile. */
async function issueOutlivingRollback(env: ReturnType<typeof setup>) {
  const g = await env.open(true);
  const pending = env.gl.issue(g.id).then(
    () => {
      throw new Error('issue should have failed');
    },
    (err: unknown) => err,
  );
  await env.sys.started;
  env.clock.advance(61_000); // past the issuing timeout: the sweeper takes the case over
  await env.gl.sweep();
  return { id: g.id, pending };
}

describe('issue answering after the sweeper rolled the case back', () => {
  it('revokes and verifies the late credential and records it', async () => {
    const env = setup();
    const { id, pending } = await issueOutlivingRollback(env);
    expect((await env.gl.get(id)).state).toBe('failed'); // rolled back before the credential existed
    env.sys.release(); // the executor now creates the credential and answers
    const err = await pending;
    expect(isGrantlineError(err) && err.code).toBe('ERR_ISSUANCE_FAILED');
    expect(env.sys.live.size).toBe(0); // nothing issued late stays behind
    const late = (await env.gl.history(id)).filter((e) => e.type === 'target.issued-late');
    expect(late).toHaveLength(1);
    expect(late[0]!.data).toMatchObject({ targetId: 't', removed: true, method: 'lookup' });
    expect((await env.gl.checkChain(id)).valid).toBe(true);
    const g = await env.gl.get(id);
    expect(g.state).toBe('failed');
    expect(g.revocation?.exposed).toBeUndefined();
  });

  it('a late credential that cannot be removed from a failed case flags it exposed and raises revocation:failed', async () => {
    const env = setup();
    const { id, pending } = await issueOutlivingRollback(env);
    env.sys.control.revokeWithRef = 'permanent';
    env.sys.release();
    expect(isGrantlineError(await pending)).toBe(true);
    const g = await env.gl.get(id);
    expect(g.state).toBe('failed'); // terminal stays terminal
    expect(g.revocation?.exposed).toBe(true);
    const raised = env.events.filter((e) => e.name === 'revocation:failed');
    expect(raised).toHaveLength(1);
    expect(raised[0]!.payload).toMatchObject({ caseId: id, targetId: 't', lateIssuance: true });
    const late = (await env.gl.history(id)).find((e) => e.type === 'target.issued-late')!;
    expect(late.data).toMatchObject({ removed: false, error: { message: 'slow: revoke denied' } });
    expect(env.sys.live.size).toBe(1); // still there, and the case says so
    expect(g.revocation?.pendingLate).toEqual(['t']);
    expect(g.dueAt).not.toBeNull(); // terminal, yet still the sweeper's work
    // The sweeper keeps trying with backoff and, once the system lets it, removes the credential.
    env.clock.advance(600_000);
    await env.gl.sweep();
    expect((await env.gl.get(id)).revocation?.pendingLate).toEqual(['t']); // still refused
    env.sys.control.revokeWithRef = 'ok';
    env.clock.advance(600_000);
    await env.gl.sweep();
    const done = await env.gl.get(id);
    expect(done.state).toBe('failed');
    expect(env.sys.live.size).toBe(0);
    expect(done.revocation?.pendingLate).toBeUndefined();
    expect(done.revocation?.exposed).toBeUndefined();
    expect(done.dueAt).toBeNull();
    const attempts = (await env.gl.history(id)).filter((e) => e.type === 'target.issued-late');
    expect(attempts.map((e) => e.data.removed)).toEqual([false, false, true]);
    expect(env.events.filter((e) => e.name === 'revocation:failed')).toHaveLength(1); // once, not per retry
    expect((await env.gl.checkChain(id)).valid).toBe(true);
  });

  it('while the rollback is still revoking, a late credential whose removal failed is revoked by the sweeper', async () => {
    const env = setup();
    env.sys.control.revokeWithoutRef = 'transient'; // the rollback cannot finish yet
    const { id, pending } = await issueOutlivingRollback(env);
    expect((await env.gl.get(id)).state).toBe('revoking');
    env.sys.control.revokeWithRef = 'transient';
    env.sys.release();
    expect(isGrantlineError(await pending)).toBe(true);
    const reopened = await env.gl.get(id);
    expect(reopened.state).toBe('revoking');
    expect(reopened.targets[0]!.issuance?.ref).toEqual({ key: `${id}:t` }); // the sweeper now knows what to remove
    expect(env.sys.live.size).toBe(1);
    env.sys.control.revokeWithoutRef = 'ok';
    env.sys.control.revokeWithRef = 'ok';
    for (let i = 0; i < 20 && (await env.gl.get(id)).state !== 'failed'; i++) {
      env.clock.advance(600_000);
      await env.gl.sweep();
    }
    expect((await env.gl.get(id)).state).toBe('failed');
    expect(env.sys.live.size).toBe(0);
    expect((await env.gl.checkChain(id)).valid).toBe(true);
  });
});

describe('executor calls that never answer', () => {
  it('are abandoned after executorTimeoutMs (signal aborted) as a retryable failure; the pass and other cases go on', async () => {
    const env = setup({ executorTimeoutMs: 50 });
    const hung = await env.open(false, 60);
    await env.gl.issue(hung.id);
    const other = await env.open(false, 120);
    await env.gl.issue(other.id);
    env.sys.control.hangRevokeFor.add(hung.id);
    env.clock.advance(200_000); // both windows ended
    const pass = await env.gl.sweep();
    expect(pass.claimed).toBe(2);
    expect((await env.gl.get(other.id)).state).toBe('verified');
    const stuck = await env.gl.get(hung.id);
    expect(stuck.state).toBe('revoking');
    expect(stuck.targets[0]!.revocation?.lastError).toMatchObject({
      code: 'ERR_EXECUTOR',
      retryable: true,
      message: expect.stringContaining('did not answer within 50 ms'),
    });
    expect(env.sys.control.signals).toHaveLength(1);
    expect(env.sys.control.signals[0]!.aborted).toBe(true);
    // The system recovers: the next due pass finishes the case.
    env.sys.control.hangRevokeFor.clear();
    for (let i = 0; i < 10 && (await env.gl.get(hung.id)).state !== 'verified'; i++) {
      env.clock.advance(600_000);
      await env.gl.sweep();
    }
    expect((await env.gl.get(hung.id)).state).toBe('verified');
    expect(env.sys.live.size).toBe(0);
  });

  it('the background sweeper keeps revoking other cases while one call hangs', async () => {
    const sys = slowSystem();
    const store = createMemoryStore();
    const gl = createGrantline({ store, policy, executors: [sys.executor], executorTimeoutMs: 100 });
    const open = () =>
      gl.request({
        requester: bot,
        subject: bot,
        justification: { reason: 'job' },
        targets: [{ id: 't', system: 'slow', resource: 'db://x', permissions: ['db:read'] }],
        durationSeconds: 1,
        template: 'auto',
      });
    const hung = await open();
    await gl.issue(hung.id);
    sys.control.hangRevokeFor.add(hung.id);
    const sweeper = gl.startSweeper({ minSleepMs: 5 });
    try {
      await new Promise((r) => setTimeout(r, 1_200)); // the hung case is now stuck in its revoke call
      const later = await open();
      await gl.issue(later.id);
      const deadline = Date.now() + 5_000;
      while (Date.now() < deadline && (await gl.get(later.id)).state !== 'verified')
        await new Promise((r) => setTimeout(r, 50));
      expect((await gl.get(later.id)).state).toBe('verified');
      expect((await gl.get(hung.id)).state).toBe('revoking');
    } finally {
      await sweeper.stop();
    }
  });
});

describe('options are validated', () => {
  it('sweep and startSweeper refuse bad options with ERR_VALIDATION and the path, claiming nothing', async () => {
    const env = setup();
    const g = await env.open(false, 60);
    await env.gl.issue(g.id);
    env.clock.advance(120_000);
    for (const [opts, path] of [
      [{ limit: -1 }, ['limit']],
      [{ concurrency: 'abc' }, ['concurrency']],
      [{ limit: 10, extra: true }, []],
    ] as const) {
      const err = await env.gl.sweep(opts as never).catch((e: unknown) => e);
      expect(isGrantlineError(err) && err.code).toBe('ERR_VALIDATION');
      const issues = (err as GrantlineError).details.issues as { path: unknown[] }[];
      if (path.length > 0) expect(issues[0]!.path).toEqual(path);
    }
    expect((await env.gl.get(g.id)).state).toBe('issued'); // nothing was claimed or leased
    expect((await env.gl.sweep()).claimed).toBe(1);
    expect(() => env.gl.startSweeper({ maxSleepMs: 'soon' } as never)).toThrow(
      expect.objectContaining({ code: 'ERR_VALIDATION' }),
    );
  });

  it('refuses an executor timeout that would outlive the issuing timeout', () => {
    expect(() =>
      createGrantline({
        store: createMemoryStore(),
        policy,
        executors: [],
        issuingTimeoutMs: 1_000,
        executorTimeoutMs: 1_000,
      }),
    ).toThrow(expect.objectContaining({ code: 'ERR_VALIDATION' }));
  });
});
