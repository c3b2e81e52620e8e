import { describe, expect, it } from 'vitest';
import {
  type Executor,
  GRANTLINE_EVENTS,
  type GrantlineEventPayload,
  createGrantline,
  isGrantlineError,
  verifyChain,
} from '../src/index.js';
import {
  alice,
  anyRulePolicy,
  ciJob,
  fakeSystem,
  olga,
  oscar,
  paymentsRequest,
  policy,
  rita,
  sam,
  setup,
  tickingClock,
} from './helpers.js';

/** Rita's break-glass request for the payments API (she holds the on-call role). */
const ritaIncident = {
  requester: rita,
  subject: rita,
  justification: { reason: 'incident' },
  targets: [{ id: 'p', system: 'token', resource: 'api://payments' }],
  durationSeconds: 900,
};

async function approvedPayments(env: Awaited<ReturnType<typeof setup>>) {
  const g = await env.gl.request(paymentsRequest());
  await env.gl.approve(g.id, { approver: sam, reason: 'change reviewed' });
  return env.gl.approve(g.id, { approver: olga, reason: 'owner ok' });
}

async function code(p: Promise<unknown>): Promise<{ code: string; reasons: string[] }> {
  try {
    await p;
  } catch (err) {
    if (!isGrantlineError(err)) throw err;
    const reasons = ((err.details.reasons as { code: string }[] | undefined) ?? []).map((r) => r.code);
    return { code: err.code, reasons };
  }
  throw new Error('expected a rejection');
}

describe('the main path: requested → approved → issued → revoked → verified', () => {
  it('runs a whole case and leaves a valid chain that names every actor', async () => {
    const env = await setup();
    const { gl, tokens, clock } = env;
    const g = await gl.request(paymentsRequest());
    expect(g.state).toBe('requested');
    expect(g.requester.id).toBe('alice');
    expect(g.subject.id).toBe('ci:deploy-payments');
    expect(g.policy).toMatchObject({
      ruleId: 'payments-write',
      owner: 'iam-governance',
      operator: 'platform-ops',
      risk: 'high',
    });

    const one = await gl.approve(g.id, { approver: sam });
    expect(one.state).toBe('requested');
    const two = await gl.approve(g.id, { approver: olga });
    expect(two.state).toBe('approved');
    expect(two.approvals.map((a) => [a.approver.id, a.role])).toEqual([
      ['sam', 'security-officer'],
      ['olga', 'service-owner'],
    ]);

    const { grant: issued, credentials } = await gl.issue(g.id);
    expect(issued.state).toBe('issued');
    expect(issued.window.expiresAt).toBe(new Date(clock.now().getTime() + 1800_000).toISOString());
    const token = credentials.payments!.token!;
    const accepted = await tokens.verifier.verify(token, { audience: 'api://payments' });
    expect(accepted).toMatchObject({
      caseId: g.id,
      subject: 'ci:deploy-payments',
      scope: ['payments:write'],
    });

    await gl.recordUsage(g.id, { sourceIp: '10.1.2.3', action: 'payments:rotate-webhook' });
    clock.advance(60_000);
    const done = await gl.complete(g.id, { actor: ciJob, reason: 'webhooks rotated' });
    expect(done.state).toBe('verified');
    expect(done.revocation).toMatchObject({ trigger: 'completion', actor: { id: 'ci:deploy-payments' } });
    expect(done.targets[0]!.verification).toMatchObject({ result: 'absent', method: 'signed-probe' });
    await expect(tokens.verifier.verify(token, { audience: 'api://payments' })).rejects.toMatchObject({
      code: 'ERR_TOKEN_REJECTED',
      details: { reason: 'revoked' },
    });

    const history = await gl.history(g.id);
    expect(history.map((e) => e.type)).toEqual([
      'requested',
      'approval',
      'approval',
      'approved',
      'issue.started',
      'target.issued',
      'issued',
      'usage',
      'revoke.requested',
      'target.revoked',
      'revoked',
      'target.verified',
      'verified',
    ]);
    expect(history.find((e) => e.type === 'usage')!.data).toMatchObject({
      sourceIp: '10.1.2.3',
      action: 'payments:rotate-webhook',
      usedBy: 'ci:deploy-payments',
    });
    expect(history.filter((e) => e.type === 'approval').map((e) => e.actingRole)).toEqual([
      'security-officer',
      'service-owner',
    ]);
    expect(verifyChain(g.id, history).valid).toBe(true);
    expect((await gl.checkChain(g.id)).valid).toBe(true);
  });

  it('emits every event after commit, and a throwing listener changes nothing', async () => {
    const env = await setup();
    const seen: [string, number][] = [];
    for (const name of GRANTLINE_EVENTS) {
      env.gl.on(name, async (p: GrantlineEventPayload) => {
        const stored = await env.store.get(p.caseId);
        seen.push([name, stored!.version]);
      });
    }
    env.gl.on('grant:approved', () => {
      throw new Error('listener bug');
    });
    const g = await approvedPayments(env);
    expect(g.state).toBe('approved');
    await new Promise((r) => setTimeout(r, 5));
    expect(seen.map((s) => s[0])).toEqual([
      'grant:requested',
      'grant:approval',
      'grant:approval',
      'grant:approved',
    ]);
    expect(seen.every(([, v]) => v >= 1)).toBe(true);
    expect(env.logger.lines.some((l) => l.includes('event listener threw'))).toBe(true);
  });
});

