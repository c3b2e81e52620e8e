import assert from 'node:assert/strict';
import { createMemoryStore } from '@grantline/store-memory';
import { describe, expect, it } from 'vitest';
import {
  ErrorCodes,
  GrantlineError,
  type TokenRevocationList,
  buildReport,
  createGrantline,
  createTokenAuthority,
  latencyStats,
  renderReportMarkdown,
} from '../src/index.js';
import { alice, bob, carol, ciJob, manualClock, policy } from './evidence-helpers.js';

const unreachable = (): TokenRevocationList => ({
  async issued() {},
  async add() {
    throw new GrantlineError(ErrorCodes.EXECUTOR, 'revocation list unreachable', { retryable: true });
  },
  async has() {
    return false;
  },
});
/** Accepts revocations but never enforces them: verification must notice the token still works. */
const ineffective = (): TokenRevocationList => ({
  async issued() {},
  async add() {
    return true;
  },
  async has() {
    return false;
  },
});

async function scenario() {
  const clock = manualClock('2026-03-02T08:00:00.000Z');
  const store = createMemoryStore();
  let n = 0;
  const make = async (prefix: string, revocations?: TokenRevocationList, maxAttempts = 8) => {
    const authority = await createTokenAuthority({
      issuer: 'https://grantline.test',
      clock,
      ...(revocations ? { revocations } : {}),
    });
    return createGrantline({
      store,
      policy,
      executors: [authority.executor],
      clock,
      ids: () => `${prefix}-${++n}`,
      retry: { maxAttempts, baseMs: 1000 },
    });
  };
  const ok = await make('ok');
  const failing = await make('fail', unreachable(), 1);
  const pending = await make('pend', unreachable(), 50);
  const blind = await make('blind', ineffective(), 50);

  const issued = async (svc: typeof ok, resource = 'api://prod/payments', duration = 1800) => {
    const g = await svc.request({
      requester: alice,
      subject: ciJob,
      justification: { reason: 'work', ticket: 'OPS-7' },
      targets: [{ id: 'api', system: 'token', resource }],
      durationSeconds: duration,
    });
    clock.advance(60_000);
    await svc.approve(g.id, { approver: bob });
    clock.advance(30_000);
    await svc.approve(g.id, { approver: carol });
    await svc.issue(g.id);
    return g.id;
  };

  // Before the period: a finished case that must not be reported.
  const old = await issued(ok);
  await ok.revoke(old, { actor: alice, reason: 'done' });
  clock.set('2026-03-02T10:00:00.000Z');

  const verified = await issued(ok);
  clock.advance(60_000);
  await ok.revoke(verified, { actor: alice, reason: 'done' });
  // Expires after 60 s; the sweeper only runs 45 s later: a revocation lag of exactly 45 s.
  const swept = await issued(ok, 'api://prod/payments', 60);
  clock.advance(60_000 + 45_000);
  await ok.sweep();
  const sweptState = (await ok.get(swept)).state;
  if (sweptState !== 'verified') throw new Error(`swept case is ${sweptState}`);
  const lingering = await issued(ok, 'api://prod/payments', 600);
  const failed = await issued(failing);
  await failing.revoke(failed, { actor: alice, reason: 'done' });
  const stuck = await issued(pending);
  await pending.revoke(stuck, { actor: alice, reason: 'done' });
  const unverified = await issued(blind);
  await blind.revoke(unverified, { actor: alice, reason: 'done' });
  const violated = await issued(ok);
  await ok.recordUsage(violated, { sourceIp: '203.0.113.9', action: 'keys:read' });
  const glass = await ok.breakGlass({
    requester: alice,
    subject: ciJob,
    justification: { reason: 'outage' },
    targets: [{ id: 'api', system: 'token', resource: 'api://prod/payments' }],
    durationSeconds: 600,
  });
  await ok.issue(glass.id);
  clock.advance(2 * 3600_000);
  // Issued last, within its hour: live access that is not (yet) lingering.
  const open = await issued(ok, 'api://prod/payments', 3600);
  return {
    clock,
    store,
    ok,
    ids: { old, verified, swept, lingering, failed, stuck, unverified, violated, glass: glass.id, open },
  };
}

