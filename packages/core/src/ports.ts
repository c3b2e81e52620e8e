import type { z } from 'zod';
import type { GrantlineError } from './errors.js';
import type { AuditEvent, Grant, GrantState, Issuance, ListQueryParsed, Target } from './model.js';

// #region store
/** What a store can do; the service and the kits read it. */
export interface StoreCapabilities {
  /** `claimDue` leases are honoured across processes (not only within one). */
  crossProcessLeases: boolean;
  /** Store-wide audit sequence (`globalSeq`) is assigned on append. */
  globalSequence: boolean;
}

/** Result of {@link GrantStore.create}. */
export interface CreateResult {
  grant: Grant;
  /** False when the idempotency key already named a case; `grant` is that case, unchanged. */
  created: boolean;
}

/** A page of {@link GrantStore.list}. */
export interface GrantPage {
  grants: Grant[];
  nextCursor?: string;
}

/** One write of {@link GrantStore.compareAndSetMany}: what `compareAndSet` takes, as a record. */
export interface CasItem {
  grant: Grant;
  expectedVersion: number;
  events: AuditEvent[];
}

/**
 * What became of one {@link CasItem}: the stored grant, or the error `compareAndSet` would have
 * thrown for it alone (`ERR_CONFLICT`, `ERR_NOT_FOUND`, `ERR_STORE` for events out of sequence).
 */
export type CasOutcome = { ok: true; grant: Grant } | { ok: false; error: GrantlineError };

/**
 * Persistence for cases and their audit events.
 *
 * Contract (checked by `describeStoreConformance` in `@grantline/core/testing`):
 * - Every write stores the grant **and** appends its audit events atomically: a reader never sees
 *   one without the other.
 * - `compareAndSet` succeeds only when the stored version equals `expectedVersion`; the new grant
 *   carries `expectedVersion + 1`. Exactly one of several racing writers of a version commits.
 * - Audit events are append-only; `seq` per case is contiguous from 1; `globalSeq`, when the
 *   store assigns it, increases strictly in commit order.
 * - Stored state is isolated from callers: a returned object is either a private copy or an
 *   immutable (deeply frozen) value that may be shared (the memory store hands out frozen records and
 *   events), so callers must never mutate one; changing an object after passing it in never changes
 *   the store.
 */
export interface GrantStore {
  readonly capabilities: StoreCapabilities;
  /**
   * Inserts a new case with its first audit events. With `idempotencyKey` set on the grant, a second
   * create with the same key returns the existing case and `created: false` (nothing written).
   * @throws GrantlineError `ERR_CONFLICT` when the id exists already.
   */
  create(grant: Grant, events: AuditEvent[]): Promise<CreateResult>;
  /** The case, or null. */
  get(id: string): Promise<Grant | null>;
  /**
   * Replaces the case when its stored version is `expectedVersion` and appends `events` in the same
   * atomic step. Releases any sweeper lease on the case.
   * @throws GrantlineError `ERR_CONFLICT` (retryable) when the version moved on; nothing is written.
   * @throws GrantlineError `ERR_NOT_FOUND` when there is no such case.
   */
  compareAndSet(grant: Grant, expectedVersion: number, events: AuditEvent[]): Promise<Grant>;
  /**
   * Optional: many compare-and-sets in one round trip (the sweeper's batched path uses it when
   * present). Each item is atomic by itself (its grant and its events, or nothing) and independent
   * of the others: one item's conflict does not stop the rest. Outcomes come back in item order.
   * @throws GrantlineError `ERR_VALIDATION` for a malformed call (not an array, a case twice, a
   *   grant without id); nothing is written. A thrown store error (`ERR_STORE`, connection lost)
   *   means the call as a whole may or may not have committed: callers re-read, as after any
   *   failed `compareAndSet`. An item holding a value the store cannot keep (one JSON cannot
   *   represent, such as a cyclic `data`) rejects the whole call with whatever error the copy or
   *   serialisation raised, and nothing is written, in both the memory and PostgreSQL stores.
   */
  compareAndSetMany?(items: CasItem[]): Promise<CasOutcome[]>;
  /** Cases matching the query, newest `createdAt` first then id, paged by cursor. */
  list(query: ListQueryParsed): Promise<GrantPage>;
  /**
   * Claims up to `limit` cases whose `dueAt <= now` and whose lease is free or expired, ordered by
   * `dueAt` then id, and leases them to `owner` until `now + leaseMs`. A leased case is not returned
   * to another owner until the lease expires or a `compareAndSet` on it commits.
   */
  claimDue(now: Date, limit: number, leaseMs: number, owner: string): Promise<Grant[]>;
  /** The earliest `dueAt` over all cases, or null; lets the sweeper sleep until then. */
  nextDue(): Promise<Date | null>;
  /**
   * The case's audit events in `seq` order, optionally those after `afterSeq`. Events are immutable
   * values: a store may hand out frozen, shared objects (the memory store does), so callers must not
   * mutate them.
   */
  events(caseId: string, afterSeq?: number): Promise<AuditEvent[]>;
  /** Store-wide audit events with `globalSeq > afterGlobalSeq`, in order, at most `limit` (immutable, as for `events`). */
  allEvents(afterGlobalSeq: number, limit: number): Promise<AuditEvent[]>;
  /** The case bound to an idempotency key, if any. */
  findByIdempotencyKey(key: string): Promise<Grant | null>;
  /** Optional: called when a case changes anywhere (another process included). Returns unsubscribe. */
  onChange?(listener: (caseId: string) => void): () => void;
  /** Releases resources; later calls fail with `ERR_CLOSED`. */
  close(): Promise<void>;
}
// #endregion