describe('dual control and who may approve (each test tries to break a rule)', () => {
  it('one approval is not enough for a high-risk rule, and issuing early is refused without writing', async () => {
    const env = await setup();
    const g = await env.gl.request(paymentsRequest());
    await env.gl.approve(g.id, { approver: sam });
    const before = env.store.dump();
    expect(await code(env.gl.issue(g.id))).toMatchObject({ code: 'ERR_INVALID_TRANSITION' });
    expect(env.store.dump()).toBe(before);
    expect((await env.gl.get(g.id)).state).toBe('requested');
  });

  it('distinct roles: a second approver with the same role does not complete the quorum', async () => {
    const env = await setup();
    const g = await env.gl.request(paymentsRequest());
    await env.gl.approve(g.id, { approver: sam });
    const sam2 = { id: 'sam2', kind: 'human' as const, roles: ['security-officer'], teams: ['security'] };
    expect(await code(env.gl.approve(g.id, { approver: sam2 }))).toEqual({
      code: 'ERR_APPROVAL_REFUSED',
      reasons: ['ROLE_ALREADY_USED'],
    });
    expect((await env.gl.get(g.id)).approvals).toHaveLength(1);
  });

  it('the same approver cannot approve twice', async () => {
    const env = await setup();
    const g = await env.gl.request(paymentsRequest());
    await env.gl.approve(g.id, { approver: sam });
    const samAsOwner = { ...sam, roles: ['security-officer', 'service-owner'] };
    expect(
      (await code(env.gl.approve(g.id, { approver: samAsOwner, role: 'service-owner' }))).reasons,
    ).toContain('DUPLICATE_APPROVER');
  });

  it('the requester may not approve their own request', async () => {
    const env = await setup();
    const selfish = { ...alice, roles: ['security-officer', 'service-owner'] };
    const g = await env.gl.request(paymentsRequest({ requester: selfish }));
    expect(await code(env.gl.approve(g.id, { approver: selfish }))).toEqual({
      code: 'ERR_APPROVAL_REFUSED',
      reasons: ['SELF_APPROVAL_REQUESTER'],
    });
  });

  it('the subject may not approve access for itself', async () => {
    const env = await setup();
    const human = { id: 'hank', kind: 'human' as const, roles: ['service-owner'], teams: [] };
    const g = await env.gl.request({
      requester: alice,
      subject: human,
      justification: { reason: 'debug', ticket: 'OPS-1' },
      targets: [{ id: 'orders', system: 'token', resource: 'api://orders' }],
      durationSeconds: 600,
    });
    expect((await code(env.gl.approve(g.id, { approver: human }))).reasons).toContain(
      'SELF_APPROVAL_SUBJECT',
    );
  });

  it('the operator team executes and may not approve', async () => {
    const env = await setup();
    const g = await env.gl.request(paymentsRequest());
    expect((await code(env.gl.approve(g.id, { approver: oscar }))).reasons).toContain(
      'OPERATOR_TEAM_APPROVAL',
    );
  });

  it('a workload may not approve, and an approver without a qualifying role is refused', async () => {
    const env = await setup();
    const g = await env.gl.request(paymentsRequest());
    const bot = { id: 'approver-bot', kind: 'workload' as const, roles: ['security-officer'] };
    expect((await code(env.gl.approve(g.id, { approver: bot }))).reasons).toContain('APPROVER_NOT_HUMAN');
    expect(
      (await code(env.gl.approve(g.id, { approver: { id: 'eve', kind: 'human', roles: ['engineer'] } })))
        .reasons,
    ).toEqual(['ROLE_NOT_QUALIFIED']);
    expect((await code(env.gl.approve(g.id, { approver: sam, role: 'service-owner' }))).reasons).toEqual([
      'ROLE_NOT_QUALIFIED',
    ]);
  });

  it('concurrent approvals serialise: both are recorded, one version each, chain intact', async () => {
    const { createMemoryStore } = await import('@grantline/store-memory');
    const env = await setup();
    const store = createMemoryStore({ latencyMs: 2 });
    const gl = createGrantline({ store, policy, executors: [env.tokens.executor], clock: env.clock });
    const g = await gl.request(paymentsRequest());
    const [a, b] = await Promise.all([
      gl.approve(g.id, { approver: sam }),
      gl.approve(g.id, { approver: olga }),
    ]);
    const final = await gl.get(g.id);
    expect(final.state).toBe('approved');
    expect(final.version).toBe(3);
    expect(new Set([a.version, b.version])).toEqual(new Set([2, 3]));
    const history = await gl.history(g.id);
    expect(history.filter((e) => e.type === 'approval')).toHaveLength(2);
    expect(verifyChain(g.id, history).valid).toBe(true);
  });

  it('the same approver racing with itself is recorded exactly once', async () => {
    const { createMemoryStore } = await import('@grantline/store-memory');
    const env = await setup();
    const store = createMemoryStore({ latencyMs: 1 });
    const gl = createGrantline({ store, policy, executors: [env.tokens.executor], clock: env.clock });
    const g = await gl.request(paymentsRequest());
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, () => gl.approve(g.id, { approver: sam })),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const history = await gl.history(g.id);
    expect(history.filter((e) => e.type === 'approval')).toHaveLength(1);
    expect((await gl.get(g.id)).version).toBe(2);
  });
});

