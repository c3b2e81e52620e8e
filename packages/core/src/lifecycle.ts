import type { AuditDraft } from './audit.js';
import { ErrorCodes, GrantlineError } from './errors.js';
import { isoAt, isoOf } from './iso.js';
import type {
  Actor,
  Approval,
  BreakGlass,
  Grant,
  GrantState,
  Issuance,
  RevocationTrigger,
  TargetState,
} from './model.js';
import type { DecisionReason } from './policy.js';
import { quorumMet } from './policy.js';

/** States a case never leaves. */
export const TERMINAL_STATES: readonly GrantState[] = [
  'denied',
  'cancelled',
  'expired',
  'verified',
  'failed',
];

export const isTerminal = (s: GrantState): boolean => TERMINAL_STATES.includes(s);

/** A failure reported by an executor, kept on the case without secrets. */
export interface FailureInfo {
  code: string;
  message: string;
  retryable: boolean;
}

/** What became of one credential that `issue` got back after the case had been rolled back. */
export interface LateIssuanceResult {
  targetId: string;
  issuance: Issuance;
  /** Revoked and verified absent right away. */
  removed: boolean;
  method?: string;
  observation?: Record<string, unknown>;
  error?: FailureInfo;
}

/** Every command the lifecycle understands. `transition()` is the only place that interprets them. */
export type Command =
  | {
      type: 'approve';
      approval: Approval;
      /** The issuance deadline once the quorum is met (approval time plus the activation TTL). */
      activateBy?: string;
    }
  | { type: 'deny'; actor: Actor; reason: string }
  | { type: 'cancel'; actor: Actor; reason: string }
  | { type: 'expire'; reason: string }
  | { type: 'beginIssue'; actor: Actor; staleAt: string }
  | {
      type: 'issued';
      actor: Actor;
      issued: { targetId: string; issuance: Issuance }[];
      expiresAt: string;
      /** When the sweeper takes over a revocation this step starts (a rejected break-glass review). */
      resumeAt: string;
    }
  | {
      type: 'issueFailed';
      actor: Actor;
      resumeAt: string;
      issued: { targetId: string; issuance: Issuance }[];
      failedTargetId: string | undefined;
      error: FailureInfo;
    }
  | {
      type: 'recordUsage';
      actor: Actor;
      usage: Record<string, unknown>;
      violation: DecisionReason[];
      resumeAt: string;
    }
  | {
      type: 'requestRevoke';
      trigger: RevocationTrigger;
      actor: Actor;
      reason: string;
      actingRole?: string;
      resumeAt: string;
    }
  | {
      type: 'targetRevoked';
      targetId: string;
      alreadyGone: boolean;
      detail?: Record<string, unknown>;
      resumeAt: string;
    }
  | { type: 'targetRevokeFailed'; targetId: string; error: FailureInfo; nextAt: string; exhausted: boolean }
  | {
      type: 'targetVerified';
      targetId: string;
      verifier: string;
      method: string;
      observation: Record<string, unknown>;
    }
  | {
      type: 'targetVerifyFailed';
      targetId: string;
      present: boolean;
      method?: string;
      observation?: Record<string, unknown>;
      error?: FailureInfo;
      nextAt: string;
      exhausted: boolean;
    }
  | { type: 'review'; review: NonNullable<BreakGlass['review']>; resumeAt: string }
  | { type: 'reviewOverdue' }
  | {
      type: 'lateIssuance';
      actor: Actor;
      results: LateIssuanceResult[];
      resumeAt: string;
      /** When to try again what could not be removed from a `failed` case (backoff); default `resumeAt`. */
      nextAt?: string;
    }
  | {
      type: 'extend';
      actor: Actor;
      expiresAt: string;
      reason: string;
      /** Approvals of the extension itself; kept in its audit event, not in the case's approvals. */
      approvals: Approval[];
      /** Targets whose executor renewed the credential, with the new expiry. */
      renewed: { targetId: string; expiresAt: string; fingerprint?: string }[];
    };

export type CommandType = Command['type'];

/**
 * The transition table: for each command, the states it may start from and the states it may lead
 * to. This is the single source of truth: `transition()` refuses anything not listed, the README's
 * state table is generated from it and the PostgreSQL CHECK constraint is derived from its states.
 */
