import assert from 'node:assert/strict';
import { isGrantlineError } from '../errors.js';
import type { Grant, Issuance, Target } from '../model.js';
import type { Executor, IssueResult } from '../ports.js';
import { makeGrant } from './fixtures.js';
import type { TestRunner } from './store-kit.js';

/** One scenario for the executor kit. */
export interface ExecutorKitFixture {
  // biome-ignore lint/suspicious/noExplicitAny: the kit serves executors of any params type.
  executor: Executor<any>;
  /** A target this executor serves (its params must pass `paramsSchema`). */
  target: Target;
  /** Optional: whether the secret returned by `issue` still grants access right now. */
  usable?(secret: Record<string, string>, issuance: IssueResult): Promise<boolean>;
  /** Optional clean-up after each test. */
  cleanup?(): Promise<void>;
}

/** How the executor kit obtains its fixtures. */
export interface ExecutorKitOptions {
  name: string;
  /** A fresh fixture per test. */
  create(): Promise<ExecutorKitFixture>;
  /** Window of issued access in seconds (default 900, the AWS minimum). */
  durationSeconds?: number;
  /** Per-test timeout in ms (default 60,000). */
  timeoutMs?: number;
}

function caseFor(target: Target, durationSeconds: number): Grant {
  const { grant } = makeGrant({ state: 'issuing' });
  const now = Date.now();
  return {
    ...grant,
    targets: [target],
    window: {
      ...grant.window,
      durationSeconds,
      issuedAt: new Date(now).toISOString(),
      expiresAt: new Date(now + durationSeconds * 1000).toISOString(),
    },
  };
}

function issuanceOf(res: IssueResult): Issuance {
  return { ref: res.ref, issuedAt: new Date().toISOString(), expiresAt: res.expiresAt.toISOString() };
}

/**
 * The conformance kit every `Executor` runs, ours or a user's: references without secrets,
 * idempotent issue and revoke, revoke of what is already gone, revoke without a recorded issuance
 * (crash recovery), and verification that observes the target.
 */