describe('terminal states are final', () => {
  it('nothing moves a denied, cancelled or verified case', async () => {
    const env = await setup();
    const denied = await env.gl.request(paymentsRequest());
    await env.gl.deny(denied.id, { actor: sam, reason: 'no change window' });
    const cancelled = await env.gl.request(paymentsRequest());
    await env.gl.cancel(cancelled.id, { actor: alice, reason: 'not needed' });
    const done = await approvedPayments(env);
    await env.gl.issue(done.id);
    await env.gl.revoke(done.id, { actor: sam, reason: 'manual' });
    for (const id of [denied.id, cancelled.id]) {
      const before = JSON.stringify(await env.gl.get(id));
      expect((await code(env.gl.approve(id, { approver: olga }))).code).toBe('ERR_INVALID_TRANSITION');
      expect((await code(env.gl.issue(id))).code).toBe('ERR_INVALID_TRANSITION');
      expect((await code(env.gl.cancel(id, { actor: alice, reason: 'x' }))).code).toBe(
        'ERR_INVALID_TRANSITION',
      );
      expect(JSON.stringify(await env.gl.get(id))).toBe(before);
    }
    expect((await env.gl.get(done.id)).state).toBe('verified');
    expect((await code(env.gl.issue(done.id))).code).toBe('ERR_INVALID_TRANSITION');
    const again = await env.gl.revoke(done.id, { actor: sam, reason: 'again' });
    expect(again.state).toBe('verified');
    expect(again.version).toBe((await env.gl.get(done.id)).version);
  });

  it('only a qualifying approver may deny; only a party may cancel', async () => {
    const env = await setup();
    const g = await env.gl.request(paymentsRequest());
    expect((await code(env.gl.deny(g.id, { actor: alice, reason: 'x' }))).code).toBe('ERR_APPROVAL_REFUSED');
    expect(
      (await code(env.gl.cancel(g.id, { actor: { id: 'mallory', kind: 'human', roles: [] }, reason: 'x' })))
        .code,
    ).toBe('ERR_APPROVAL_REFUSED');
    expect((await env.gl.get(g.id)).state).toBe('requested');
  });
});