export const TRANSITIONS: {
  readonly [C in CommandType]: Readonly<Partial<Record<GrantState, readonly GrantState[]>>>;
} = {
  approve: { requested: ['requested', 'approved'] },
  deny: { requested: ['denied'] },
  cancel: { requested: ['cancelled'], approved: ['cancelled'] },
  expire: { requested: ['expired'], approved: ['expired'] },
  beginIssue: { approved: ['issuing'] },
  issued: { issuing: ['issued', 'revoking'] },
  issueFailed: { issuing: ['revoking'] },
  recordUsage: {
    issued: ['issued', 'revoking'],
    revoking: ['revoking'],
    revoked: ['revoked'],
    verified: ['verified'],
    failed: ['failed'],
  },
  requestRevoke: { issuing: ['revoking'], issued: ['revoking'] },
  targetRevoked: { revoking: ['revoking', 'revoked'] },
  targetRevokeFailed: { revoking: ['revoking'] },
  targetVerified: { revoked: ['revoked', 'verified', 'failed'] },
  targetVerifyFailed: { revoked: ['revoked', 'revoking'] },
  review: {
    // A rejected review ends the access wherever it stands: an approved case is cancelled, an issued
    // one revoked; one being issued is revoked the moment issuance completes (see `issued`).
    approved: ['approved', 'cancelled'],
    issuing: ['issuing'],
    issued: ['issued', 'revoking'],
    revoking: ['revoking'],
    revoked: ['revoked'],
    verified: ['verified'],
    failed: ['failed'],
    cancelled: ['cancelled'],
    expired: ['expired'],
  },
  reviewOverdue: {
    approved: ['approved'],
    issuing: ['issuing'],
    issued: ['issued'],
    revoking: ['revoking'],
    revoked: ['revoked'],
    verified: ['verified'],
    failed: ['failed'],
    cancelled: ['cancelled'],
    expired: ['expired'],
  },
  extend: { issued: ['issued'] },
  // A credential that an executor returned after the case was rolled back (issuance outlived the
  // issuing timeout): recorded, and, when its removal failed, revoked again. A case that already
  // ended `failed` stays failed (terminal) and is flagged exposed instead.
  lateIssuance: { revoking: ['revoking'], revoked: ['revoked', 'revoking'], failed: ['failed'] },
};

/** Every (from, command, to) edge of the table, for docs and checks. */
export function transitionEdges(): { from: GrantState; command: CommandType; to: GrantState }[] {
  const edges: { from: GrantState; command: CommandType; to: GrantState }[] = [];
  for (const [command, froms] of Object.entries(TRANSITIONS) as [
    CommandType,
    Partial<Record<GrantState, readonly GrantState[]>>,
  ][]) {
    for (const [from, tos] of Object.entries(froms) as [GrantState, readonly GrantState[]][]) {
      for (const to of tos) edges.push({ from, command, to });
    }
  }
  return edges;
}

/** True when `command` is allowed from `state`. */
export function can(state: GrantState, command: CommandType): boolean {
  return TRANSITIONS[command][state] !== undefined;
}

/** What the service must do after committing a transition. `transition()` itself executes nothing. */
export type Effect =
  | { type: 'issue' }
  | { type: 'revoke'; targetIds: string[] }
  | { type: 'verify'; targetIds: string[] }
  | { type: 'emit'; event: string; payload: Record<string, unknown> };

/** Result of {@link transition}: the next record (version not yet bumped), its audit drafts, effects. */
export interface TransitionResult {
  next: Grant;
  events: AuditDraft[];
  effects: Effect[];
}

const SYSTEM: Actor = { id: 'grantline', kind: 'system' };

function actorOf(p: { id: string; kind: 'human' | 'workload' }): Actor {
  return { id: p.id, kind: p.kind };
}

/**
 * Shallow copy for a part that may gain keys. Not `{ ...x }`: in V8 an object copied by spread takes
 * a slow path (new hidden class per added key) as soon as a key is added to it, ten times the cost.
 */
function copyOf<T extends object>(x: T): T {
  return Object.assign({}, x);
}

/**
 * The record a transition works on, copy-on-write: the top level is copied at once and every nested
 * part only just before the command first changes it, so the input is never mutated and untouched
 * parts (principals, justification, policy, the targets of an approval) are shared, not copied.
 */
interface Draft {
  /** The input record; never written. */
  readonly from: Grant;
  /** The next record (a shallow copy of `from` until a part is owned). */
  readonly g: Grant;
  readonly at: string;
  readonly events: AuditDraft[];
  readonly effects: Effect[];
}

