import { createMemoryStore } from '@grantline/store-memory';
import { describe, expect, it } from 'vitest';
import { type PolicyInput, createGrantline, createTokenAuthority, isGrantlineError } from '../src/index.js';
import {
  alice,
  anyRulePolicy,
  ciJob,
  fakeSystem,
  manualClock,
  olga,
  oscar,
  paymentsRequest,
  policy,
  recordingLogger,
  sam,
} from './helpers.js';

const withExtension: PolicyInput = {
  ...policy,
  rules: policy.rules.map((r) =>
    r.id === 'payments-write' ? { ...r, extension: { requiresApproval: true, maxExtensions: 2 } } : r,
  ),
};

async function env(tickets?: { isOpen(t: string): Promise<boolean> }) {
  const clock = manualClock();
  const store = createMemoryStore();
  const tokens = await createTokenAuthority({ issuer: 'x', clock });
  const gl = createGrantline({
    store,
    policy: withExtension,
    executors: [tokens.executor],
    clock,
    ...(tickets ? { tickets } : {}),
  });
  const issue = async (over = {}) => {
    const g = await gl.request(paymentsRequest(over));
    await gl.approve(g.id, { approver: sam });
    await gl.approve(g.id, { approver: olga });
    return gl.issue(g.id);
  };
  return { clock, store, tokens, gl, issue };
}

async function reasons(p: Promise<unknown>): Promise<string[]> {
  try {
    await p;
  } catch (err) {
    if (!isGrantlineError(err)) throw err;
    return ((err.details.reasons as { code: string }[]) ?? []).map((r) => `${err.code}:${r.code}`);
  }
  throw new Error('expected a refusal');
}