describe('secrets are returned once and never kept', () => {
  it('the token appears nowhere: store, history, events, logs, errors', async () => {
    const env = await setup();
    const emitted: string[] = [];
    for (const name of GRANTLINE_EVENTS) env.gl.on(name, (p) => emitted.push(JSON.stringify(p)));
    const g = await approvedPayments(env);
    const { credentials, grant } = await env.gl.issue(g.id);
    const token = credentials.payments!.token!;
    const signature = token.split('.')[2]!;
    expect(token.length).toBeGreaterThan(100);
    expect(JSON.stringify(grant)).not.toContain(signature);
    await env.gl.recordUsage(g.id, { sourceIp: '172.16.0.1', action: 'payments:refund' });
    const haystacks = [
      env.store.dump(),
      JSON.stringify(await env.gl.history(g.id)),
      emitted.join('\n'),
      env.logger.lines.join('\n'),
    ];
    for (const h of haystacks) {
      expect(h.length).toBeGreaterThan(0);
      expect(h).not.toContain(signature);
    }
    expect(grant.targets[0]!.issuance!.fingerprint).toMatch(/^[0-9a-f]{32}$/);
  });

  /** A case over two fake systems, `a` on `leaky` and `b` on `failing`, approved; `gl` over `env`'s store. */
  async function twoSystemCase(
    env: Awaited<ReturnType<typeof setup>>,
    leaky: ReturnType<typeof fakeSystem>,
    failing: ReturnType<typeof fakeSystem>,
  ) {
    const gl = createGrantline({
      store: env.store,
      policy: anyRulePolicy(),
      executors: [leaky, failing],
      clock: env.clock,
      logger: env.logger,
    });
    const g = await gl.request({
      requester: alice,
      subject: ciJob,
      justification: { reason: 'two systems' },
      targets: [
        { id: 'a', system: 'leaky', resource: 'db://one' },
        { id: 'b', system: 'failing', resource: 'db://two' },
      ],
      durationSeconds: 600,
    });
    await gl.approve(g.id, { approver: olga });
    return { gl, g };
  }

  it('an executor error that quotes a secret is redacted before it is recorded', async () => {
    const env = await setup();
    const leaky = fakeSystem('leaky', { secret: { password: 'hunter2-super-secret' } });
    const failing = fakeSystem('failing', {
      async issue() {
        throw new Error('backend said: bad password hunter2-super-secret');
      },
    });
    const { gl, g } = await twoSystemCase(env, leaky, failing);
    const err = await code(gl.issue(g.id));
    expect(err.code).toBe('ERR_ISSUANCE_FAILED');
    const final = await gl.get(g.id);
    expect(final.state).toBe('failed');
    expect(final.targets.map((t) => t.verification?.result)).toEqual(['absent', 'absent']);
    expect(env.store.dump()).not.toContain('hunter2-super-secret');
    expect(env.logger.lines.join('\n')).not.toContain('hunter2-super-secret');
    expect(env.store.dump()).toContain('[redacted]');
  });

  it("the rollback's revoke and verify errors that quote the secret just issued are redacted too", async () => {
    for (const failingStep of ['revoke', 'verify'] as const) {
      const env = await setup();
      const SECRET = `rollback-${failingStep}-hunter2-secret`;
      let calls = 0;
      // Issues target a; its backend then quotes the credential in the rollback's first revoke or
      // verify error, which the issue call records (it runs the rollback before it returns).
      const leaky = fakeSystem('leaky', {
        secret: { password: SECRET },
        async revoke() {
          if (failingStep === 'revoke' && calls++ === 0)
            throw new Error(`cannot drop login with password ${SECRET}: busy`);
          return {};
        },
        async verify() {
          if (failingStep === 'verify' && calls++ === 0) throw new Error(`probe with ${SECRET}: busy`);
          return { status: 'absent', method: 'test', observation: { gone: true } };
        },
      });
      const failing: Executor<Record<string, unknown>> = {
        ...leaky,
        system: 'failing',
        async issue() {
          throw new Error('backend down');
        },
      };
      const { gl, g } = await twoSystemCase(env, leaky, failing);
      expect((await code(gl.issue(g.id))).code).toBe('ERR_ISSUANCE_FAILED');
      expect(calls).toBeGreaterThanOrEqual(1); // the quoting failure happened inside the issue call
      expect(env.store.dump()).toContain(
        `${failingStep === 'revoke' ? 'password' : 'probe with'} [redacted]: busy`,
      );
      expect(env.store.dump()).not.toContain(SECRET);
      expect(env.logger.lines.join('\n')).not.toContain(SECRET);
      for (let i = 0; i < 5 && (await gl.get(g.id)).state !== 'failed'; i++) {
        env.clock.advance(60_000);
        await gl.sweep();
      }
      expect((await gl.get(g.id)).state).toBe('failed');
    }
  });
});