export function describeExecutorConformance(runner: TestRunner, options: ExecutorKitOptions): void {
  const { describe, it } = runner;
  const duration = options.durationSeconds ?? 900;
  const timeout = options.timeoutMs ?? 60_000;
  const withFixture = (fn: (f: ExecutorKitFixture) => Promise<void>) => async () => {
    const f = await options.create();
    try {
      await fn(f);
    } finally {
      await f.cleanup?.();
    }
  };
  const ctx = (f: ExecutorKitFixture, grant: Grant) => {
    const parsed = f.executor.paramsSchema.parse(f.target.params ?? {});
    return { grant, target: { ...f.target, params: parsed }, now: new Date() };
  };

  describe(`Executor conformance: ${options.name}`, () => {
    it(
      'accepts its own target params and rejects garbage',
      withFixture(async (f) => {
        assert.equal(typeof f.executor.system, 'string');
        assert.equal(f.target.system, f.executor.system);
        assert.equal(f.executor.paramsSchema.safeParse(f.target.params ?? {}).success, true);
        assert.equal(f.executor.paramsSchema.safeParse('not an object').success, false);
      }),
      timeout,
    );

    it(
      'issues a reference that carries no secret and expires within the window',
      withFixture(async (f) => {
        const grant = caseFor(f.target, duration);
        const res = await f.executor.issue(ctx(f, grant));
        assert.ok(Object.keys(res.ref).length > 0, 'a non-empty reference');
        const refText = JSON.stringify(res.ref);
        for (const secret of Object.values(res.secret ?? {})) {
          assert.ok(secret.length > 0);
          assert.ok(!refText.includes(secret), 'the reference must not contain the secret');
        }
        assert.ok(
          res.expiresAt.getTime() <= Date.parse(grant.window.expiresAt!) + 1000,
          'access ends by the window end',
        );
        assert.ok(res.expiresAt.getTime() > Date.now(), 'access is live when issued');
        if (f.usable && res.secret)
          assert.equal(await f.usable(res.secret, res), true, 'the issued secret works');
        await f.executor.revoke({
          ...ctx(f, grant),
          issuance: issuanceOf(res),
          trigger: 'manual',
          reason: 'kit clean-up',
        });
      }),
      timeout,
    );

    it(
      'verify reports present before revoke, absent after, with an observation',
      withFixture(async (f) => {
        const grant = caseFor(f.target, duration);
        const res = await f.executor.issue(ctx(f, grant));
        const rc = { ...ctx(f, grant), issuance: issuanceOf(res), trigger: 'manual', reason: 'kit' };
        const before = await f.executor.verify(rc);
        assert.equal(before.status, 'present', 'live access must not be reported absent');
        const revoked = await f.executor.revoke(rc);
        assert.notEqual(revoked.alreadyGone, true, 'first revoke removes something');
        const after = await f.executor.verify(rc);
        assert.equal(after.status, 'absent');
        assert.ok(after.method.length > 0, 'names its verification method');
        assert.ok(Object.keys(after.observation).length > 0, 'records what it observed');
        if (f.usable && res.secret)
          assert.equal(await f.usable(res.secret, res), false, 'the secret no longer works');
      }),
      timeout,
    );

    it(
      'revoke is idempotent: a second revoke succeeds and reports alreadyGone',
      withFixture(async (f) => {
        const grant = caseFor(f.target, duration);
        const res = await f.executor.issue(ctx(f, grant));
        const rc = { ...ctx(f, grant), issuance: issuanceOf(res), trigger: 'manual', reason: 'kit' };
        await f.executor.revoke(rc);
        const second = await f.executor.revoke(rc);
        assert.equal(second.alreadyGone, true);
        assert.equal((await f.executor.verify(rc)).status, 'absent');
      }),
      timeout,
    );

    it(
      'issue is idempotent per case and target: one revoke leaves nothing usable',
      withFixture(async (f) => {
        const grant = caseFor(f.target, duration);
        const a = await f.executor.issue(ctx(f, grant));
        const b = await f.executor.issue(ctx(f, grant));
        const rc = { ...ctx(f, grant), issuance: issuanceOf(b), trigger: 'manual', reason: 'kit' };
        await f.executor.revoke(rc);
        assert.equal((await f.executor.verify(rc)).status, 'absent');
        if (f.usable) {
          if (a.secret) assert.equal(await f.usable(a.secret, a), false, 'the first secret is dead too');
          if (b.secret) assert.equal(await f.usable(b.secret, b), false, 'the second secret is dead');
        }
      }),
      timeout,
    );

    it(
      'revoke without a recorded issuance (crash after the executor call) still removes the access',
      withFixture(async (f) => {
        const grant = caseFor(f.target, duration);
        const res = await f.executor.issue(ctx(f, grant));
        const rc = { ...ctx(f, grant), trigger: 'rollback', reason: 'kit crash recovery' };
        const out = await f.executor.revoke(rc);
        assert.notEqual(out.alreadyGone, true, 'it found what the crashed issue created');
        assert.equal((await f.executor.verify(rc)).status, 'absent');
        if (f.usable && res.secret) assert.equal(await f.usable(res.secret, res), false);
      }),
      timeout,
    );

    it(
      'revoke of something never issued succeeds as alreadyGone',
      withFixture(async (f) => {
        const grant = caseFor(f.target, duration);
        const out = await f.executor.revoke({
          ...ctx(f, grant),
          trigger: 'rollback',
          reason: 'kit: nothing was issued',
        });
        assert.equal(out.alreadyGone, true);
      }),
      timeout,
    );

    it(
      'failures are GrantlineErrors with an honest retryable flag',
      withFixture(async (f) => {
        const grant = caseFor({ ...f.target }, duration);
        const broken = { ...ctx(f, grant), grant: { ...grant, id: '' } };
        try {
          await f.executor.issue(broken);
        } catch (err) {
          assert.ok(isGrantlineError(err), 'errors are GrantlineErrors');
          assert.equal(typeof err.retryable, 'boolean');
          return;
        }
        // Executors that accept any case id must still clean up what they issued.
        await f.executor.revoke({ ...broken, trigger: 'manual', reason: 'kit clean-up' });
      }),
      timeout,
    );
  });
}