// #region executor
/** Context for executor calls. */
export interface ExecutorContext<P = Record<string, unknown>> {
  grant: Grant;
  target: Target & { params: P };
  now: Date;
  /**
   * Aborted when the service stops waiting for this call (`executorTimeoutMs`). Pass it to your
   * client (fetch, the AWS SDK's `abortSignal`) so an abandoned call does not go on in the background.
   */
  signal?: AbortSignal;
}

/** What an executor returns from `issue`. */
export interface IssueResult {
  /** Non-secret references stored on the case (key id, session name, assignment id, token id). */
  ref: Record<string, string>;
  /** When the issued access ends by itself. */
  expiresAt: Date;
  /** Secret material, returned once to the caller of `issue` and never stored, logged or emitted. */
  secret?: Record<string, string>;
  /** Fingerprint of the secret (e.g. SHA-256 prefix); computed by the service when omitted. */
  fingerprint?: string;
}

export interface RevokeContext<P = Record<string, unknown>> extends ExecutorContext<P> {
  /**
   * What was issued, when known. Absent when a crash left the case between the intent to issue and
   * the executor's answer: the executor must then find what it may have created from the case and
   * target ids alone (its names are derived from them), and remove it.
   */
  issuance?: Issuance;
  trigger: string;
  reason: string;
}

export interface RevokeResult {
  /** The access was already gone (revoked earlier, expired, deleted by hand): still success. */
  alreadyGone?: boolean;
  /** Non-secret facts worth keeping as evidence. */
  detail?: Record<string, unknown>;
}

/** What `verify` observed at the target. */
export type VerifyResult =
  | { status: 'absent'; method: string; observation: Record<string, unknown> }
  | { status: 'present'; method: string; observation: Record<string, unknown> };

/** A usage record pulled from the target's own logs. */
export interface UsageRecord {
  at: Date;
  sourceIp: string;
  action: string;
  resource?: string;
  outcome?: 'allowed' | 'denied' | 'error';
  actorId?: string;
  detail?: Record<string, unknown>;
}

/**
 * Issues, revokes and verifies access on one kind of system.
 *
 * Contract (checked by `describeExecutorConformance`):
 * - `issue` is idempotent per case + target: calling it again for the same pair must not leave two
 *   live credentials behind (return the same reference, or replace the first).
 * - `revoke` is idempotent; access that is already gone is success (`alreadyGone: true`).
 * - `verify` observes the target itself and reports `absent` only with evidence of absence.
 * - Failures throw `GrantlineError` with code `ERR_EXECUTOR` and `retryable` set honestly; messages
 *   never contain secrets.
 *
 * What the service guarantees in return: a case's targets are issued one at a time in the order of
 * `grant.targets`, and issuance stops at the first failure (the `issue.failed` event names that
 * target; later targets were never called). Every call has a deadline (`executorTimeoutMs`, with
 * `ctx.signal` aborted when it passes). `revoke` may be called without `issuance` (a rollback after
 * a crash or a timeout): find what you may have created from the case and target ids alone.
 */
export interface Executor<P = Record<string, unknown>> {
  /** The `system` value of the targets this executor serves. */
  readonly system: string;
  /** Validates `target.params` at request time. */
  readonly paramsSchema: z.ZodType<P>;
  issue(ctx: ExecutorContext<P>): Promise<IssueResult>;
  revoke(ctx: RevokeContext<P>): Promise<RevokeResult>;
  verify(ctx: RevokeContext<P>): Promise<VerifyResult>;
  usage?(ctx: ExecutorContext<P> & { issuance: Issuance; since: Date }): Promise<UsageRecord[]>;
  /**
   * Optional: lets issued access live until `expiresAt` (an extension). Returns the new expiry and,
   * when the credential had to be replaced, the new secret (returned once to the caller of `extend`).
   * Without it, a case can only be extended up to the expiry of what was issued.
   */
  renew?(
    ctx: ExecutorContext<P> & { issuance: Issuance; expiresAt: Date },
  ): Promise<{ expiresAt: Date; secret?: Record<string, string> }>;
}
// #endregion

/** Source of time. Inject a manual clock in tests. */
export interface Clock {
  now(): Date;
}

/** Structured logger. Grantline never passes secrets to it. */
export interface Logger {
  debug(msg: string, data?: Record<string, unknown>): void;
  info(msg: string, data?: Record<string, unknown>): void;
  warn(msg: string, data?: Record<string, unknown>): void;
  error(msg: string, data?: Record<string, unknown>): void;
}

/** Resolves whether a ticket is still open; a closed ticket completes the case. */
export interface TicketResolver {
  isOpen(ticket: string): Promise<boolean>;
}

/** Proven identity extracted from a signed assertion. */
export interface VerifiedIdentity {
  subject: string;
  issuer: string;
  kid?: string;
  roles: string[];
  /** Teams from the assertion, when the verifier reads them (added to the caller's). */
  teams?: string[];
  claims: Record<string, unknown>;
}

/** Checks signed identity assertions (IdP JWTs for approvers, OIDC tokens for workloads). */
export interface IdentityVerifier {
  verify(assertion: string, purpose: 'approver' | 'workload'): Promise<VerifiedIdentity>;
}

/** States from which a case can still change. */
export type ActiveState = Exclude<GrantState, 'denied' | 'cancelled' | 'expired' | 'verified' | 'failed'>;

/** The system clock. */
export const systemClock: Clock = { now: () => new Date() };

/** A logger that drops everything. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
