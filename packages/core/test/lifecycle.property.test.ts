import { createMemoryStore } from '@grantline/store-memory';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type AuditEvent,
  type Grant,
  type PolicyInput,
  type PrincipalInput,
  type RequestInput,
  TERMINAL_STATES,
  TRANSITIONS,
  createGrantline,
  createTokenAuthority,
  isGrantlineError,
  verifyChain,
} from '../src/index.js';
import {
  alice,
  ciJob,
  manualClock,
  olga,
  oscar,
  paymentsRequest,
  policy as basePolicy,
  rita,
  sam,
} from './helpers.js';

// The quickstart policy plus a rule with two approvals that need not hold distinct roles, so the
// quorum is exercised with count 2 both with and without distinct roles (and count 1).
const policy: PolicyInput = {
  ...basePolicy,
  rules: [
    ...basePolicy.rules.filter((r) => r.id !== 'standard'),
    {
      id: 'ledger-pair',
      risk: 'medium',
      match: { systems: ['token'], resources: ['api://ledger*'] },
      operator: 'platform-ops',
      maxDurationSeconds: 3600,
      approvals: { count: 2, roles: ['service-owner', 'security-officer'] },
    },
    ...basePolicy.rules.filter((r) => r.id === 'standard'),
  ],
};

async function setup() {
  const clock = manualClock();
  const tokens = await createTokenAuthority({ issuer: 'https://grantline.test', clock });
  const gl = createGrantline({ store: createMemoryStore(), policy, executors: [tokens.executor], clock });
  return { clock, gl };
}

// Requesters and subjects: some hold roles that would qualify them as approvers, so self-approval
// is attempted and must be refused.
const requesters: PrincipalInput[] = [
  alice,
  { id: 'rob', kind: 'human', roles: ['service-owner'], teams: ['payments'] },
  { id: 'quinn', kind: 'human', roles: ['security-officer', 'service-owner'], teams: ['security'] },
];
const subjects: PrincipalInput[] = [
  ciJob,
  { id: 'hank', kind: 'human', roles: ['service-owner', 'security-officer'], teams: ['payments'] },
];
/** Would-be approvers besides the requester and the subject; oscar and opal are in the operator team. */
const others: PrincipalInput[] = [
  oscar,
  { id: 'opal', kind: 'human', roles: ['service-owner'], teams: ['platform-ops'] },
  sam,
  olga,
  { id: 'sam2', kind: 'human', roles: ['security-officer'] },
  { id: 'owen', kind: 'human', roles: ['service-owner'], teams: ['payments'] },
  rita,
  alice,
];
/** Index 0 is the requester and 1 the subject of the run; the operator team is 2 and 3. */
const POOL_SIZE = 2 + others.length;

type TargetSet = 'payments' | 'payments+refunds' | 'orders+inventory' | 'ledger+archive';
const targetSets: Record<TargetSet, RequestInput['targets']> = {
  payments: [
    { id: 'payments', system: 'token', resource: 'api://payments', permissions: ['payments:write'] },
  ],
  'payments+refunds': [
    { id: 'payments', system: 'token', resource: 'api://payments', permissions: ['payments:write'] },
    { id: 'refunds', system: 'token', resource: 'api://payments/refunds' },
  ],
  'orders+inventory': [
    { id: 'orders', system: 'token', resource: 'api://orders' },
    { id: 'inventory', system: 'token', resource: 'api://inventory' },
  ],
  'ledger+archive': [
    { id: 'ledger', system: 'token', resource: 'api://ledger' },
    { id: 'archive', system: 'token', resource: 'api://ledger/archive' },
  ],
};
/** The rule that must govern each target set (all its targets match that one rule), read from the policy definition. */
const governingRule: Record<TargetSet, string> = {
  payments: 'payments-write',
  'payments+refunds': 'payments-write',
  'orders+inventory': 'standard',
  'ledger+archive': 'ledger-pair',
};

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