describe('extensions', () => {
  it('extend within the cap with a fresh dual-control approval; renewed token works, old and new die together', async () => {
    const e = await env();
    const { grant, credentials } = await e.issue({ durationSeconds: 1200 });
    const approvals = [{ approver: sam }, { approver: olga }];
    const ext = await e.gl.extend(grant.id, {
      actor: ciJob,
      seconds: 1200,
      reason: 'migration slower than planned',
      approvals,
    });
    expect(ext.grant.window.expiresAt).toBe(
      new Date(Date.parse(grant.window.expiresAt!) + 1_200_000).toISOString(),
    );
    expect(ext.grant.window.extensions).toBe(1);
    expect(ext.grant.approvals).toHaveLength(2); // the case's own approvals are unchanged
    const newToken = ext.credentials.payments!.token!;
    e.clock.advance(1_300_000); // past the original window, inside the extension
    await expect(
      e.tokens.verifier.verify(credentials.payments!.token!, { audience: 'api://payments' }),
    ).rejects.toMatchObject({
      details: { reason: 'expired' },
    });
    expect((await e.tokens.verifier.verify(newToken, { audience: 'api://payments' })).caseId).toBe(grant.id);
    const h = await e.gl.history(grant.id);
    const extended = h.find((x) => x.type === 'extended')!;
    expect(extended.data).toMatchObject({ reason: 'migration slower than planned' });
    expect((extended.data.approvals as { role: string }[]).map((a) => a.role)).toEqual([
      'security-officer',
      'service-owner',
    ]);
    await e.gl.revoke(grant.id, { actor: sam, reason: 'done' });
    await expect(e.tokens.verifier.verify(newToken, { audience: 'api://payments' })).rejects.toMatchObject({
      details: { reason: 'revoked' },
    });
  });

  it('refuses extensions past maxDuration from first issuance, beyond the limit, without quorum or by the wrong people', async () => {
    const e = await env();
    const { grant } = await e.issue({ durationSeconds: 1800 });
    const ok = [{ approver: sam }, { approver: olga }];
    expect(
      await reasons(e.gl.extend(grant.id, { actor: ciJob, seconds: 1801, reason: 'x', approvals: ok })),
    ).toEqual(['ERR_POLICY_DENIED:EXTENSION_PAST_MAX']);
    expect(
      await reasons(
        e.gl.extend(grant.id, { actor: ciJob, seconds: 60, reason: 'x', approvals: [{ approver: sam }] }),
      ),
    ).toEqual(['ERR_APPROVAL_REFUSED:QUORUM_NOT_MET']);
    expect(
      await reasons(
        e.gl.extend(grant.id, {
          actor: ciJob,
          seconds: 60,
          reason: 'x',
          approvals: [{ approver: oscar }, { approver: olga }],
        }),
      ),
    ).toContain('ERR_APPROVAL_REFUSED:OPERATOR_TEAM_APPROVAL');
    const selfish = { ...alice, roles: ['security-officer'] };
    expect(
      await reasons(
        e.gl.extend(grant.id, {
          actor: ciJob,
          seconds: 60,
          reason: 'x',
          approvals: [{ approver: selfish }, { approver: olga }],
        }),
      ),
    ).toContain('ERR_APPROVAL_REFUSED:SELF_APPROVAL_REQUESTER');
    expect(
      await reasons(e.gl.extend(grant.id, { actor: sam, seconds: 60, reason: 'x', approvals: ok })),
    ).toEqual(['ERR_APPROVAL_REFUSED:NOT_A_PARTY']);
    await e.gl.extend(grant.id, { actor: ciJob, seconds: 600, reason: 'one', approvals: ok });
    await e.gl.extend(grant.id, { actor: ciJob, seconds: 600, reason: 'two', approvals: ok });
    expect(
      await reasons(e.gl.extend(grant.id, { actor: ciJob, seconds: 60, reason: 'three', approvals: ok })),
    ).toEqual(['ERR_POLICY_DENIED:EXTENSION_LIMIT']);
    const g = await e.gl.get(grant.id);
    expect(g.window.extensions).toBe(2);
    expect((await e.gl.history(grant.id)).filter((x) => x.type === 'extended')).toHaveLength(2);
  });

  it('a rule without an extension clause allows none', async () => {
    const e = await env();
    const g = await e.gl.request({
      requester: alice,
      subject: ciJob,
      justification: { reason: 'x' },
      targets: [{ id: 'o', system: 'token', resource: 'api://orders' }],
      durationSeconds: 600,
    });
    await e.gl.approve(g.id, { approver: olga });
    await e.gl.issue(g.id);
    expect(await reasons(e.gl.extend(g.id, { actor: ciJob, seconds: 60, reason: 'x' }))).toEqual([
      'ERR_POLICY_DENIED:EXTENSION_NOT_ALLOWED',
    ]);
  });

  it('an issued case whose window has ended is not extended back to life, and nothing is written', async () => {
    const e = await env();
    const { grant, credentials } = await e.issue({ durationSeconds: 600 });
    e.clock.advance(600_000); // the window has just ended; the sweeper has not revoked it yet
    const before = await e.gl.history(grant.id);
    const out = e.gl.extend(grant.id, {
      actor: ciJob,
      seconds: 600,
      reason: 'forgot to extend',
      approvals: [{ approver: sam }, { approver: olga }],
    });
    await expect(out).rejects.toMatchObject({
      code: 'ERR_INVALID_TRANSITION',
      details: { caseId: grant.id, command: 'extend', expiresAt: grant.window.expiresAt },
    });
    expect((await e.gl.get(grant.id)).version).toBe(grant.version);
    expect(await e.gl.history(grant.id)).toEqual(before);
    await expect(
      e.tokens.verifier.verify(credentials.payments!.token!, { audience: 'api://payments' }),
    ).rejects.toMatchObject({
      details: { reason: 'expired' },
    });
  });

  it('a renewal that fails is a typed error without the secrets renewed for other targets, and records nothing', async () => {
    const clock = manualClock();
    const SECRET = 'renewed-hunter2-super-secret';
    const leaky = fakeSystem('leaky', {
      secret: { password: 'first-leaky-secret' },
      async renew(ctx) {
        return { expiresAt: ctx.expiresAt, secret: { password: SECRET } };
      },
    });
    // The second system's backend quotes the first one's new secret in its error (plain Error: untyped).
    const failing = fakeSystem('failing', {
      secret: { password: 'first-failing-secret' },
      async renew() {
        throw new Error(`backend said: session for password ${SECRET} could not be extended`);
      },
    });
    const logger = recordingLogger();
    const store = createMemoryStore();
    const gl = createGrantline({
      store,
      clock,
      logger,
      executors: [leaky, failing],
      policy: anyRulePolicy({ extension: { requiresApproval: false, maxExtensions: 1 } }),
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
    const { grant } = await gl.issue(g.id);
    const err = await gl.extend(g.id, { actor: ciJob, seconds: 300, reason: 'more' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isGrantlineError(err)).toBe(true);
    if (!isGrantlineError(err)) return;
    expect(err).toMatchObject({ code: 'ERR_EXECUTOR', retryable: true, details: { targetId: 'b' } });
    expect(err.message).toContain('[redacted]');
    expect(JSON.stringify([err.message, err.details, err.toJSON(), err.cause ?? null])).not.toContain(SECRET);
    expect(logger.lines.join('\n')).not.toContain(SECRET);
    expect(store.dump()).not.toContain(SECRET);
    expect((await gl.get(g.id)).version).toBe(grant.version); // nothing recorded
  });

  it('the extension cap runs from when the credentials were issued, not from when issuance was recorded', async () => {
    const clock = manualClock();
    // An executor that takes 10 minutes to issue (an asynchronous assignment being polled, say).
    const slow = fakeSystem('slow', {
      async issue(ctx) {
        const expiresAt = new Date(clock.now().getTime() + 3_600_000);
        clock.advance(600_000);
        return { ref: { id: ctx.target.id }, expiresAt };
      },
      async renew(ctx) {
        return { expiresAt: ctx.expiresAt };
      },
    });
    const gl = createGrantline({
      store: createMemoryStore(),
      clock,
      executors: [slow],
      executorTimeoutMs: 10_000,
      issuingTimeoutMs: 20_000,
      policy: anyRulePolicy({ extension: { requiresApproval: false, maxExtensions: 3 } }),
    });
    const g = await gl.request({
      requester: alice,
      subject: ciJob,
      justification: { reason: 'slow system' },
      targets: [{ id: 'a', system: 'slow', resource: 'r' }],
      durationSeconds: 3000,
    });
    await gl.approve(g.id, { approver: olga });
    const { grant } = await gl.issue(g.id);
    const issuedAt = Date.parse(grant.targets[0]!.issuance!.issuedAt);
    expect(Date.parse(grant.window.hardLimitAt!) - issuedAt).toBe(3_600_000);
    // 3000 s issued + 600 s would be within the cap measured from the recorded step (10 min later).
    expect(await reasons(gl.extend(g.id, { actor: ciJob, seconds: 1200, reason: 'more' }))).toEqual([
      'ERR_POLICY_DENIED:EXTENSION_PAST_MAX',
    ]);
    const ok = await gl.extend(g.id, { actor: ciJob, seconds: 600, reason: 'more' });
    expect(Date.parse(ok.grant.window.expiresAt!) - issuedAt).toBeLessThanOrEqual(3_600_000);
  });

  it("a pre-approved template's extension that requires approval needs one from the rule's approver roles", async () => {
    const clock = manualClock();
    const tokens = await createTokenAuthority({ issuer: 'x', clock });
    const gl = createGrantline({
      store: createMemoryStore(),
      clock,
      executors: [tokens.executor],
      policy: {
        ...policy,
        rules: [
          {
            id: 'tpl',
            risk: 'low',
            template: 'tpl',
            match: { systems: ['token'], resources: ['api://m'], permissions: ['m:read'] },
            operator: 'ops',
            maxDurationSeconds: 3600,
            approvals: { count: 1, roles: ['service-owner'] },
            extension: { requiresApproval: true, maxExtensions: 3 },
          },
        ],
      },
    });
    const g = await gl.request({
      requester: ciJob,
      subject: ciJob,
      justification: { reason: 'nightly report' },
      targets: [{ id: 'm', system: 'token', resource: 'api://m', permissions: ['m:read'] }],
      durationSeconds: 600,
      template: 'tpl',
    });
    expect(g.policy.approvals.count).toBe(0); // pre-approved: issued without an approval
    const { grant } = await gl.issue(g.id);
    expect(await reasons(gl.extend(g.id, { actor: ciJob, seconds: 600, reason: 'more' }))).toEqual([
      'ERR_APPROVAL_REFUSED:QUORUM_NOT_MET',
    ]);
    expect((await gl.get(g.id)).version).toBe(grant.version);
    const ext = await gl.extend(g.id, {
      actor: ciJob,
      seconds: 600,
      reason: 'more',
      approvals: [{ approver: olga }],
    });
    expect(ext.grant.window.extensions).toBe(1);
  });

  it('a window that ends while the targets are renewed is not extended back to life', async () => {
    const e = await env();
    const renew = e.tokens.executor.renew!;
    e.tokens.executor.renew = async (ctx) => {
      const r = await renew(ctx);
      e.clock.advance(120_000); // a slow backend: the window ends during the renewal
      return r;
    };
    const { grant } = await e.issue({ durationSeconds: 600 });
    e.clock.advance(540_000); // 60 s left when the extension starts
    const out = e.gl.extend(grant.id, {
      actor: ciJob,
      seconds: 600,
      reason: 'more',
      approvals: [{ approver: sam }, { approver: olga }],
    });
    await expect(out).rejects.toMatchObject({
      code: 'ERR_INVALID_TRANSITION',
      details: { command: 'extend' },
    });
    const after = await e.gl.get(grant.id);
    expect([after.window.extensions, after.window.expiresAt, after.version]).toEqual([
      0,
      grant.window.expiresAt,
      grant.version,
    ]);
  });

  it('after extension the sweeper revokes at the new expiry, not the old one', async () => {
    const e = await env();
    const { grant } = await e.issue({ durationSeconds: 600 });
    await e.gl.extend(grant.id, {
      actor: ciJob,
      seconds: 600,
      reason: 'x',
      approvals: [{ approver: sam }, { approver: olga }],
    });
    e.clock.advance(601_000);
    await e.gl.sweep();
    expect((await e.gl.get(grant.id)).state).toBe('issued');
    e.clock.advance(600_000);
    await e.gl.sweep();
    expect((await e.gl.get(grant.id)).state).toBe('verified');
  });
});

describe('tickets', () => {
  it('a closed ticket (pushed) completes every issued case tied to it', async () => {
    const e = await env();
    const a = await e.issue();
    const b = await e.issue({
      justification: { reason: 'y', ticket: 'OPS-2', workload: 'ci:deploy-payments' },
    });
    const done = await e.gl.ticketClosed({ ticket: 'OPS-4711' });
    expect(done.map((g) => g.id)).toEqual([a.grant.id]);
    const g = await e.gl.get(a.grant.id);
    expect(g.state).toBe('verified');
    expect(g.revocation).toMatchObject({ trigger: 'completion', reason: 'ticket OPS-4711 closed' });
    expect((await e.gl.get(b.grant.id)).state).toBe('issued');
  });

  it('polling asks once per ticket and never revokes when the lookup fails', async () => {
    const asked: string[] = [];
    let fail = true;
    const e = await env({
      async isOpen(t) {
        asked.push(t);
        if (fail) throw new Error('ticketing system down');
        return t !== 'OPS-4711';
      },
    });
    const a = await e.issue();
    const a2 = await e.issue();
    const b = await e.issue({
      justification: { reason: 'y', ticket: 'OPS-2', workload: 'ci:deploy-payments' },
    });
    expect(await e.gl.pollTickets()).toEqual([]);
    expect((await e.gl.get(a.grant.id)).state).toBe('issued');
    fail = false;
    asked.length = 0;
    const done = await e.gl.pollTickets();
    expect(asked.sort()).toEqual(['OPS-2', 'OPS-4711']);
    expect(done.map((g) => g.id).sort()).toEqual([a.grant.id, a2.grant.id].sort());
    expect((await e.gl.get(b.grant.id)).state).toBe('issued');
  });
});
