import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type AuditEvent,
  type Grant,
  TERMINAL_STATES,
  TRANSITIONS,
  isGrantlineError,
  quorumMet,
  verifyChain,
} from '../src/index.js';
import { alice, ciJob, olga, oscar, paymentsRequest, rita, sam, setup } from './helpers.js';

const people = [
  alice,
  sam,
  olga,
  oscar,
  rita,
  { id: 'sam2', kind: 'human' as const, roles: ['security-officer'] },
];

type Step =
  | { op: 'approve'; who: number }
  | { op: 'deny'; who: number }
  | { op: 'cancel'; who: number }
  | { op: 'issue' }
  | { op: 'use'; ip: string; action: string }
  | { op: 'complete' }
  | { op: 'revoke'; who: number }
  | { op: 'review'; who: number; outcome: 'accepted' | 'rejected' }
  | { op: 'tick'; ms: number }
  | { op: 'sweep' };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ op: fc.constant('approve' as const), who: fc.nat(people.length - 1) }),
  fc.record({ op: fc.constant('deny' as const), who: fc.nat(people.length - 1) }),
  fc.record({ op: fc.constant('cancel' as const), who: fc.nat(people.length - 1) }),
  fc.constant({ op: 'issue' as const }),
  fc.record({
    op: fc.constant('use' as const),
    ip: fc.constantFrom('10.0.0.1', '10.200.3.4', '192.0.2.1'),
    action: fc.constantFrom('payments:read', 'payments:write', 'admin:root'),
  }),
  fc.constant({ op: 'complete' as const }),
  fc.record({ op: fc.constant('revoke' as const), who: fc.nat(people.length - 1) }),
  fc.record({
    op: fc.constant('review' as const),
    who: fc.nat(people.length - 1),
    outcome: fc.constantFrom('accepted' as const, 'rejected' as const),
  }),
  fc.record({ op: fc.constant('tick' as const), ms: fc.integer({ min: 1_000, max: 3_600_000 }) }),
  fc.constant({ op: 'sweep' as const }),
);

const LIFECYCLE_EVENTS = new Set([
  'approved',
  'denied',
  'cancelled',
  'expired',
  'issue.started',
  'issued',
  'revoke.requested',
  'revoked',
  'verified',
  'failed',
]);

function checkInvariants(g: Grant, history: AuditEvent[]): void {
  // The audit chain always verifies and the record points at its head.
  const chain = verifyChain(g.id, history);
  expect(chain.problems).toEqual([]);
  expect(g.audit).toEqual({ seq: history.length, head: chain.head });
  // Nothing is issued without the approvals the policy demanded, unless break-glass or a template.
  const started = history.findIndex((e) => e.type === 'issue.started');
  if (started >= 0 && !g.breakGlass && !g.policy.template) {
    const approvalsBefore = history.slice(0, started).filter((e) => e.type === 'approval');
    const asApprovals = approvalsBefore.map((e) => ({
      approver: e.data.approver as Grant['approvals'][number]['approver'],
      role: String(e.data.role),
      at: e.at,
    }));
    expect(quorumMet(g.policy, asApprovals)).toBe(true);
    for (const a of asApprovals) {
      expect(a.approver.id).not.toBe(g.requester.id);
      expect(a.approver.id).not.toBe(g.subject.id);
      expect(a.approver.teams ?? []).not.toContain(g.policy.operator);
    }
  }
  // No transition leaves a terminal state.
  const terminalAt = history.findIndex((e) => (TERMINAL_STATES as readonly string[]).includes(e.type));
  if (terminalAt >= 0) {
    const after = history.slice(terminalAt + 1).filter((e) => LIFECYCLE_EVENTS.has(e.type));
    expect(after).toEqual([]);
    expect(g.state).toBe(history[terminalAt]!.type);
  }
  // Revoke and verify are idempotent: at most one confirmation per target.
  for (const t of g.targets) {
    expect(
      history.filter((e) => e.type === 'target.revoked' && e.data.targetId === t.id).length,
    ).toBeLessThanOrEqual(1);
    expect(
      history.filter((e) => e.type === 'target.verified' && e.data.targetId === t.id).length,
    ).toBeLessThanOrEqual(1);
  }
  // Every state the record shows is reachable through the table.
  expect(
    Object.values(TRANSITIONS).some((froms) => Object.values(froms).some((tos) => tos?.includes(g.state))) ||
      g.state === 'requested',
  ).toBe(true);
}

describe('lifecycle invariants over random command sequences (fast-check)', () => {
  it('hold for 1,000 sequences, and every issued target ends revoked and verified', async () => {
    let issuedRuns = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.boolean(),
        fc.array(step, { minLength: 1, maxLength: 14 }),
        async (breakGlass, steps) => {
          const env = await setup();
          const { gl, clock } = env;
          const g0 = breakGlass
            ? await gl.breakGlass({
                requester: rita,
                subject: ciJob,
                justification: { reason: 'incident' },
                targets: [{ id: 'p', system: 'token', resource: 'api://payments' }],
                durationSeconds: 900,
              })
            : await gl.request(paymentsRequest());
          const id = g0.id;
          for (const s of steps) {
            try {
              switch (s.op) {
                case 'approve':
                  await gl.approve(id, { approver: people[s.who]! });
                  break;
                case 'deny':
                  await gl.deny(id, { actor: people[s.who]!, reason: 'no' });
                  break;
                case 'cancel':
                  await gl.cancel(id, { actor: people[s.who]!, reason: 'no' });
                  break;
                case 'issue':
                  await gl.issue(id);
                  break;
                case 'use':
                  await gl.recordUsage(id, { sourceIp: s.ip, action: s.action });
                  break;
                case 'complete':
                  await gl.complete(id, { actor: ciJob, reason: 'done' });
                  break;
                case 'revoke':
                  await gl.revoke(id, { actor: people[s.who]!, reason: 'manual' });
                  break;
                case 'review':
                  await gl.review(id, { reviewer: people[s.who]!, outcome: s.outcome });
                  break;
                case 'tick':
                  clock.advance(s.ms);
                  break;
                case 'sweep':
                  await gl.sweep();
                  break;
              }
            } catch (err) {
              // Refusals are expected; anything that is not a typed Grantline error is a bug.
              if (!isGrantlineError(err)) throw err;
              expect(err.code).toMatch(/^ERR_/);
            }
            checkInvariants(await gl.get(id), await gl.history(id));
          }
          // Drain: far past every window and review deadline, the sweeper finishes everything.
          clock.advance(7 * 24 * 3600_000);
          for (let i = 0; i < 3; i++) await gl.sweep();
          const final = await gl.get(id);
          const history = await gl.history(id);
          checkInvariants(final, history);
          expect(TERMINAL_STATES).toContain(final.state);
          if (final.targets.some((t) => t.issuance)) {
            issuedRuns++;
            expect(['verified', 'failed']).toContain(final.state);
            for (const t of final.targets) {
              expect(t.revocation?.confirmedAt).toBeDefined();
              expect(t.verification?.result).toBe('absent');
            }
          }
        },
      ),
      { numRuns: 1000 },
    );
    expect(issuedRuns).toBeGreaterThan(50);
  }, 240_000);
});