describe('reports', () => {
  it('finds lingering access, failed and pending revocations, unverified removals and unreviewed break-glass', async () => {
    const s = await scenario();
    const r = await s.ok.report({ from: '2026-03-02T09:00:00.000Z', to: '2026-03-02T13:00:00.000Z' });
    const f = (code: string) => r.findings.find((x) => x.code === code);
    // Open and lingering access: issued within its window is evidence; issued past expiry with no
    // revocation started is a gap. Each case is in exactly one of the two.
    assert.deepEqual(f('LINGERING_ACCESS')?.caseIds.sort(), [s.ids.lingering, s.ids.glass].sort());
    assert.deepEqual(
      (({ kind, severity, count, title }) => ({ kind, severity, count, title }))(f('LINGERING_ACCESS')!),
      {
        kind: 'gap',
        severity: 'high',
        count: 2,
        title: 'Access still live past its expiry, revocation not started',
      },
    );
    assert.deepEqual(f('OPEN_ACCESS')?.caseIds, [s.ids.open]);
    assert.deepEqual((({ kind, severity, count }) => ({ kind, severity, count }))(f('OPEN_ACCESS')!), {
      kind: 'evidence',
      severity: 'info',
      count: 1,
    });
    assert.deepEqual(
      f('OPEN_ACCESS')!.controls.map((c) => c.id),
      ['NHI7', 'Tenet 3'],
    );
    assert.deepEqual(f('REVOCATION_FAILED')?.caseIds, [s.ids.failed]);
    assert.deepEqual(f('REVOCATION_PENDING')?.caseIds, [s.ids.stuck]);
    assert.deepEqual(f('REMOVAL_UNVERIFIED')?.caseIds, [s.ids.unverified]);
    assert.deepEqual(f('BREAKGLASS_REVIEW_OVERDUE')?.caseIds, [s.ids.glass]);
    assert.ok(f('VIOLATION_REVOKED')?.caseIds.includes(s.ids.violated));
    assert.ok(f('REMOVAL_VERIFIED')?.caseIds.includes(s.ids.verified));
    assert.equal(
      f('REMOVAL_VERIFIED')?.caseIds.includes(s.ids.old),
      false,
      'cases outside the period are left out',
    );
    assert.ok(f('UNPROVEN_IDENTITY')!.count >= 7);
    assert.equal(f('LINGERING_ACCESS')!.severity, 'high');
    // Mapped controls.
    const ids = (code: string) => f(code)!.controls.map((c) => c.id);
    assert.ok(
      ids('LINGERING_ACCESS').includes('NHI1') &&
        ids('LINGERING_ACCESS').includes('PR.AA-05') &&
        ids('LINGERING_ACCESS').includes('Tenet 3'),
    );
    assert.ok(ids('UNPROVEN_IDENTITY').includes('NHI4') && ids('UNPROVEN_IDENTITY').includes('PR.AA-04'));
    assert.ok(ids('BREAKGLASS_REVIEW_OVERDUE').includes('NHI10'));
    // Latency: every case was approved 90 s after the request.
    assert.equal(r.latency.approval.p50, 90_000);
    assert.equal(r.latency.approval.p99, 90_000);
    // Revocation lag, from the trigger (manual, violation) or from the end of the window (expiry):
    // 0 ms for the manual revocations and the violation, 45 s for the case the sweeper revoked late;
    // the failed and the pending revocations have no lag yet. Nearest rank over [0, 0, 0, 45 s].
    assert.deepEqual(r.latency.revocation, { count: 4, p50: 0, p99: 45_000, max: 45_000 });
    // Verification lag over the three verified cases [0, 0, 45 s] (the blind target never verifies).
    assert.deepEqual(r.latency.verification, { count: 3, p50: 0, p99: 45_000, max: 45_000 });
    assert.equal(r.cases.breakGlass, 1);
    assert.equal(
      r.cases.byState.verified,
      3,
      'the manually revoked case, the swept case and the violation case (not the one before the period)',
    );
    assert.deepEqual(JSON.parse(JSON.stringify(r)), r, 'plain JSON');
  });

  it('renders Markdown with the findings and the controls', async () => {
    const s = await scenario();
    const md = renderReportMarkdown(
      await s.ok.report({ from: '2026-03-02T09:00:00.000Z', to: '2026-03-02T13:00:00.000Z' }),
    );
    assert.match(md, /^# Grantline access report/);
    assert.match(md, /## Findings that need action/);
    assert.match(md, /Access still live past its expiry, revocation not started \(high, 2\)/);
    assert.match(md, new RegExp(s.ids.failed));
    assert.match(md, /PR\.AA-05/);
    assert.match(md, /\| approval \| \d+ \| 90\.0 s \|/);
    assert.match(md, /\| revocation \| 4 \| 0 ms \| 45\.0 s \| 45\.0 s \|/);
  });

  it('rejects a reversed or malformed period', async () => {
    const store = createMemoryStore();
    await expect(
      buildReport(store, { from: '2026-03-03T00:00:00.000Z', to: '2026-03-02T00:00:00.000Z' }),
    ).rejects.toMatchObject({
      code: 'ERR_VALIDATION',
    });
    await expect(
      buildReport(store, { from: 'yesterday', to: '2026-03-02T00:00:00.000Z' } as never),
    ).rejects.toMatchObject({ code: 'ERR_VALIDATION' });
  });

  it('computes nearest-rank percentiles', () => {
    const values = Array.from({ length: 100 }, (_, i) => i + 1);
    assert.deepEqual(latencyStats(values), { count: 100, p50: 50, p99: 99, max: 100 });
    assert.deepEqual(latencyStats([]), { count: 0, p50: null, p99: null, max: null });
  });
});
