import { chainEvents, cloneJson } from '../audit.js';
import { computeDue } from '../lifecycle.js';
import type { AuditEvent, Grant, GrantState } from '../model.js';

let counter = 0;

/** Options for {@link makeGrant}. */
export interface MakeGrantOptions {
  id?: string;
  state?: GrantState;
  dueAt?: string | null;
  createdAt?: string;
  subjectId?: string;
  requesterId?: string;
  idempotencyKey?: string;
  /** Free text placed in the justification (used by stores to test escaping). */
  reason?: string;
}

/**
 * A valid case record with its first audit event, for store tests. The record's `audit` head points
 * at the returned event, exactly as the service would write it.
 */
export function makeGrant(opts: MakeGrantOptions = {}): { grant: Grant; events: AuditEvent[] } {
  counter += 1;
  const id =
    opts.id ?? `case-${Date.now().toString(36)}-${counter}-${Math.random().toString(36).slice(2, 8)}`;
  const createdAt = opts.createdAt ?? new Date(Date.UTC(2026, 0, 1, 0, 0, 0, counter % 1000)).toISOString();
  const events = chainEvents(id, createdAt, undefined, [
    {
      type: 'requested',
      actor: { id: opts.requesterId ?? 'ci-bot', kind: 'workload' },
      data: { note: opts.reason ?? 'kit' },
    },
  ]);
  const grant: Grant = {
    id,
    version: 1,
    createdAt,
    updatedAt: createdAt,
    state: opts.state ?? 'requested',
    requester: { id: opts.requesterId ?? 'ci-bot', kind: 'workload', roles: [], teams: [] },
    subject: { id: opts.subjectId ?? 'svc-deploy', kind: 'workload', roles: [], teams: [] },
    justification: { reason: opts.reason ?? 'conformance kit', ticket: 'OPS-1' },
    targets: [{ id: 't1', system: 'token', resource: 'api://orders', permissions: ['orders:read'] }],
    window: {
      durationSeconds: 600,
      requestExpiresAt: new Date(Date.parse(createdAt) + 3_600_000).toISOString(),
      extensions: 0,
    },
    policy: {
      policyId: 'kit',
      policyVersion: '1',
      policyHash: 'f'.repeat(64),
      ruleId: 'r1',
      risk: 'low',
      owner: 'iam-governance',
      operator: 'platform',
      approvals: { count: 1, roles: ['approver'], distinctRoles: false },
      maxDurationSeconds: 3600,
    },
    approvals: [],
    usage: { count: 0 },
    audit: { seq: 1, head: events[0]!.hash },
    dueAt: null,
    ...(opts.idempotencyKey ? { idempotencyKey: opts.idempotencyKey } : {}),
  };
  grant.dueAt = opts.dueAt === undefined ? computeDue(grant) : opts.dueAt;
  return { grant, events };
}

/**
 * The next version of `grant` with `n` more chained events, as a transition would produce it.
 * `patch` is applied to the record (e.g. a new state or `dueAt`).
 */
export function nextVersion(
  grant: Grant,
  patch: Partial<Grant> = {},
  n = 1,
  type = 'kit.step',
): { grant: Grant; events: AuditEvent[] } {
  const at = new Date(Date.parse(grant.updatedAt) + 1000).toISOString();
  const events = chainEvents(
    grant.id,
    at,
    { seq: grant.audit.seq, hash: grant.audit.head } as AuditEvent,
    Array.from({ length: n }, (_, i) => ({
      type,
      actor: { id: 'kit', kind: 'system' as const },
      data: { i },
    })),
  );
  const last = events[events.length - 1];
  return {
    grant: {
      ...cloneJson(grant),
      ...patch,
      version: grant.version + 1,
      updatedAt: at,
      audit: last ? { seq: last.seq, head: last.hash } : grant.audit,
    },
    events,
  };
}