function ownWindow(d: Draft): Grant['window'] {
  if (d.g.window === d.from.window) d.g.window = copyOf(d.from.window);
  return d.g.window;
}

/** The case's revocation, owned by the draft (callers only use it once it exists). */
function ownRevocation(d: Draft): NonNullable<Grant['revocation']> {
  if (d.g.revocation === d.from.revocation) d.g.revocation = copyOf(d.from.revocation!);
  return d.g.revocation!;
}

function ownBreakGlass(d: Draft): NonNullable<Grant['breakGlass']> {
  if (d.g.breakGlass === d.from.breakGlass) d.g.breakGlass = copyOf(d.from.breakGlass!);
  return d.g.breakGlass!;
}

/** The target with that id, owned by the draft (with its revocation and verification). */
function ownTarget(d: Draft, id: string): TargetState {
  const { g, from } = d;
  const i = g.targets.findIndex((x) => x.id === id);
  if (i < 0)
    throw new GrantlineError(ErrorCodes.VALIDATION, `case ${g.id} has no target ${id}`, {
      details: { caseId: g.id, targetId: id },
    });
  if (g.targets === from.targets) g.targets = from.targets.slice();
  let t = g.targets[i]!;
  if (t === from.targets[i]) {
    t = copyOf(t);
    if (t.revocation) t.revocation = copyOf(t.revocation);
    if (t.verification) t.verification = copyOf(t.verification);
    g.targets[i] = t;
  }
  return t;
}

function emit(d: Draft, event: string, payload: Record<string, unknown> = {}): void {
  d.effects.push({ type: 'emit', event, payload: { caseId: d.g.id, ...payload } });
}

/** Ends a case that was never issued, by someone's decision: denied or cancelled, with its event. */
function decide(d: Draft, outcome: 'denied' | 'cancelled', by: Actor, reason: string): void {
  const { g } = d;
  g.state = outcome;
  g.decision = { by, outcome, reason, at: d.at };
  d.events.push({ type: outcome, actor: by, data: { reason } });
  emit(d, `grant:${outcome}`, { by: by.id, reason });
}

// `resumeAt`: when the sweeper should take over if whoever asked does not finish the step inline
// (normally now + lease): it keeps a second process from racing the one already at work. Records the
// `revoke.requested` event.
function startRevocation(
  d: Draft,
  trigger: RevocationTrigger,
  actor: Actor,
  reason: string,
  resumeAt: string,
  actingRole?: string,
): void {
  const { g } = d;
  g.state = 'revoking';
  g.revocation = { trigger, reason, actor, requestedAt: d.at };
  g.retry = { attempts: 0, nextAt: resumeAt };
  d.events.push({
    type: 'revoke.requested',
    actor,
    ...(actingRole ? { actingRole } : {}),
    data: { trigger, reason },
  });
  d.effects.push({ type: 'revoke', targetIds: pendingRevocation(g) });
  emit(d, 'grant:revoking', { trigger, reason });
}

function pendingRevocation(g: Grant): string[] {
  return g.targets.filter((t) => !t.revocation?.confirmedAt).map((t) => t.id);
}

function pendingVerification(g: Grant): string[] {
  return g.targets.filter((t) => t.verification?.result !== 'absent').map((t) => t.id);
}

function lagMs(g: Grant, at: Date): number {
  // Lag runs from the end of the window when revocation is due to expiry, else from the trigger.
  const from =
    g.revocation?.trigger === 'expiry' && g.window.expiresAt ? g.window.expiresAt : g.revocation!.requestedAt;
  return Math.max(0, at.getTime() - Date.parse(from));
}

/**
 * The pure lifecycle step: applies `command` to `grant` at `now` and returns the next record, the
 * audit event drafts and the effects. Executes nothing and does not touch `version`, `updatedAt` or
 * `dueAt` (see `finalizeGrant`).
 * @throws GrantlineError `ERR_INVALID_TRANSITION` when the table does not allow the command.
 */