describe('violations, templates, break-glass and expiry', () => {
  it('usage from a disallowed address revokes with trigger violation and kills the token', async () => {
    const env = await setup();
    const g = await approvedPayments(env);
    const { credentials } = await env.gl.issue(g.id);
    await env.gl.recordUsage(g.id, { sourceIp: '10.0.0.7', action: 'payments:read' });
    expect((await env.gl.get(g.id)).state).toBe('issued');
    const after = await env.gl.recordUsage(g.id, { sourceIp: '203.0.113.9', action: 'payments:read' });
    expect(after.state).toBe('verified');
    expect(after.revocation?.trigger).toBe('violation');
    expect(after.revocation?.reason).toContain('203.0.113.9');
    await expect(
      env.tokens.verifier.verify(credentials.payments!.token!, { audience: 'api://payments' }),
    ).rejects.toMatchObject({
      details: { reason: 'revoked' },
    });
  });

  it('a detector reports a violation: revoked and verified at once, announced, recorded with the detector', async () => {
    const env = await setup();
    const g = await approvedPayments(env);
    const { credentials } = await env.gl.issue(g.id);
    const seen: unknown[] = [];
    env.gl.on('policy:violation', (e) => seen.push(e));
    const after = await env.gl.reportViolation(g.id, {
      detector: 'siem:exfil-rule-7',
      reason: 'bulk export outside the change window',
    });
    expect(after.state).toBe('verified');
    expect(after.revocation).toMatchObject({
      trigger: 'violation',
      reason: 'bulk export outside the change window',
    });
    expect(seen).toEqual([
      expect.objectContaining({
        caseId: g.id,
        reasons: [expect.objectContaining({ code: 'VIOLATION_REPORTED' })],
      }),
    ]);
    const requested = (await env.gl.history(g.id)).find((e) => e.type === 'revoke.requested')!;
    expect(requested.actor.id).toBe('siem:exfil-rule-7');
    await expect(
      env.tokens.verifier.verify(credentials.payments!.token!, { audience: 'api://payments' }),
    ).rejects.toMatchObject({
      details: { reason: 'revoked' },
    });
    // Bad input is refused with a path, nothing written; a finished case cannot be re-revoked.
    await expect(env.gl.reportViolation(g.id, { detector: '', reason: 'x' })).rejects.toMatchObject({
      code: 'ERR_VALIDATION',
    });
    await expect(env.gl.reportViolation(g.id, { detector: 'siem', reason: 'again' })).rejects.toMatchObject({
      code: 'ERR_INVALID_TRANSITION',
    });
  });

  it('an action outside the allowed set is a violation too; usage after revocation is flagged', async () => {
    const env = await setup();
    const g = await approvedPayments(env);
    await env.gl.issue(g.id);
    const after = await env.gl.recordUsage(g.id, { sourceIp: '10.0.0.7', action: 'admin:delete-everything' });
    expect(after.revocation?.trigger).toBe('violation');
    await env.gl.recordUsage(g.id, { sourceIp: '10.0.0.7', action: 'payments:read', outcome: 'denied' });
    const last = (await env.gl.history(g.id)).at(-1)!;
    expect(last.data).toMatchObject({ afterRevocation: true, outcome: 'denied' });
  });

  it('a pre-approved low-risk template is approved by policy, recorded as such', async () => {
    const env = await setup();
    const g = await env.gl.request({
      requester: ciJob,
      subject: ciJob,
      justification: { reason: 'nightly report' },
      targets: [{ id: 'metrics', system: 'token', resource: 'api://metrics', permissions: ['metrics:read'] }],
      durationSeconds: 600,
      template: 'read-metrics',
    });
    expect(g.state).toBe('approved');
    expect(g.approvals).toEqual([]);
    const history = await env.gl.history(g.id);
    expect(history[1]).toMatchObject({
      type: 'approved',
      actor: { id: 'policy:template:read-metrics', kind: 'system' },
    });
    expect((await code(env.gl.request({ ...paymentsRequest(), template: 'read-metrics' }))).reasons).toEqual([
      'TEMPLATE_NOT_APPLICABLE',
    ]);
  });

  it('break-glass: allowed role only, capped, review overdue blocks the next one until reviewed', async () => {
    const env = await setup();
    const bg = (over = {}) => ({
      requester: rita,
      subject: rita,
      justification: { reason: 'payments down, incident INC-9' },
      targets: [{ id: 'payments', system: 'token', resource: 'api://payments' }],
      durationSeconds: 900,
      ...over,
    });
    expect((await code(env.gl.breakGlass(bg({ requester: alice })))).reasons).toEqual(['BREAK_GLASS_ROLE']);
    expect((await code(env.gl.breakGlass(bg({ durationSeconds: 0 })))).code).toBe('ERR_VALIDATION');
    expect((await code(env.gl.breakGlass(bg({ durationSeconds: 3600 })))).reasons).toEqual([
      'DURATION_EXCEEDS_MAX',
    ]);
    const g = await env.gl.breakGlass(bg());
    expect(g.state).toBe('approved');
    expect(g.breakGlass?.reviewDueAt).toBe(new Date(env.clock.now().getTime() + 86_400_000).toISOString());
    const overdue: string[] = [];
    env.gl.on('review:overdue', (p) => overdue.push(p.caseId));
    await env.gl.issue(g.id);
    env.clock.advance(86_401_000);
    await env.gl.sweep();
    expect(overdue).toEqual([g.id]);
    expect((await env.gl.get(g.id)).state).toBe('verified');
    expect((await code(env.gl.breakGlass(bg()))).reasons).toEqual(['BREAK_GLASS_REVIEW_OVERDUE']);
    expect((await code(env.gl.review(g.id, { reviewer: rita, outcome: 'accepted' }))).reasons).toContain(
      'SELF_REVIEW',
    );
    await env.gl.review(g.id, { reviewer: sam, outcome: 'accepted', notes: 'justified' });
    const next = await env.gl.breakGlass(bg());
    expect(next.state).toBe('approved');
  });

  it('a break-glass review by a workload or by a member of the break-glass operator team is refused', async () => {
    const env = await setup();
    const g = await env.gl.breakGlass(ritaIncident);
    const bot = { id: 'bot', kind: 'workload' as const, roles: ['security-officer'] };
    expect(await code(env.gl.review(g.id, { reviewer: bot, outcome: 'accepted' }))).toEqual({
      code: 'ERR_APPROVAL_REFUSED',
      reasons: ['REVIEWER_NOT_HUMAN'],
    });
    // oscar holds security-officer but is in platform-ops, the break-glass operator team.
    expect(await code(env.gl.review(g.id, { reviewer: oscar, outcome: 'accepted' }))).toEqual({
      code: 'ERR_APPROVAL_REFUSED',
      reasons: ['OPERATOR_TEAM_REVIEW'],
    });
    expect((await env.gl.get(g.id)).breakGlass!.review).toBeUndefined();
    expect((await env.gl.review(g.id, { reviewer: sam, outcome: 'accepted' })).breakGlass!.review!.role).toBe(
      'security-officer',
    );
  });

  it('a rejected break-glass review revokes live access', async () => {
    const env = await setup();
    const g = await env.gl.breakGlass(ritaIncident);
    await env.gl.issue(g.id);
    const r = await env.gl.review(g.id, { reviewer: sam, outcome: 'rejected' });
    expect(r.state).toBe('verified');
    expect(r.revocation?.trigger).toBe('review');
  });

  it('a rejected break-glass review before issuance cancels the case: it can never be issued', async () => {
    const env = await setup();
    const g = await env.gl.breakGlass(ritaIncident);
    const r = await env.gl.review(g.id, { reviewer: sam, outcome: 'rejected', notes: 'no incident' });
    expect(r.state).toBe('cancelled');
    expect(r.decision).toMatchObject({ by: { id: sam.id }, outcome: 'cancelled' });
    const refused = await env.gl.issue(g.id).catch((e: unknown) => e);
    expect(isGrantlineError(refused) && refused.code).toBe('ERR_INVALID_TRANSITION');
    expect((await env.gl.history(g.id)).map((e) => e.type)).toEqual([
      'requested',
      'breakglass.used',
      'review',
      'cancelled',
    ]);
  });

  it('a break-glass review rejected during issuance: the credentials are revoked the moment they are issued', async () => {
    const env = await setup();
    let open!: () => void;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    const token = env.tokens.executor as unknown as Executor<Record<string, unknown>>;
    const gated: Executor<Record<string, unknown>> = {
      ...token,
      async issue(ctx) {
        await gate;
        return token.issue(ctx);
      },
    };
    const gl = createGrantline({
      store: env.store,
      policy,
      executors: [gated],
      clock: env.clock,
      random: () => 0.5,
    });
    const g = await gl.breakGlass(ritaIncident);
    const issuing = gl.issue(g.id).catch((e: unknown) => e);
    await new Promise((r) => setImmediate(r));
    expect((await gl.get(g.id)).state).toBe('issuing');
    const r = await gl.review(g.id, { reviewer: sam, outcome: 'rejected' });
    expect(r.state).toBe('issuing'); // recorded; revoking now would race the executor
    open();
    const out = await issuing;
    expect(isGrantlineError(out) && out.code).toBe('ERR_ISSUANCE_FAILED');
    const after = await gl.get(g.id);
    expect(after.state).toBe('verified');
    expect(after.revocation).toMatchObject({ trigger: 'review', actor: { id: sam.id } });
    const types = (await gl.history(g.id)).map((e) => e.type);
    expect(types.slice(types.indexOf('review'))).toEqual([
      'review',
      'target.issued',
      'issued',
      'revoke.requested',
      'target.revoked',
      'revoked',
      'target.verified',
      'verified',
    ]);
  });

  it('the sweeper revokes at expiry and records the lag; pending requests expire', async () => {
    const env = await setup();
    const g = await approvedPayments(env);
    await env.gl.issue(g.id);
    const pending = await env.gl.request(paymentsRequest());
    env.clock.advance(1800_000 + 250);
    const res = await env.gl.sweep();
    expect(res.claimed).toBe(1);
    const after = await env.gl.get(g.id);
    expect(after.state).toBe('verified');
    expect(after.revocation).toMatchObject({ trigger: 'expiry', lagToRevokedMs: 250, lagToVerifiedMs: 250 });
    env.clock.advance(24 * 3600_000);
    await env.gl.sweep();
    expect((await env.gl.get(pending.id)).state).toBe('expired');
  });
});

