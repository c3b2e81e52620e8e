// The memory store hands out records and events deeply frozen and shared: every rarely tested path
// of the service must run over it without a TypeError from a write to a frozen object. Also: a host
// reusing frozen records as inputs.
import { createMemoryStore } from '@grantline/store-memory';
import { describe, expect, it } from 'vitest';
import {
  type Grant,
  type GrantlineEventName,
  GRANTLINE_EVENTS,
  type PolicyInput,
  auditStore,
  createGrantline,
  createJoseSigner,
  createJwks,
  createMemoryCheckpointSink,
  generateSigningKey,
  isGrantlineError,
  verifyCheckpoint,
  verifyEvidence,
} from '../src/index.js';
import { alice, fx, holdIssue, olga, sam } from './fx-fixture.js';
import { manualClock } from './helpers.js';

const isDeepFrozen = (v: unknown): boolean =>
  v === null ||
  typeof v !== 'object' ||
  (Object.isFrozen(v) && Object.values(v as object).every(isDeepFrozen));

const policy: PolicyInput = {
  id: 'p',
  version: '1',
  owner: 'gov',
  rules: [
    {
      id: 'fx',
      risk: 'medium',
      match: { systems: ['fx'] },
      operator: 'ops',
      maxDurationSeconds: 3600,
      approvals: { count: 1, roles: ['owner'] },
      extension: { requiresApproval: true, maxExtensions: 3 },
      constraints: { sourceCidrs: ['10.0.0.0/8'], actions: ['read:*'] },
    },
  ],
  breakGlass: {
    allowedRoles: ['oncall'],
    maxDurationSeconds: 1800,
    reviewWithinSeconds: 3600,
    reviewerRoles: ['security'],
    operator: 'ops',
  },
};

/** The fx executor, reading every part of every context it is handed (which must be readable). */
const readingFx = () => fx((ctx) => JSON.stringify(ctx));

async function env(opts: { tickets?: Map<string, boolean>; issuingTimeoutMs?: number } = {}) {
  const clock = manualClock();
  const store = createMemoryStore();
  const f = readingFx();
  const key = await generateSigningKey();
  const signer = await createJoseSigner({ privateJwk: key.privateJwk });
  const sink = createMemoryCheckpointSink();
  const errors: string[] = [];
  const logger = {
    debug() {},
    info() {},
    warn() {},
    error(msg: string, data?: Record<string, unknown>) {
      errors.push(`${msg} ${JSON.stringify(data)}`);
    },
  };
  const gl = createGrantline({
    store,
    policy,
    executors: [f.exec],
    clock,
    logger,
    signer,
    checkpoints: { sink },
    random: () => 0.5,
    retry: { baseMs: 10, maxMs: 20, maxAttempts: 2 },
    ...(opts.issuingTimeoutMs ? { issuingTimeoutMs: opts.issuingTimeoutMs, executorTimeoutMs: 1_000 } : {}),
    ...(opts.tickets ? { tickets: { isOpen: async (t: string) => opts.tickets!.get(t) ?? true } } : {}),
  });
  // Listeners that read everything (a listener's TypeError would only be logged: collect them).
  for (const ev of GRANTLINE_EVENTS as readonly GrantlineEventName[])
    gl.on(ev, (p) => {
      JSON.stringify(p);
      expect(isDeepFrozen(p.grant)).toBe(true);
    });
  const request = (over: Record<string, unknown> = {}) =>
    gl.request({
      requester: alice,
      subject: alice,
      justification: { reason: 'fix', ticket: 'T-1' },
      targets: [
        { id: 'a', system: 'fx', resource: 'r://a', permissions: ['read:x'] },
        { id: 'b', system: 'fx', resource: 'r://b', params: { mode: 'm' } },
      ],
      durationSeconds: 1200,
      ...over,
    });
  const issued = async (over: Record<string, unknown> = {}) => {
    const g = await request(over);
    await gl.approve(g.id, { approver: olga });
    return gl.issue(g.id);
  };
  return { clock, store, f, gl, request, issued, sink, signer, errors };
}

const noTypeErrors = (errors: string[]) =>
  expect(
    errors.filter((e) => /TypeError|read only|not extensible|frozen|listener|sweep step failed/i.test(e)),
  ).toEqual([]);