export function transition(grant: Grant, command: Command, now: Date): TransitionResult {
  const allowed = TRANSITIONS[command.type][grant.state];
  if (!allowed) {
    throw new GrantlineError(
      ErrorCodes.INVALID_TRANSITION,
      `cannot ${command.type} case ${grant.id} in state ${grant.state}`,
      { details: { caseId: grant.id, state: grant.state, command: command.type } },
    );
  }
  const at = isoOf(now);
  const g = copyOf(grant);
  const events: AuditDraft[] = [];
  const effects: Effect[] = [];
  const d: Draft = { from: grant, g, at, events, effects };

  switch (command.type) {
    case 'approve': {
      g.approvals = [...grant.approvals, command.approval];
      events.push({
        type: 'approval',
        actor: actorOf(command.approval.approver),
        actingRole: command.approval.role,
        data: {
          approver: command.approval.approver,
          role: command.approval.role,
          ...(command.approval.reason ? { reason: command.approval.reason } : {}),
          ...(command.approval.proof ? { proof: command.approval.proof } : {}),
        },
      });
      emit(d, 'grant:approval', { approverId: command.approval.approver.id, role: command.approval.role });
      if (quorumMet(g.policy, g.approvals)) {
        g.state = 'approved';
        // "Approved cases not issued within the activation TTL expire": from now, not from the request.
        if (command.activateBy) ownWindow(d).requestExpiresAt = command.activateBy;
        events.push({
          type: 'approved',
          actor: SYSTEM,
          data: { approvals: g.approvals.length, rule: g.policy.ruleId },
        });
        emit(d, 'grant:approved', {
          approvals: g.approvals.map((a) => ({ id: a.approver.id, role: a.role })),
        });
      }
      break;
    }
    case 'deny':
    case 'cancel':
      decide(d, command.type === 'deny' ? 'denied' : 'cancelled', command.actor, command.reason);
      break;
    case 'expire': {
      g.state = 'expired';
      g.decision = { by: SYSTEM, outcome: 'expired', reason: command.reason, at };
      events.push({ type: 'expired', actor: SYSTEM, data: { reason: command.reason } });
      emit(d, 'grant:expired', { reason: command.reason });
      break;
    }
    case 'beginIssue': {
      g.state = 'issuing';
      g.retry = { attempts: 0, nextAt: command.staleAt };
      events.push({
        type: 'issue.started',
        actor: command.actor,
        data: { targets: g.targets.map((t) => t.id) },
      });
      effects.push({ type: 'issue' });
      break;
    }
    case 'issued': {
      for (const { targetId, issuance } of command.issued) {
        ownTarget(d, targetId).issuance = issuance;
        events.push({ type: 'target.issued', actor: command.actor, data: { targetId, ...issuance } });
      }
      g.state = 'issued';
      const w = ownWindow(d);
      w.issuedAt = at;
      w.expiresAt = command.expiresAt;
      // The cap on extensions runs from the first credential's issue time (before the executor
      // calls), not from this step: an executor that took minutes must not add them to the cap.
      let first = now.getTime();
      for (const { issuance } of command.issued) first = Math.min(first, Date.parse(issuance.issuedAt));
      w.hardLimitAt = isoAt(first + g.policy.maxDurationSeconds * 1000);
      delete g.retry;
      events.push({ type: 'issued', actor: command.actor, data: { expiresAt: command.expiresAt } });
      emit(d, 'grant:issued', {
        expiresAt: command.expiresAt,
        targets: command.issued.map((i) => ({ id: i.targetId, ref: i.issuance.ref })),
      });
      // The break-glass review was rejected while the credentials were being issued: they are revoked
      // in the same step (revoking during issuance would race the executor; see lateIssuance).
      const review = g.breakGlass?.review;
      if (review?.outcome === 'rejected') {
        startRevocation(
          d,
          'review',
          actorOf(review.reviewer),
          'break-glass review rejected',
          command.resumeAt,
        );
      }
      break;
    }
    case 'issueFailed': {
      for (const { targetId, issuance } of command.issued) {
        ownTarget(d, targetId).issuance = issuance;
        events.push({ type: 'target.issued', actor: command.actor, data: { targetId, ...issuance } });
      }
      events.push({
        type: 'issue.failed',
        actor: command.actor,
        data: { failedTargetId: command.failedTargetId ?? null, error: command.error },
      });
      emit(d, 'issuance:failed', { targetId: command.failedTargetId, error: command.error });
      startRevocation(d, 'rollback', SYSTEM, `issuance failed: ${command.error.message}`, command.resumeAt);
      break;
    }
    case 'recordUsage': {
      const usage = copyOf(grant.usage);
      usage.count += 1;
      usage.lastAt = String(command.usage.at ?? at);
      g.usage = usage;
      const afterRevocation = grant.state !== 'issued';
      events.push({
        type: 'usage',
        actor: command.actor,
        data: { ...command.usage, ...(afterRevocation ? { afterRevocation: true } : {}) },
      });
      emit(d, 'grant:used', { usage: command.usage, afterRevocation });
      if (command.violation.length > 0) {
        events.push({ type: 'violation', actor: SYSTEM, data: { reasons: command.violation } });
        emit(d, 'policy:violation', { reasons: command.violation });
        if (grant.state === 'issued') {
          const reason = command.violation.map((r) => r.message).join('; ');
          startRevocation(d, 'violation', SYSTEM, reason, command.resumeAt);
        }
      }
      break;
    }
    case 'requestRevoke': {
      if (grant.state === 'issuing' && command.trigger !== 'rollback') {
        throw new GrantlineError(
          ErrorCodes.INVALID_TRANSITION,
          `case ${g.id} is still issuing; only a rollback may revoke it now`,
          {
            details: { caseId: g.id, state: g.state, command: command.type },
          },
        );
      }
      startRevocation(
        d,
        command.trigger,
        command.actor,
        command.reason,
        command.resumeAt,
        command.actingRole,
      );
      // A detector's report (reportViolation) is announced like a violating use (recordUsage).
      if (command.trigger === 'violation' && grant.state === 'issued')
        emit(d, 'policy:violation', {
          reasons: [
            { code: 'VIOLATION_REPORTED', message: command.reason, path: ['detector', command.actor.id] },
          ],
        });
      break;
    }
    case 'targetRevoked': {
      const t = ownTarget(d, command.targetId);
      if (t.revocation?.confirmedAt) break; // idempotent: a second confirmation changes nothing
      t.revocation = {
        attempts: (t.revocation?.attempts ?? 0) + 1,
        confirmedAt: at,
        alreadyGone: command.alreadyGone,
        ...(command.detail ? { detail: command.detail } : {}),
      };
      events.push({
        type: 'target.revoked',
        actor: SYSTEM,
        data: {
          targetId: t.id,
          alreadyGone: command.alreadyGone,
          attempts: t.revocation.attempts,
          ...(command.detail ? { detail: command.detail } : {}),
        },
      });
      if (pendingRevocation(g).length === 0) {
        const rev = ownRevocation(d);
        g.state = 'revoked';
        rev.revokedAt = at;
        rev.lagToRevokedMs = lagMs(g, now);
        delete rev.exposed;
        g.retry = { attempts: 0, nextAt: command.resumeAt };
        events.push({
          type: 'revoked',
          actor: SYSTEM,
          data: { trigger: rev.trigger, lagMs: rev.lagToRevokedMs },
        });
        emit(d, 'grant:revoked', { trigger: rev.trigger, lagMs: rev.lagToRevokedMs });
        effects.push({ type: 'verify', targetIds: pendingVerification(g) });
      }
      break;
    }
    case 'targetRevokeFailed': {
      const t = ownTarget(d, command.targetId);
      t.revocation = { attempts: (t.revocation?.attempts ?? 0) + 1, lastError: command.error };
      g.retry = { attempts: (g.retry?.attempts ?? 0) + 1, nextAt: command.nextAt };
      events.push({
        type: 'target.revoke-failed',
        actor: SYSTEM,
        data: {
          targetId: t.id,
          error: command.error,
          attempts: t.revocation.attempts,
          nextAt: command.nextAt,
          exhausted: command.exhausted,
        },
      });
      if (command.exhausted && !g.revocation!.exposed) {
        ownRevocation(d).exposed = true;
        emit(d, 'revocation:failed', {
          targetId: t.id,
          error: command.error,
          attempts: t.revocation.attempts,
        });
      }
      break;
    }
    case 'targetVerified': {
      const t = ownTarget(d, command.targetId);
      if (t.verification?.result === 'absent') break;
      t.verification = {
        attempts: (t.verification?.attempts ?? 0) + 1,
        result: 'absent',
        method: command.method,
        observation: command.observation,
        verifier: command.verifier,
        at,
      };
      events.push({
        type: 'target.verified',
        actor: { id: command.verifier, kind: 'system' },
        data: { targetId: t.id, method: command.method, observation: command.observation },
      });
      if (pendingVerification(g).length === 0) {
        const rev = ownRevocation(d);
        const rollback = rev.trigger === 'rollback';
        g.state = rollback ? 'failed' : 'verified';
        rev.verifiedAt = at;
        rev.lagToVerifiedMs = lagMs(g, now);
        delete rev.exposed;
        delete g.retry;
        events.push({ type: g.state, actor: SYSTEM, data: { lagMs: rev.lagToVerifiedMs } });
        emit(d, rollback ? 'grant:failed' : 'grant:verified', { lagMs: rev.lagToVerifiedMs });
      }
      break;
    }
    case 'targetVerifyFailed': {
      const t = ownTarget(d, command.targetId);
      t.verification = {
        attempts: (t.verification?.attempts ?? 0) + 1,
        ...(command.present ? { result: 'present' as const } : {}),
        ...(command.method ? { method: command.method } : {}),
        ...(command.observation ? { observation: command.observation } : {}),
        ...(command.error ? { lastError: command.error } : {}),
        at,
      };
      g.retry = { attempts: (g.retry?.attempts ?? 0) + 1, nextAt: command.nextAt };
      events.push({
        type: 'target.verify-failed',
        actor: SYSTEM,
        data: {
          targetId: t.id,
          present: command.present,
          ...(command.observation ? { observation: command.observation } : {}),
          ...(command.error ? { error: command.error } : {}),
          nextAt: command.nextAt,
          exhausted: command.exhausted,
        },
      });
      if (command.exhausted && !g.revocation!.exposed) {
        ownRevocation(d).exposed = true;
        emit(d, 'verification:failed', { targetId: t.id, present: command.present, error: command.error });
      }
      if (command.present && command.exhausted) {
        // Still there after every retry: revoke that target again rather than trusting the first answer.
        delete t.revocation!.confirmedAt;
        g.state = 'revoking';
        effects.push({ type: 'revoke', targetIds: [t.id] });
      }
      break;
    }
    case 'review': {
      if (!g.breakGlass) {
        throw new GrantlineError(ErrorCodes.INVALID_TRANSITION, `case ${g.id} is not a break-glass case`, {
          details: { caseId: g.id, command: 'review' },
        });
      }
      if (g.breakGlass.review) {
        throw new GrantlineError(ErrorCodes.INVALID_TRANSITION, `case ${g.id} was already reviewed`, {
          details: { caseId: g.id, command: 'review' },
        });
      }
      ownBreakGlass(d).review = command.review;
      events.push({
        type: 'review',
        actor: actorOf(command.review.reviewer),
        actingRole: command.review.role,
        data: {
          outcome: command.review.outcome,
          ...(command.review.notes ? { notes: command.review.notes } : {}),
        },
      });
      emit(d, 'review:recorded', { outcome: command.review.outcome, reviewer: command.review.reviewer.id });
      if (command.review.outcome === 'rejected' && grant.state === 'approved') {
        // Not issued yet: nothing to remove, and it must never be issued now.
        decide(d, 'cancelled', actorOf(command.review.reviewer), 'break-glass review rejected');
      } else if (command.review.outcome === 'rejected' && grant.state === 'issued') {
        startRevocation(
          d,
          'review',
          actorOf(command.review.reviewer),
          'break-glass review rejected',
          command.resumeAt,
        );
      }
      break;
    }
    case 'reviewOverdue': {
      if (!g.breakGlass || g.breakGlass.review || g.breakGlass.overdueRaisedAt) break;
      ownBreakGlass(d).overdueRaisedAt = at;
      events.push({
        type: 'review.overdue',
        actor: SYSTEM,
        data: { actorId: g.breakGlass.actor.id, reviewDueAt: g.breakGlass.reviewDueAt },
      });
      emit(d, 'review:overdue', { actorId: g.breakGlass.actor.id, reviewDueAt: g.breakGlass.reviewDueAt });
      break;
    }
    case 'lateIssuance': {
      for (const r of command.results) {
        events.push({
          type: 'target.issued-late',
          actor: command.actor,
          data: {
            targetId: r.targetId,
            ...r.issuance,
            removed: r.removed,
            ...(r.method ? { method: r.method } : {}),
            ...(r.observation ? { observation: r.observation } : {}),
            ...(r.error ? { error: r.error } : {}),
          },
        });
      }
      const left = command.results.filter((r) => !r.removed);
      if (g.state === 'failed') {
        // Terminal: the state stays `failed`, but the sweeper keeps removing what was issued late
        // (`pendingLate`, due at `retry.nextAt`) and the case is flagged exposed until it is gone.
        for (const r of left) ownTarget(d, r.targetId).issuance = r.issuance;
        const pending = new Set(g.revocation!.pendingLate ?? []);
        for (const r of command.results) {
          if (r.removed) pending.delete(r.targetId);
          else pending.add(r.targetId);
        }
        const rev = ownRevocation(d);
        if (pending.size === 0) {
          delete rev.pendingLate;
          delete rev.exposed;
          delete g.retry;
          break;
        }
        const attempts = (g.retry?.attempts ?? 0) + 1;
        rev.pendingLate = [...pending];
        g.retry = { attempts, nextAt: command.nextAt ?? command.resumeAt };
        if (!rev.exposed) {
          rev.exposed = true;
          for (const r of left)
            emit(d, 'revocation:failed', {
              targetId: r.targetId,
              error: r.error ?? { code: 'PRESENT', message: 'still present after revoke', retryable: true },
              lateIssuance: true,
            });
        }
        break;
      }
      if (left.length === 0) break;
      // Still revoking: put the late credentials into the revocation so the sweeper removes them.
      for (const r of left) {
        const t = ownTarget(d, r.targetId);
        t.issuance = r.issuance;
        if (t.revocation) delete t.revocation.confirmedAt;
        delete t.verification;
      }
      g.state = 'revoking';
      delete ownRevocation(d).revokedAt;
      g.retry = { attempts: 0, nextAt: command.resumeAt };
      effects.push({ type: 'revoke', targetIds: left.map((r) => r.targetId) });
      break;
    }
    case 'extend': {
      const w = ownWindow(d);
      const from = w.expiresAt!;
      w.expiresAt = command.expiresAt;
      w.extensions += 1;
      for (const r of command.renewed) {
        const t = ownTarget(d, r.targetId);
        if (t.issuance)
          t.issuance = {
            ...t.issuance,
            expiresAt: r.expiresAt,
            ...(r.fingerprint ? { fingerprint: r.fingerprint } : {}),
          };
      }
      events.push({
        type: 'extended',
        actor: command.actor,
        data: {
          from,
          to: command.expiresAt,
          reason: command.reason,
          approvals: command.approvals.map((a) => ({
            approver: a.approver,
            role: a.role,
            at: a.at,
            ...(a.reason ? { reason: a.reason } : {}),
            ...(a.proof ? { proof: a.proof } : {}),
          })),
          renewed: command.renewed,
        },
      });
      emit(d, 'grant:extended', { from, to: command.expiresAt });
      break;
    }
  }
  if (!allowed.includes(g.state)) {
    // A bug in this function, never a user error: the table and the code disagree.
    throw new GrantlineError(
      ErrorCodes.INVALID_TRANSITION,
      `internal: ${command.type} from ${grant.state} produced ${g.state}`,
      {
        details: { caseId: g.id },
      },
    );
  }
  return { next: g, events, effects };
}