describe('policy and idempotency', () => {
  it('denies with reasons and writes nothing when a reference is missing or the rule is exceeded', async () => {
    const env = await setup();
    const before = env.store.dump();
    const e1 = await code(
      env.gl.request(paymentsRequest({ justification: { reason: 'x', workload: 'ci:deploy-payments' } })),
    );
    expect(e1).toEqual({ code: 'ERR_POLICY_DENIED', reasons: ['TICKET_REQUIRED'] });
    const e2 = await code(
      env.gl.request(
        paymentsRequest({ justification: { reason: 'x', ticket: 'JIRA-1', workload: 'other' } }),
      ),
    );
    expect(e2.reasons).toEqual(['TICKET_PATTERN', 'WORKLOAD_MISMATCH']);
    const e3 = await code(env.gl.request(paymentsRequest({ durationSeconds: 7200 })));
    expect(e3.reasons).toEqual(['DURATION_EXCEEDS_MAX']);
    const e4 = await code(
      env.gl.request(paymentsRequest({ targets: [{ id: 'x', system: 'token', resource: 'ftp://nowhere' }] })),
    );
    expect(e4.reasons).toEqual(['NO_MATCHING_RULE']);
    const e5 = await code(
      env.gl.request(paymentsRequest({ targets: [{ id: 'x', system: 'ssh', resource: 'host' }] })),
    );
    expect(e5.code).toBe('ERR_NO_EXECUTOR');
    expect(env.store.dump()).toBe(before);
  });

  it('repeating a request with the same idempotency key returns the same case; a different body is refused', async () => {
    const env = await setup();
    const a = await env.gl.request(paymentsRequest({ idempotencyKey: 'deploy-991' }));
    const b = await env.gl.request(paymentsRequest({ idempotencyKey: 'deploy-991' }));
    expect(b.id).toBe(a.id);
    expect((await env.gl.list()).grants).toHaveLength(1);
    expect(
      (await code(env.gl.request(paymentsRequest({ idempotencyKey: 'deploy-991', durationSeconds: 60 }))))
        .code,
    ).toBe('ERR_IDEMPOTENCY_MISMATCH');
  });

  it('a multi-target case whose targets match different rules is refused (RULES_DIFFER), not governed by one', async () => {
    const env = await setup();
    const both = paymentsRequest({
      targets: [
        { id: 'orders', system: 'token', resource: 'api://orders' },
        { id: 'payments', system: 'token', resource: 'api://payments' },
      ],
    });
    expect(await code(env.gl.request(both))).toEqual({
      code: 'ERR_POLICY_DENIED',
      reasons: ['RULES_DIFFER'],
    });
    const g = await env.gl.request(
      paymentsRequest({
        targets: [
          { id: 'p1', system: 'token', resource: 'api://payments' },
          { id: 'p2', system: 'token', resource: 'api://payments/refunds' },
        ],
      }),
    );
    expect(g.policy.ruleId).toBe('payments-write');
    expect(g.policy.approvals.count).toBe(2);
    expect(g.policy.maxDurationSeconds).toBe(3600);
  });
});