const who = fc.nat(POOL_SIZE - 1);
const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant('approve' as const), who }) },
  fc.record({ op: fc.constant('deny' as const), who }),
  fc.record({ op: fc.constant('cancel' as const), who }),
  fc.constant({ op: 'issue' as const }),
  fc.record({
    op: fc.constant('use' as const),
    ip: fc.constantFrom('10.0.0.1', '10.200.3.4', '192.0.2.1'),
    action: fc.constantFrom('payments:read', 'payments:write', 'admin:root'),
  }),
  fc.constant({ op: 'complete' as const }),
  fc.record({ op: fc.constant('revoke' as const), who }),
  fc.record({
    op: fc.constant('review' as const),
    who,
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

/** The parties of one generated run, as the test defined them (not as the service recorded them). */
interface Parties {
  requester: PrincipalInput;
  subject: PrincipalInput;
  byId: Map<string, PrincipalInput>;
}

/** Why the test's own reading of DESIGN §4 forbids `p` from approving the case (or null). */
function forbiddenApprover(g: Grant, parties: Parties, p: PrincipalInput): string | null {
  if (p.id === parties.requester.id) return 'SELF_APPROVAL_REQUESTER';
  if (p.id === parties.subject.id) return 'SELF_APPROVAL_SUBJECT';
  if ((p.teams ?? []).includes(g.policy.operator)) return 'OPERATOR_TEAM_APPROVAL';
  if (p.kind !== 'human') return 'APPROVER_NOT_HUMAN';
  return null;
}

/**
 * Independent quorum oracle: counts the approvals that should count, from the policy snapshot and
 * the principals as generated (distinct approvers, qualifying roles the approver really holds, no
 * requester, subject or operator-team member), then applies `count` and `distinctRoles`.
 */
function oracleQuorum(
  g: Grant,
  parties: Parties,
  approvals: { approverId: string; role: string }[],
): boolean {
  const req = g.policy.approvals;
  const counted = new Map<string, string>(); // approver id -> role of their first valid approval
  for (const a of approvals) {
    const p = parties.byId.get(a.approverId);
    if (!p || counted.has(p.id) || forbiddenApprover(g, parties, p) !== null) continue;
    if (!req.roles.includes(a.role) || !(p.roles ?? []).includes(a.role)) continue;
    counted.set(p.id, a.role);
  }
  const n = req.distinctRoles ? new Set(counted.values()).size : counted.size;
  return n >= req.count;
}

function approvalsIn(history: AuditEvent[]): { approverId: string; role: string }[] {
  return history
    .filter((e) => e.type === 'approval')
    .map((e) => ({ approverId: (e.data.approver as { id: string }).id, role: String(e.data.role) }));
}

function checkInvariants(g: Grant, history: AuditEvent[], parties: Parties): void {
  // The audit chain always verifies and the record points at its head.
  const chain = verifyChain(g.id, history);
  expect(chain.problems).toEqual([]);
  expect(g.audit).toEqual({ seq: history.length, head: chain.head });
  // No recorded approval comes from the requester, the subject or the operator team.
  for (const a of approvalsIn(history)) {
    expect(forbiddenApprover(g, parties, parties.byId.get(a.approverId)!)).toBeNull();
  }
  // Nothing is issued without the approvals the policy demanded, unless break-glass or a template.
  const started = history.findIndex((e) => e.type === 'issue.started');
  if (started >= 0 && !g.breakGlass && !g.policy.template) {
    expect(oracleQuorum(g, parties, approvalsIn(history.slice(0, started)))).toBe(true);
  }
  // A case becomes approved exactly when the oracle's quorum is met, and not before.
  const approvedAt = history.findIndex((e) => e.type === 'approved');
  if (!g.breakGlass && !g.policy.template) {
    const upTo = approvedAt >= 0 ? history.slice(0, approvedAt) : history;
    const metBefore = approvalsIn(upTo);
    if (approvedAt >= 0) {
      expect(oracleQuorum(g, parties, metBefore)).toBe(true);
      expect(oracleQuorum(g, parties, metBefore.slice(0, -1))).toBe(false);
    } else if (g.state === 'requested') {
      expect(oracleQuorum(g, parties, metBefore)).toBe(false);
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
    const stats = {
      issued: 0,
      multiTargetIssued: 0,
      selfRefused: 0,
      operatorRefused: 0,
      approvedByQuorum: 0,
    };
    await fc.assert(
      fc.asyncProperty(
        // One run in four is break-glass; the rest exercise the approval path.
        fc.nat(3).map((n) => n === 0),
        fc.nat(requesters.length - 1),
        fc.nat(subjects.length - 1),
        fc.constantFrom(...(Object.keys(targetSets) as TargetSet[])),
        fc.array(step, { minLength: 1, maxLength: 14 }),
        async (breakGlass, r, s0, targetSet, steps) => {
          const env = await setup();
          const { gl, clock } = env;
          const requester = breakGlass ? rita : requesters[r]!;
          const subject = subjects[s0]!;
          const pool = [requester, subject, ...others];
          const parties: Parties = { requester, subject, byId: new Map(pool.map((p) => [p.id, p])) };
          const targets = targetSets[targetSet].map((t) => ({ ...t }));
          const g0 = breakGlass
            ? await gl.breakGlass({
                requester,
                subject,
                justification: { reason: 'incident' },
                targets,
                durationSeconds: 900,
              })
            : await gl.request(paymentsRequest({ requester, subject, targets }));
          const id = g0.id;
          if (!breakGlass) {
            // The snapshot is the policy's governing rule, as defined in the test's policy data.
            const rule = policy.rules.find((x) => x.id === governingRule[targetSet])!;
            expect(g0.policy.ruleId).toBe(rule.id);
            expect(g0.policy.operator).toBe(rule.operator);
            expect(g0.policy.approvals).toEqual({
              count: rule.approvals!.count,
              roles: rule.approvals!.roles,
              distinctRoles: rule.approvals!.distinctRoles ?? false,
            });
          }
          for (const s of steps) {
            const before = await gl.get(id);
            try {
              switch (s.op) {
                case 'approve': {
                  const approver = pool[s.who]!;
                  const forbidden = forbiddenApprover(before, parties, approver);
                  let refused: unknown;
                  try {
                    await gl.approve(id, { approver });
                  } catch (err) {
                    refused = err;
                  }
                  const after = await gl.get(id);
                  if (forbidden !== null) {
                    // Self-approval, approval by the subject or by the operator team: always refused.
                    expect(refused).toBeDefined();
                    expect(after.approvals).toEqual(before.approvals);
                    if (before.state === 'requested' && isGrantlineError(refused)) {
                      expect(refused.code).toBe('ERR_APPROVAL_REFUSED');
                      const codes = (refused.details.reasons as { code: string }[]).map((x) => x.code);
                      expect(codes).toContain(forbidden);
                      if (forbidden.startsWith('SELF_APPROVAL')) stats.selfRefused++;
                      if (forbidden === 'OPERATOR_TEAM_APPROVAL') stats.operatorRefused++;
                    }
                  } else if (refused === undefined && !before.breakGlass) {
                    const met = oracleQuorum(after, parties, approvalsIn(await gl.history(id)));
                    expect(after.state).toBe(met ? 'approved' : 'requested');
                    if (met) stats.approvedByQuorum++;
                  }
                  if (refused !== undefined) throw refused;
                  break;
                }
                case 'deny':
                  await gl.deny(id, { actor: pool[s.who]!, reason: 'no' });
                  break;
                case 'cancel':
                  await gl.cancel(id, { actor: pool[s.who]!, reason: 'no' });
                  break;
                case 'issue':
                  await gl.issue(id);
                  break;
                case 'use':
                  await gl.recordUsage(id, { sourceIp: s.ip, action: s.action });
                  break;
                case 'complete':
                  await gl.complete(id, { actor: subject, reason: 'done' });
                  break;
                case 'revoke':
                  await gl.revoke(id, { actor: pool[s.who]!, reason: 'manual' });
                  break;
                case 'review':
                  await gl.review(id, { reviewer: pool[s.who]!, outcome: s.outcome });
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
            checkInvariants(await gl.get(id), await gl.history(id), parties);
          }
          // Drain: far past every window and review deadline, the sweeper finishes everything.
          clock.advance(7 * 24 * 3600_000);
          for (let i = 0; i < 3; i++) await gl.sweep();
          const final = await gl.get(id);
          const history = await gl.history(id);
          checkInvariants(final, history, parties);
          expect(TERMINAL_STATES).toContain(final.state);
          if (final.targets.some((t) => t.issuance)) {
            stats.issued++;
            if (final.targets.length > 1) stats.multiTargetIssued++;
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
    // The generator reaches what the invariants are about, in every run of the suite.
    expect(stats.issued).toBeGreaterThan(50);
    expect(stats.multiTargetIssued).toBeGreaterThan(20);
    expect(stats.selfRefused).toBeGreaterThan(50);
    expect(stats.operatorRefused).toBeGreaterThan(50);
    expect(stats.approvedByQuorum).toBeGreaterThan(30);
  }, 240_000);
});
