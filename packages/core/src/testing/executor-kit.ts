import assert from 'node:assert/strict';
import { isGrantlineError } from '../errors.js';
import type { Grant, Issuance, Target } from '../model.js';
import type { Executor, IssueResult } from '../ports.js';
import { makeGrant } from './fixtures.js';
import type { TestRunner } from './store-kit.js';

// #region fixture
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
  /**
   * Optional: create, in the target system, access of the same kind that this executor did NOT
   * create (standing access, another tool's key). The kit revokes a case with and without its
   * recorded issuance and checks that this access survives (rule: never touch what you did not
   * create).
   */
  foreign?(): Promise<{ exists(): Promise<boolean>; remove(): Promise<void> }>;
  /**
   * Optional: make the target system fail the next calls, transiently (throttling, 503, a lost
   * connection) or permanently (access denied, bad configuration). Returns a function that
   * restores normal service. The kit checks that `issue` then throws a `GrantlineError` whose
   * `retryable` is true for a transient and false for a permanent failure.
   */
  simulateFailure?(kind: 'transient' | 'permanent'): Promise<() => Promise<void>>;
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
  /**
   * How long an eventually consistent system may take, after `revoke` returned, until `verify`
   * reports `absent` (default 10,000 ms). Until then `verify` may honestly say `present`; the kit
   * polls it with backoff, as Grantline's sweeper does. Once `verify` says `absent`, the secret
   * must be refused at once: `absent` is a claim backed by evidence, never a guess.
   */
  settleMs?: number;
}
// #endregion

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
  const settleMs = options.settleMs ?? 10_000;
  // Polls verify as the sweeper would: `present` is allowed while the system settles, then the
  // answer must be `absent`, and the secret must really be refused from that moment on.
  const settled = async (
    f: ExecutorKitFixture,
    rc: Parameters<Executor['verify']>[0],
    issued?: IssueResult,
  ) => {
    const deadline = Date.now() + settleMs;
    let wait = 25;
    for (;;) {
      const out = await f.executor.verify(rc);
      if (out.status === 'absent') {
        assert.ok(out.method.length > 0, 'names its verification method');
        assert.ok(Object.keys(out.observation).length > 0, 'records what it observed');
        if (f.usable && issued?.secret)
          assert.equal(
            await f.usable(issued.secret, issued),
            false,
            'verify said absent while the secret still works: absent must be backed by evidence',
          );
        return out;
      }
      assert.ok(
        Date.now() < deadline,
        `verify still reports present ${settleMs} ms after revoke (options.settleMs)`,
      );
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(1_000, wait * 2);
    }
  };
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
        await settled(f, rc, res);
      }),
      timeout,
    );

    it(
      'revoke is idempotent: a repeated revoke succeeds, and reports alreadyGone once the access is gone',
      withFixture(async (f) => {
        const grant = caseFor(f.target, duration);
        const res = await f.executor.issue(ctx(f, grant));
        const rc = { ...ctx(f, grant), issuance: issuanceOf(res), trigger: 'manual', reason: 'kit' };
        await f.executor.revoke(rc);
        await f.executor.revoke(rc); // at once, as a retry after a lost reply would: must not fail
        await settled(f, rc, res);
        const third = await f.executor.revoke(rc);
        assert.equal(third.alreadyGone, true, 'once removed, revoke reports alreadyGone');
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
        await settled(f, rc, b);
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
        await settled(f, rc, res);
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
      'revoke never touches access it did not create (fixture.foreign)',
      withFixture(async (f) => {
        if (!f.foreign) return; // optional: say in your own tests how you keep to the rule
        const other = await f.foreign();
        try {
          assert.equal(await other.exists(), true, 'the foreign access exists before the case');
          const grant = caseFor(f.target, duration);
          const res = await f.executor.issue(ctx(f, grant));
          const rc = { ...ctx(f, grant), issuance: issuanceOf(res), trigger: 'manual', reason: 'kit' };
          await f.executor.revoke(rc);
          await settled(f, rc, res);
          // Crash recovery searches by name: it must still find only what this case created.
          await f.executor.revoke({ ...ctx(f, grant), trigger: 'rollback', reason: 'kit' });
          const never = caseFor(f.target, duration);
          await f.executor.revoke({ ...ctx(f, never), trigger: 'rollback', reason: 'kit' });
          assert.equal(await other.exists(), true, 'the foreign access survived every revoke');
        } finally {
          await other.remove();
        }
      }),
      timeout,
    );

    for (const kind of ['transient', 'permanent'] as const) {
      it(
        `a ${kind} failure of the system is a GrantlineError with retryable ${kind === 'transient'} (fixture.simulateFailure)`,
        withFixture(async (f) => {
          if (!f.simulateFailure) return; // optional: test your error mapping in your own tests
          const grant = caseFor(f.target, duration);
          const restore = await f.simulateFailure(kind);
          let caught: unknown;
          try {
            await f.executor.issue(ctx(f, grant));
          } catch (err) {
            caught = err;
          } finally {
            await restore();
          }
          assert.ok(caught !== undefined, `issue must fail while the system fails (${kind})`);
          assert.ok(isGrantlineError(caught), 'errors are GrantlineErrors');
          assert.equal(caught.retryable, kind === 'transient', `retryable for a ${kind} failure`);
          // Whatever a failed issue may have left is found and removed by name.
          const rc = { ...ctx(f, grant), trigger: 'rollback', reason: 'kit clean-up' };
          await f.executor.revoke(rc);
          await settled(f, rc);
        }),
        timeout,
      );
    }

    it(
      'failures are GrantlineErrors with a boolean retryable',
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