describe('a step records one instant', () => {
  it('approve, recordUsage and review stamp what they record with the time of the step', async () => {
    // A second clock read within one step would show as another time.
    const env = await setup({ clock: tickingClock() });
    const g = await approvedPayments(env);
    await env.gl.issue(g.id);
    await env.gl.recordUsage(g.id, { sourceIp: '10.1.2.3', action: 'payments:write' });
    const history = await env.gl.history(g.id);
    const record = await env.gl.get(g.id);
    const usage = history.find((e) => e.type === 'usage')!;
    expect(usage.data.at).toBe(usage.at);
    expect(record.usage.lastAt).toBe(usage.at);
    expect(record.approvals.map((a) => a.at)).toEqual(
      history.filter((e) => e.type === 'approval').map((e) => e.at),
    );
    const bg = await env.gl.breakGlass(ritaIncident);
    await env.gl.review(bg.id, { reviewer: sam, outcome: 'accepted' });
    const review = (await env.gl.history(bg.id)).find((e) => e.type === 'review')!;
    expect((await env.gl.get(bg.id)).breakGlass!.review!.at).toBe(review.at);
  });

  it('a revocation step hands the sweeper its lease from the instant of the step (reportViolation)', async () => {
    const env = await setup({ clock: tickingClock() });
    const g = await approvedPayments(env);
    await env.gl.issue(g.id);
    // The record written with `revoke.requested`, before the inline revocation moves the case on.
    const written: { nextAt?: string; at: string }[] = [];
    const cas = env.store.compareAndSet.bind(env.store);
    env.store.compareAndSet = (grant, expected, events) => {
      const started = events.find((e) => e.type === 'revoke.requested');
      if (started) written.push({ nextAt: grant.retry?.nextAt, at: started.at });
      return cas(grant, expected, events);
    };
    await env.gl.reportViolation(g.id, { detector: 'siem', reason: 'token used from outside' });
    expect(written).toHaveLength(1);
    expect(Date.parse(written[0]!.nextAt!) - Date.parse(written[0]!.at)).toBe(30_000); // the default lease
  });
});
