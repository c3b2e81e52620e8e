import type { Actor, Command, Grant, Issuance, TransitionResult } from '../src/index.js';

export function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

const T0 = Date.parse('2026-12-01T09:00:00.000Z');
const at = (s: number) => new Date(T0 + s * 1000);
const iso = (s: number) => at(s).toISOString();
const sys: Actor = { id: 'grantline', kind: 'system' };
const subj: Actor = { id: 'svc', kind: 'workload' };
const issuance = (id: string, s: number): Issuance => ({
  ref: { id: `ref-${id}` },
  fingerprint: `fp-${id}`,
  issuedAt: iso(s),
  expiresAt: iso(s + 600),
});
const principal = (id: string, roles: string[]) => ({ id, kind: 'human' as const, roles, teams: [] });

/** A record with two targets and a pending break-glass review, in `state`. */
export function baseRecord(state: Grant['state'] = 'requested'): Grant {
  return {
    id: 'case-1',
    version: 1,
    createdAt: iso(0),
    updatedAt: iso(0),
    state,
    requester: principal('req', []),
    subject: { id: 'svc', kind: 'workload', roles: [], teams: [] },
    justification: { reason: 'paths' },
    targets: [
      { id: 't1', system: 'token', resource: 'api://a', params: {} },
      { id: 't2', system: 'token', resource: 'api://b', permissions: ['x:*'], params: { p: 1 } },
    ],
    window: { durationSeconds: 600, requestExpiresAt: iso(3600), extensions: 0 },
    policy: {
      policyId: 'p',
      policyVersion: '1',
      policyHash: 'f'.repeat(64),
      ruleId: 'r',
      risk: 'high',
      owner: 'gov',
      operator: 'ops',
      approvals: { count: 2, roles: ['a', 'b'], distinctRoles: true },
      maxDurationSeconds: 3600,
      extension: { requiresApproval: false, maxExtensions: 2 },
    },
    approvals: [],
    breakGlass: {
      actor: principal('req', ['sre']),
      reason: 'fire',
      at: iso(0),
      reviewDueAt: iso(86400),
      reviewerRoles: ['sec'],
    },
    usage: { count: 0 },
    audit: { seq: 1, head: 'h' },
    dueAt: null,
  };
}