/** Next time the sweeper must look at the case, or null when nothing is pending. */
export function computeDue(g: Grant): string | null {
  let due: string | undefined;
  switch (g.state) {
    case 'requested':
    case 'approved':
      due = g.window.requestExpiresAt;
      break;
    case 'issuing':
    case 'revoking':
    case 'revoked':
      due = g.retry?.nextAt ? g.retry.nextAt : g.updatedAt;
      break;
    case 'issued':
      if (g.window.expiresAt) due = g.window.expiresAt;
      break;
    case 'failed':
      if (g.revocation?.pendingLate?.length && g.retry?.nextAt) due = g.retry.nextAt;
      break;
    default:
      break;
  }
  // The earlier of the step's time and a pending break-glass review (the step's on a tie).
  if (g.breakGlass && !g.breakGlass.review && !g.breakGlass.overdueRaisedAt) {
    const review = g.breakGlass.reviewDueAt;
    if (due === undefined || !(Date.parse(due) <= Date.parse(review))) due = review;
  }
  return due ?? null;
}

/**
 * Bumps version and `updatedAt` and recomputes `dueAt`: the record as it will be stored. `audit`,
 * when given, replaces the record's chain position (the commit's last event) in the same copy.
 */
export function finalizeGrant(next: Grant, prevVersion: number, now: Date, audit?: Grant['audit']): Grant {
  const g: Grant = { ...next, version: prevVersion + 1, updatedAt: isoOf(now) };
  if (audit) g.audit = audit; // a key every record has: set in place, the copy keeps its shape
  g.dueAt = computeDue(g);
  return g;
}