describe('frozen memory store: rarely tested paths', () => {
  it('records handed out are deeply frozen (precondition of this review)', async () => {
    const e = await env();
    const { grant } = await e.issued();
    expect(isDeepFrozen(grant)).toBe(true);
    expect(isDeepFrozen(await e.gl.get(grant.id))).toBe(true);
    expect(() => {
      (grant.targets as Grant['targets']).push(grant.targets[0]!);
    }).toThrow(TypeError);
  });

  it('extend (approvals, renew), recordUsage with a violation, report, evidence, checkpoint, auditStore', async () => {
    const e = await env();
    const { grant } = await e.issued();
    const ext = await e.gl.extend(grant.id, {
      actor: alice,
      seconds: 600,
      reason: 'more',
      approvals: [{ approver: olga }],
    });
    expect(ext.grant.window.extensions).toBe(1);
    expect(ext.credentials.a?.s).toBe('renewed-0123456789');
    const again = await e.gl.extend(grant.id, {
      actor: alice,
      seconds: 60,
      reason: 'more',
      approvals: [{ approver: ext.grant.approvals[0]!.approver }], // a frozen principal as input
    });
    expect(again.grant.window.extensions).toBe(2);
    await e.gl.recordUsage(grant.id, {
      sourceIp: '10.1.1.1',
      action: 'read:x',
      outcome: 'allowed',
      source: 't',
    });
    const v = await e.gl.recordUsage(grant.id, {
      sourceIp: '192.168.1.1',
      action: 'write:x',
      outcome: 'allowed',
      source: 't',
    });
    expect(v.state).toBe('verified');
    expect(v.revocation?.trigger).toBe('violation');
    const rep = await e.gl.report({ from: new Date(0), to: new Date('2100-01-01') });
    expect(rep.findings.length).toBeGreaterThan(0);
    const bundle = await e.gl.evidence(grant.id);
    const ver = await verifyEvidence(bundle, { keys: createJwks(e.signer) });
    // Extension approvals are checked as their own quorum, not counted as the case's approvals.
    expect(ver.problems.filter((p) => p.severity === 'error').map((p) => p.code)).toEqual([]);
    const cp = (await e.gl.checkpoint())!;
    expect(Object.isFrozen(cp.heads)).toBe(true);
    const cp2 = (await e.sink.latest())!;
    expect((await verifyCheckpoint(cp2, createJwks(e.signer))).valid).toBe(true);
    const audit = await auditStore(e.store, { checkpoint: cp2, keys: createJwks(e.signer) });
    expect(audit.problems).toEqual([]);
    // A second checkpoint after more changes (shared heads), audited again.
    const { grant: g2 } = await e.issued();
    await e.gl.revoke(g2.id, { actor: alice, reason: 'done' });
    await e.gl.checkpoint();
    expect(
      (await auditStore(e.store, { checkpoint: (await e.sink.latest())!, keys: createJwks(e.signer) })).valid,
    ).toBe(true);
    noTypeErrors(e.errors);
  });

  it('break-glass: review rejected revokes; overdue review raised by the sweeper', async () => {
    const e = await env();
    /** Alice's break-glass on target a. */
    const breakGlass = (reason: string, durationSeconds = 600) =>
      e.gl.breakGlass({
        requester: alice,
        subject: alice,
        justification: { reason },
        targets: [{ id: 'a', system: 'fx', resource: 'r://a' }],
        durationSeconds,
      });
    const bg = await breakGlass('outage');
    await e.gl.issue(bg.id);
    const reviewed = await e.gl.review(bg.id, { reviewer: sam, outcome: 'rejected', notes: 'no' });
    expect(reviewed.state).toBe('verified');
    expect(reviewed.revocation?.trigger).toBe('review');
    const bg2 = await breakGlass('outage 2');
    await e.gl.issue(bg2.id);
    e.clock.advance(3_700_000);
    const r = await e.gl.sweep();
    expect(r.errors).toBe(0);
    expect(r.overdueReviews).toBe(1);
    const after = await e.gl.get(bg2.id);
    expect(after.breakGlass?.overdueRaisedAt).toBeDefined();
    expect(after.state).toBe('verified');
    // An overdue review blocks the actor's next break-glass.
    await expect(breakGlass('x', 60)).rejects.toMatchObject({ code: 'ERR_BREAK_GLASS_REFUSED' });
    const late = await e.gl.review(bg2.id, { reviewer: sam, outcome: 'accepted' });
    expect(late.breakGlass?.review?.outcome).toBe('accepted');
    noTypeErrors(e.errors);
  });

  it('ticketClosed and pollTickets complete issued cases', async () => {
    const tickets = new Map<string, boolean>();
    const e = await env({ tickets });
    const { grant: a } = await e.issued({ justification: { reason: 'x', ticket: 'T-1' } });
    const { grant: b } = await e.issued({ justification: { reason: 'y', ticket: 'T-2' } });
    const closed = await e.gl.ticketClosed({ ticket: 'T-1' });
    expect(closed.map((g) => [g.id, g.state])).toEqual([[a.id, 'verified']]);
    tickets.set('T-2', false);
    const polled = await e.gl.pollTickets();
    expect(polled.map((g) => [g.id, g.state])).toEqual([[b.id, 'verified']]);
    noTypeErrors(e.errors);
  });

  it('reportViolation, and revocation / verification failures with retries (per-case and grouped sweeper)', async () => {
    const e = await env();
    const { grant } = await e.issued();
    e.f.behaviour.revokeFailures = 3;
    const r = await e.gl.reportViolation(grant.id, { detector: 'siem', reason: 'odd' });
    expect(r.state).toBe('revoking');
    e.clock.advance(60_000);
    e.f.behaviour.verifyPresent = 3; // verification finds it, exhausts, re-revokes
    let s = await e.gl.sweep();
    expect(s.errors).toBe(0);
    for (let i = 0; i < 6; i++) {
      e.clock.advance(60_000);
      s = await e.gl.sweep();
      expect(s.errors).toBe(0);
    }
    expect((await e.gl.get(grant.id)).state).toBe('verified');
    // Grouped path: many cases expire at once, revocation fails once for some.
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await e.issued()).grant.id);
    e.clock.advance(3_600_000);
    e.f.behaviour.revokeFailures = 2;
    e.f.behaviour.verifyPresent = 1;
    for (let i = 0; i < 8; i++) {
      s = await e.gl.sweep();
      expect(s.errors).toBe(0);
      e.clock.advance(60_000);
    }
    for (const id of ids) expect((await e.gl.get(id)).state).toBe('verified');
    noTypeErrors(e.errors);
  });

  it('issue failure rolls back the issued targets and ends failed', async () => {
    const e = await env();
    const g = await e.request();
    await e.gl.approve(g.id, { approver: olga });
    e.f.behaviour.failIssue.add('b');
    const err = await e.gl.issue(g.id).catch((x: unknown) => x);
    expect(isGrantlineError(err) && err.code).toBe('ERR_ISSUANCE_FAILED');
    const after = await e.gl.get(g.id);
    expect(after.state).toBe('failed');
    expect(after.targets[0]!.verification?.result).toBe('absent');
    noTypeErrors(e.errors);
  });

  it('late issuance after a sweeper rollback: removed, or kept pending on a failed case and retried', async () => {
    for (const failRemoval of [false, true]) {
      const e = await env({ issuingTimeoutMs: 10_000 });
      const g = await e.request();
      await e.gl.approve(g.id, { approver: olga });
      const held = await holdIssue(e.gl, e.f.behaviour, g.id);
      e.clock.advance(11_000);
      const s = await e.gl.sweep(); // rolls back the stale issuing case
      expect(s.errors).toBe(0);
      expect((await e.gl.get(g.id)).state).toBe('failed');
      if (failRemoval) e.f.behaviour.revokeFailures = 2;
      held.release();
      const err = await held.issuing;
      expect(isGrantlineError(err) && err.code).toBe('ERR_ISSUANCE_FAILED');
      const after = await e.gl.get(g.id);
      expect(after.state).toBe('failed');
      if (failRemoval) {
        expect(after.revocation?.pendingLate?.length).toBeGreaterThan(0);
        for (let i = 0; i < 4; i++) {
          e.clock.advance(60_000);
          expect((await e.gl.sweep()).errors).toBe(0);
        }
        const done = await e.gl.get(g.id);
        expect(done.revocation?.pendingLate).toBeUndefined();
      }
      noTypeErrors(e.errors);
    }
  });

  it('a host can pass parts of frozen records back in as inputs', async () => {
    const e = await env();
    const { grant } = await e.issued();
    const again = await e.gl.request({
      requester: grant.requester,
      subject: grant.subject,
      justification: grant.justification,
      targets: grant.targets.map(({ id, system, resource, permissions, params }) => ({
        id,
        system,
        resource,
        ...(permissions ? { permissions } : {}),
        ...(params ? { params } : {}),
      })),
      durationSeconds: grant.window.durationSeconds,
      idempotencyKey: 'k-1',
    });
    const replay = await e.gl.request({
      requester: again.requester,
      subject: again.subject,
      justification: again.justification,
      targets: [
        { id: 'a', system: 'fx', resource: 'r://a', permissions: ['read:x'], params: { mode: 'ok' } },
        { id: 'b', system: 'fx', resource: 'r://b', params: { mode: 'm' } },
      ],
      durationSeconds: grant.window.durationSeconds,
      idempotencyKey: 'k-1',
    });
    expect(replay.id).toBe(again.id);
    await e.gl.approve(again.id, { approver: grant.approvals[0]!.approver });
    const out = await e.gl.issue(again.id, { actor: again.subject });
    expect(out.grant.state).toBe('issued');
    await e.gl.complete(again.id, { actor: out.grant.requester, reason: 'done' });
    noTypeErrors(e.errors);
  });
});