type Step = [number, Command];
const paths: Record<string, { from: Grant['state']; noBreakGlass?: boolean; steps: Step[] }> = {
  happy: {
    from: 'requested',
    steps: [
      [10, { type: 'approve', approval: { approver: principal('x', ['a']), role: 'a', at: iso(10) } }],
      [
        20,
        {
          type: 'approve',
          approval: { approver: principal('y', ['b']), role: 'b', at: iso(20), reason: 'ok' },
        },
      ],
      [30, { type: 'beginIssue', actor: subj, staleAt: iso(90) }],
      [
        31,
        {
          type: 'issued',
          actor: subj,
          issued: [
            { targetId: 't1', issuance: issuance('t1', 31) },
            { targetId: 't2', issuance: issuance('t2', 31) },
          ],
          expiresAt: iso(631),
          resumeAt: iso(631),
        },
      ],
      [
        40,
        {
          type: 'recordUsage',
          actor: subj,
          usage: { at: iso(40), sourceIp: '10.0.0.1' },
          violation: [],
          resumeAt: iso(70),
        },
      ],
      [
        50,
        {
          type: 'extend',
          actor: subj,
          expiresAt: iso(900),
          reason: 'more',
          approvals: [],
          renewed: [{ targetId: 't1', expiresAt: iso(900), fingerprint: 'fp2' }],
        },
      ],
      [60, { type: 'reviewOverdue' }],
      [
        70,
        {
          type: 'recordUsage',
          actor: subj,
          usage: { at: iso(70) },
          violation: [{ code: 'X', message: 'bad' }],
          resumeAt: iso(100),
        },
      ],
      [
        80,
        {
          type: 'targetRevokeFailed',
          targetId: 't1',
          error: { code: 'E', message: 'down', retryable: true },
          nextAt: iso(81),
          exhausted: true,
        },
      ],
      [
        81,
        { type: 'targetRevoked', targetId: 't1', alreadyGone: false, detail: { d: 1 }, resumeAt: iso(111) },
      ],
      [82, { type: 'targetRevoked', targetId: 't1', alreadyGone: false, resumeAt: iso(112) }],
      [83, { type: 'targetRevoked', targetId: 't2', alreadyGone: true, resumeAt: iso(113) }],
      [
        84,
        {
          type: 'targetVerifyFailed',
          targetId: 't1',
          present: false,
          error: { code: 'E', message: 'x', retryable: true },
          nextAt: iso(85),
          exhausted: false,
        },
      ],
      [
        85,
        {
          type: 'targetVerifyFailed',
          targetId: 't1',
          present: true,
          method: 'm',
          observation: { o: 1 },
          nextAt: iso(86),
          exhausted: true,
        },
      ],
      [86, { type: 'targetRevoked', targetId: 't1', alreadyGone: false, resumeAt: iso(116) }],
      [87, { type: 'targetVerified', targetId: 't1', verifier: 'v', method: 'm', observation: { ok: true } }],
      [88, { type: 'targetVerified', targetId: 't1', verifier: 'v', method: 'm', observation: { ok: true } }],
      [89, { type: 'targetVerified', targetId: 't2', verifier: 'v', method: 'm', observation: { ok: true } }],
      [90, { type: 'recordUsage', actor: subj, usage: { at: iso(90) }, violation: [], resumeAt: iso(120) }],
      [
        91,
        {
          type: 'review',
          review: {
            reviewer: principal('s', ['sec']),
            role: 'sec',
            outcome: 'accepted',
            at: iso(91),
            notes: 'n',
          },
          resumeAt: iso(121),
        },
      ],
    ],
  },
  rollback: {
    from: 'approved',
    steps: [
      [30, { type: 'beginIssue', actor: subj, staleAt: iso(90) }],
      [
        31,
        {
          type: 'issueFailed',
          actor: subj,
          resumeAt: iso(61),
          issued: [{ targetId: 't1', issuance: issuance('t1', 31) }],
          failedTargetId: 't2',
          error: { code: 'E', message: 'no', retryable: false },
        },
      ],
      [
        32,
        {
          type: 'lateIssuance',
          actor: sys,
          resumeAt: iso(62),
          results: [
            {
              targetId: 't2',
              issuance: issuance('t2', 32),
              removed: false,
              error: { code: 'E', message: 'x', retryable: true },
            },
          ],
        },
      ],
      [33, { type: 'targetRevoked', targetId: 't1', alreadyGone: false, resumeAt: iso(63) }],
      [34, { type: 'targetRevoked', targetId: 't2', alreadyGone: false, resumeAt: iso(64) }],
      [
        35,
        {
          type: 'lateIssuance',
          actor: sys,
          resumeAt: iso(65),
          results: [{ targetId: 't1', issuance: issuance('t1', 35), removed: false }],
        },
      ],
      [36, { type: 'targetRevoked', targetId: 't1', alreadyGone: false, resumeAt: iso(66) }],
      [37, { type: 'targetVerified', targetId: 't1', verifier: 'v', method: 'm', observation: {} }],
      [38, { type: 'targetVerified', targetId: 't2', verifier: 'v', method: 'm', observation: {} }],
      [
        39,
        {
          type: 'lateIssuance',
          actor: sys,
          resumeAt: iso(69),
          nextAt: iso(70),
          results: [
            {
              targetId: 't2',
              issuance: issuance('t2', 39),
              removed: false,
              method: 'm',
              observation: { present: true },
            },
          ],
        },
      ],
      [
        40,
        {
          type: 'lateIssuance',
          actor: sys,
          resumeAt: iso(70),
          results: [{ targetId: 't2', issuance: issuance('t2', 39), removed: true, method: 'm' }],
        },
      ],
    ],
  },
  rejected: {
    from: 'approved',
    steps: [
      [30, { type: 'beginIssue', actor: subj, staleAt: iso(90) }],
      [
        31,
        {
          type: 'issued',
          actor: subj,
          issued: [
            { targetId: 't1', issuance: issuance('t1', 31) },
            { targetId: 't2', issuance: issuance('t2', 31) },
          ],
          expiresAt: iso(631),
          resumeAt: iso(631),
        },
      ],
      [
        40,
        {
          type: 'review',
          review: { reviewer: principal('s', ['sec']), role: 'sec', outcome: 'rejected', at: iso(40) },
          resumeAt: iso(70),
        },
      ],
      [41, { type: 'targetRevoked', targetId: 't2', alreadyGone: false, resumeAt: iso(71) }],
    ],
  },
  stale: {
    from: 'approved',
    noBreakGlass: true,
    steps: [
      [30, { type: 'beginIssue', actor: subj, staleAt: iso(90) }],
      [91, { type: 'requestRevoke', trigger: 'rollback', actor: sys, reason: 'stale', resumeAt: iso(121) }],
    ],
  },
  expiry: {
    from: 'approved',
    noBreakGlass: true,
    steps: [
      [30, { type: 'beginIssue', actor: subj, staleAt: iso(90) }],
      [
        31,
        {
          type: 'issued',
          actor: subj,
          issued: [
            { targetId: 't1', issuance: issuance('t1', 31) },
            { targetId: 't2', issuance: issuance('t2', 31) },
          ],
          expiresAt: iso(631),
          resumeAt: iso(631),
        },
      ],
      [
        700,
        { type: 'requestRevoke', trigger: 'expiry', actor: sys, reason: 'window ended', resumeAt: iso(730) },
      ],
    ],
  },
  deny: { from: 'requested', steps: [[5, { type: 'deny', actor: subj, reason: 'no' }]] },
  cancel: { from: 'approved', steps: [[5, { type: 'cancel', actor: subj, reason: 'no' }]] },
  expire: { from: 'requested', noBreakGlass: true, steps: [[5, { type: 'expire', reason: 'late' }]] },
};

/**
 * Runs every path through `transition`, each input deep-frozen (a write to it throws), and returns
 * each step's result with the input's JSON before and after the call.
 */
export function runPaths(
  transition: (g: Grant, c: Command, now: Date) => TransitionResult,
  finalize: (g: Grant, v: number, now: Date) => Grant,
): { path: string; step: number; before: string; after: string; result: unknown }[] {
  const out: { path: string; step: number; before: string; after: string; result: unknown }[] = [];
  for (const [name, p] of Object.entries(paths)) {
    let g = baseRecord(p.from);
    if (p.noBreakGlass) delete g.breakGlass;
    p.steps.forEach(([s, cmd], i) => {
      const input = deepFreeze(g);
      const before = JSON.stringify(input);
      const r = transition(input, deepFreeze(cmd), at(s));
      out.push({ path: name, step: i, before, after: JSON.stringify(input), result: r });
      g = finalize(r.next, input.version, at(s));
    });
  }
  return out;
}
