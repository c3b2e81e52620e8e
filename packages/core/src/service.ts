import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'eventemitter3';
import { type AuditDraft, canonicalJson, chainEvents, sha256Hex, verifyChain } from './audit.js';
import {
  type Checkpointer,
  type CheckpointSink,
  type SignedCheckpoint,
  createCheckpointer,
} from './checkpoint.js';
import { type ErrorCode, ErrorCodes, GrantlineError, isGrantlineError, parseInput } from './errors.js';
import { type ExecutorOp, checkExecutorResult, salvagedRef } from './executor-result.js';
import { toStorableText } from './json-data.js';
import { isoAt, isoOf } from './iso.js';
import { type EvidenceBundle, createEvidence } from './evidence.js';
import { type GrantlineReport, type ReportInput, buildReport } from './report.js';
import {
  type Command,
  type Effect,
  type FailureInfo,
  type LateIssuanceResult,
  computeDue,
  finalizeGrant,
  isTerminal,
  transition,
} from './lifecycle.js';
import {
  type Actor,
  type ApproveInput,
  type AuditEvent,
  type BreakGlassInput,
  type DecisionInput,
  type ExtendInput,
  type Grant,
  type IssueInput,
  type Issuance,
  type ListQuery,
  type PolicySnapshot,
  type Principal,
  type RequestInput,
  type ReviewInput,
  type RevokeInput,
  type Target,
  type UsageInput,
  approvalSchema,
  approveInputSchema,
  breakGlassInputSchema,
  decisionInputSchema,
  extendInputSchema,
  foldIdentity,
  issueInputSchema,
  listQuerySchema,
  ticketClosedInputSchema,
  principalSchema,
  requestInputSchema,
  reviewInputSchema,
  revokeInputSchema,
  sameIdentity,
  startSweeperOptionsSchema,
  type StartSweeperOptions,
  sweepOptionsSchema,
  type SweepOptions,
  usageInputSchema,
} from './model.js';
import {
  type CompiledPolicy,
  type DecisionReason,
  type PolicyInput,
  breakGlassSnapshot,
  checkUsage,
  compilePolicy,
  evaluateApproval,
  evaluateBreakGlass,
  evaluateRequest,
  policySnapshotHash,
  quorumMet,
} from './policy.js';
import {
  type CasItem,
  type CasOutcome,
  type Clock,
  type Executor,
  type GrantPage,
  type GrantStore,
  type IdentityVerifier,
  type Logger,
  type TicketResolver,
  type VerifiedIdentity,
  silentLogger,
  systemClock,
} from './ports.js';
import type { Signer } from './signer.js';
import type { JSONWebKeySet } from 'jose';
import { z } from 'zod';

/** Every event the service emits, always after the store committed. */
export const GRANTLINE_EVENTS = [
  'grant:requested',
  'grant:approval',
  'grant:approved',
  'grant:denied',
  'grant:cancelled',
  'grant:expired',
  'grant:issued',
  'issuance:failed',
  'grant:used',
  'policy:violation',
  'grant:revoking',
  'grant:revoked',
  'revocation:failed',
  'grant:verified',
  'verification:failed',
  'grant:failed',
  'breakglass:used',
  'review:recorded',
  'review:overdue',
  'grant:extended',
] as const;
export type GrantlineEventName = (typeof GRANTLINE_EVENTS)[number];

/** The one payload object of every event: the committed case plus event-specific facts. */
export interface GrantlineEventPayload {
  caseId: string;
  grant: Grant;
  [key: string]: unknown;
}

export type GrantlineEvents = { [E in GrantlineEventName]: (payload: GrantlineEventPayload) => void };

/** Retry schedule for revocation and verification. */
export interface RetryOptions {
  /** First delay in ms (default 1,000). */
  baseMs: number;
  /** Cap of the exponential delay in ms (default 5 minutes). */
  maxMs: number;
  /** After this many consecutive failures the case is flagged exposed and an event raised (default 8). Retries go on. */
  maxAttempts: number;
}

/** Options for {@link createGrantline}. */
export interface GrantlineOptions {
  /** Where cases and their audit events live (`@grantline/store-memory`, `@grantline/store-postgres`). */
  store: GrantStore;
  /** The policy as data (validated here; `ERR_VALIDATION` with the path of a bad field) or `compilePolicy`'s result. */
  policy: PolicyInput | CompiledPolicy;
  /** One executor per target `system` (two for the same system is `ERR_VALIDATION`). */
  // biome-ignore lint/suspicious/noExplicitAny: executors are heterogeneous in their params type.
  executors: Executor<any>[];
  /** Source of time (default: the system clock). Tests pass a clock they move by hand. */
  clock?: Clock;
  /** Structured logger (default: silent). Grantline never passes it a secret. */
  logger?: Logger;
  /** Verifies signed identity assertions of approvers and workloads (see `createJwtIdentityVerifier`). */
  identity?: IdentityVerifier;
  /** Tells whether a ticket is still open; `pollTickets` (and the background sweeper) complete cases of closed ones. */
  tickets?: TicketResolver;
  /** Case id generator (default: random UUID). */
  ids?: () => string;
  /** Name of this instance, used as the sweeper's lease owner (default: random). */
  instanceId?: string;
  /** A case left in `issuing` longer than this (ms) is rolled back by the sweeper (default 60,000). */
  issuingTimeoutMs?: number;
  /** Lease taken by the sweeper on each claimed case, in ms (default 30,000). */
  leaseMs?: number;
  /**
   * Longest wait for one executor call (`issue`, `revoke`, `verify`, `renew`), in ms (default: half
   * the shorter of `issuingTimeoutMs` and `leaseMs`, i.e. 15,000). A call that does not answer in
   * time is abandoned (its `ctx.signal` aborted) and counts as a retryable failure, so one hung
   * system cannot stall the sweeper or outlive the issuing timeout. Must be below `issuingTimeoutMs`.
   */
  executorTimeoutMs?: number;
  /** Backoff of failed revocations and verifications; each field is optional. */
  retry?: Partial<RetryOptions>;
  /** Random source for jitter, in [0, 1) (default Math.random). */
  random?: () => number;
  /** Signs evidence bundles and checkpoints (see `createJoseSigner`). Required by `evidence` and `checkpoints`. */
  signer?: Signer;
  /**
   * Signed checkpoints of the store-wide audit stream, handed to `sink` in batches by the background
   * sweeper (never on the transition path). Needs `signer`.
   */
  checkpoints?: {
    /** Where signed checkpoints go: outside the database (object storage with retention, another system). */
    sink: CheckpointSink;
    /** Sign after this many changes (default 1,000), and at least half as many as there are cases. */
    everyChanges?: number;
    /** Sign at least this often when anything changed, in ms (default 10,000). */
    intervalMs?: number;
    /** Keys the sink's latest checkpoint may be signed with (default: the signer's key); after a key rotation, include the retired public keys. */
    resumeKeys?: JSONWebKeySet;
    /**
     * Accepts a sink without `latest()` (else `ERR_VALIDATION`): every start then signs from global
     * sequence 0 over the store as it is, ignoring earlier checkpoints (see `CheckpointerOptions.fromScratch`).
     */
    fromScratch?: boolean;
  };
}

// #region results
/** What `issue` returns: the case and, once only, the secrets per target. */
export interface IssueOutcome {
  grant: Grant;
  /** Secret material per target id. Returned once; Grantline keeps no copy. */
  credentials: Record<string, Record<string, string>>;
}

/** Summary of one sweeper pass. */
export interface SweepResult {
  claimed: number;
  expired: number;
  revoked: number;
  verified: number;
  failed: number;
  retried: number;
  rolledBack: number;
  overdueReviews: number;
  errors: number;
  /**
   * Claimed cases this pass did not start because it had run for 80% of `leaseMs` (slow executors,
   * a large `limit`): their leases run out, and another pass (of any instance) takes them instead
   * of two instances working on one case.
   */
  deferred: number;
}
// #endregion

function actorOf(p: Principal): Actor {
  return { id: p.id, kind: p.kind };
}

const SYSTEM: Actor = { id: 'grantline', kind: 'system' };

/**
 * One removal step (a target revoked or verified, or its failure): committed at once on the per-case
 * path, applied in memory on the sweeper's batched path. `applies` says whether the step still
 * holds for a record (after a lost race, the fresh one).
 */
type RemovalStep = (g: Grant, cmd: Command, applies: (cur: Grant) => boolean) => Promise<Grant>;

/** Runs `fn` over `items` with at most `concurrency` calls in flight, in item order. */
async function forEachConcurrently<T>(
  items: readonly T[],
  concurrency: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

/** Counts what one sweep step did to a case (from the record it was claimed as). */
function tally(result: SweepResult, g: Grant, after: Grant): void {
  const before = g.state;
  if (after.state === 'expired' && before !== 'expired') result.expired++;
  if (before === 'issuing' && after.state !== 'issuing') result.rolledBack++;
  if (
    (after.state === 'revoked' || after.state === 'verified') &&
    (before === 'issued' || before === 'revoking')
  )
    result.revoked++;
  if (after.state === 'verified' && before !== 'verified') result.verified++;
  if (after.state === 'failed' && before !== 'failed') result.failed++;
  if (after.retry && after.retry.attempts > (g.retry?.attempts ?? 0)) result.retried++;
  if (after.breakGlass?.overdueRaisedAt && !g.breakGlass?.overdueRaisedAt) result.overdueReviews++;
}

/**
 * The abort signal of one executor call, created only when the executor reads `ctx.signal` (a no-op
 * or synchronous executor never does): an AbortController per call cost more than the call.
 */
class CallSignal {
  private ac: AbortController | undefined;
  private aborted = false;
  private reason: unknown;
  get signal(): AbortSignal {
    if (!this.ac) {
      this.ac = new AbortController();
      if (this.aborted) this.ac.abort(this.reason);
    }
    return this.ac.signal;
  }
  abort(reason: unknown): void {
    this.aborted = true;
    this.reason = reason;
    this.ac?.abort(reason);
  }
}

/**
 * The `expire` command for a case still `requested` or `approved` past its deadline, else undefined:
 * an approval or an issuance after it expires the case (as the sweeper would have) instead.
 */
function lapsedCommand(g: Grant, now: Date): Command | undefined {
  if (g.state !== 'requested' && g.state !== 'approved') return undefined;
  if (!(Date.parse(g.window.requestExpiresAt) <= now.getTime())) return undefined;
  return { type: 'expire', reason: g.state === 'requested' ? 'not approved in time' : 'not issued in time' };
}

function lapsedError(g: Grant, command: string): GrantlineError {
  return new GrantlineError(
    ErrorCodes.INVALID_TRANSITION,
    `case ${g.id} expired at ${g.window.requestExpiresAt} (${g.decision?.reason ?? 'deadline passed'}); it cannot ${command}`,
    { details: { caseId: g.id, state: g.state, command } },
  );
}

/** The shape of an identity verifier's answer (`VerifiedIdentity`); its values are checked where recorded. */
const verifiedIdentitySchema = z.object({
  subject: z.string(),
  issuer: z.string(),
  kid: z.string().optional(),
  roles: z.array(z.string()),
  teams: z.array(z.string()).optional(),
  claims: z.record(z.string(), z.unknown()),
});

/**
 * What an identity verifier proved (roles, teams, claims: a port's answer, and the claims come from a
 * token's payload), checked as the data the case will record: `ERR_IDENTITY` with zod's issues when
 * it is not (text with U+0000 or a lone surrogate, nesting past MAX_JSON_DEPTH, a non-string role).
 */
function recordable<S extends z.ZodType>(
  schema: S,
  value: unknown,
  where: string,
  path: (string | number)[],
): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const first = r.error.issues[0]!;
  throw new GrantlineError(
    ErrorCodes.IDENTITY,
    `the proven identity cannot be recorded: ${first.message} at ${first.path.map(String).join('.') || '(root)'}`,
    { details: { where, path, issues: r.error.issues } },
  );
}

/**
 * A step's instant: the clock, but never before `floor` (a case's last recorded time, an ISO
 * instant). Instances whose clocks differ share one store, and a clock can step back: without the
 * floor a case's later event could carry an earlier time than the one before it, and its honest
 * evidence would fail the time-order check. With it, a case's event times never decrease.
 */
function notBefore(now: Date, floor: string): Date {
  const f = Date.parse(floor);
  return now.getTime() >= f ? now : new Date(f);
}

function failureOf(err: unknown, secrets: string[] = []): FailureInfo {
  const redact = (s: string) =>
    secrets.reduce((acc, x) => (x.length >= 8 ? acc.split(x).join('[redacted]') : acc), s);
  // Recorded in the case and its hashed events: text every store keeps and every hash covers.
  if (isGrantlineError(err))
    return { code: err.code, message: toStorableText(redact(err.message)), retryable: err.retryable };
  const message = err instanceof Error ? err.message : String(err);
  return { code: ErrorCodes.EXECUTOR, message: toStorableText(redact(message)), retryable: true };
}

/**
 * The Grantline service: the case lifecycle over a store, a policy and executors.
 * Create it with {@link createGrantline}.
 */
export class Grantline extends EventEmitter<GrantlineEvents> {
  /** The store given to `createGrantline`. */
  readonly store: GrantStore;
  /** The validated policy and its hash. */
  readonly policy: CompiledPolicy;
  /** The clock in use. */
  readonly clock: Clock;
  /** The logger in use. */
  readonly logger: Logger;
  /** This instance's name (the sweeper's lease owner). */
  readonly instanceId: string;
  private readonly executors = new Map<string, Executor<Record<string, unknown>>>();
  private readonly identity: IdentityVerifier | undefined;
  private readonly tickets: TicketResolver | undefined;
  private readonly ids: () => string;
  private readonly issuingTimeoutMs: number;
  private readonly leaseMs: number;
  private readonly executorTimeoutMs: number;
  private readonly retryOpts: RetryOptions;
  private readonly random: () => number;
  private sweeperHandle: { stop(): Promise<void> } | undefined;
  /**
   * The secret values an `issue` call of this instance holds, by case, while it runs: a rollback it
   * starts (revoke, verify, late removal) records executor errors with them redacted too.
   */
  private readonly secretsInFlight = new Map<string, string[]>();
  private readonly signer: Signer | undefined;
  private readonly checkpointer: Checkpointer | undefined;

  constructor(options: GrantlineOptions) {
    super();
    if (!options || typeof options !== 'object' || !options.store) {
      throw new GrantlineError(ErrorCodes.VALIDATION, 'createGrantline: a store is required', {
        details: { where: 'createGrantline', path: ['store'] },
      });
    }
    this.store = options.store;
    // Only a policy compilePolicy made is taken as compiled; anything else is validated and hashed.
    this.policy = compilePolicy(options.policy);
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.identity = options.identity;
    this.tickets = options.tickets;
    this.ids = options.ids ?? randomUUID;
    this.instanceId = options.instanceId ?? `grantline-${randomUUID().slice(0, 8)}`;
    this.issuingTimeoutMs = options.issuingTimeoutMs ?? 60_000;
    this.leaseMs = options.leaseMs ?? 30_000;
    this.executorTimeoutMs =
      options.executorTimeoutMs ?? Math.floor(Math.min(this.issuingTimeoutMs, this.leaseMs) / 2);
    if (
      !Number.isFinite(this.executorTimeoutMs) ||
      this.executorTimeoutMs <= 0 ||
      this.executorTimeoutMs >= this.issuingTimeoutMs
    ) {
      // An issue call allowed to outlive the issuing timeout races the sweeper's rollback.
      throw new GrantlineError(
        ErrorCodes.VALIDATION,
        `createGrantline: executorTimeoutMs (${this.executorTimeoutMs}) must be positive and below issuingTimeoutMs (${this.issuingTimeoutMs})`,
        {
          details: {
            where: 'createGrantline',
            issues: [
              { path: ['executorTimeoutMs'], code: 'too_big', message: 'must be below issuingTimeoutMs' },
            ],
          },
        },
      );
    }
    this.retryOpts = { baseMs: 1_000, maxMs: 300_000, maxAttempts: 8, ...options.retry };
    // Durations and counts of the options: a negative backoff would retry a failing removal at once,
    // forever; a timeout beyond what a timer holds (2^31-1 ms) fires at once.
    const numeric: [string, unknown, number][] = [
      ['issuingTimeoutMs', this.issuingTimeoutMs, 1],
      ['leaseMs', this.leaseMs, 1],
      ['retry.baseMs', this.retryOpts.baseMs, 1],
      ['retry.maxMs', this.retryOpts.maxMs, 1],
      ['retry.maxAttempts', this.retryOpts.maxAttempts, 1],
    ];
    for (const [name, value, min] of numeric) {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > 2_147_483_647) {
        throw new GrantlineError(
          ErrorCodes.VALIDATION,
          `createGrantline: ${name} must be an integer from ${min} to 2147483647, not ${String(value)}`,
          {
            details: {
              where: 'createGrantline',
              issues: [{ path: name.split('.'), code: 'invalid_value', message: 'out of range' }],
            },
          },
        );
      }
    }
    if (this.retryOpts.maxMs < this.retryOpts.baseMs) {
      throw new GrantlineError(
        ErrorCodes.VALIDATION,
        'createGrantline: retry.maxMs must be at least retry.baseMs',
        {
          details: {
            where: 'createGrantline',
            issues: [{ path: ['retry', 'maxMs'], code: 'too_small', message: 'below retry.baseMs' }],
          },
        },
      );
    }
    this.random = options.random ?? Math.random;
    this.signer = options.signer;
    if (options.checkpoints) {
      if (!options.signer) {
        throw new GrantlineError(ErrorCodes.VALIDATION, 'createGrantline: checkpoints need a signer', {
          details: { where: 'createGrantline', path: ['signer'] },
        });
      }
      this.checkpointer = createCheckpointer({
        store: this.store,
        signer: options.signer,
        clock: this.clock,
        logger: this.logger,
        ...options.checkpoints,
      });
    }
    for (const e of options.executors ?? []) {
      if (this.executors.has(e.system)) {
        throw new GrantlineError(
          ErrorCodes.VALIDATION,
          `createGrantline: two executors for system ${e.system}`,
          {
            details: { where: 'createGrantline', path: ['executors'] },
          },
        );
      }
      this.executors.set(e.system, e as Executor<Record<string, unknown>>);
    }
  }

  // ---------------------------------------------------------------- requests

  /**
   * Opens a case. The policy picks the governing rule; a pre-approved template is approved at once.
   * Idempotent with `idempotencyKey`: the same key and body return the first case.
   * @throws `ERR_VALIDATION` (bad input, bad target params), `ERR_POLICY_DENIED` (with reasons),
   * `ERR_NO_EXECUTOR`, `ERR_IDEMPOTENCY_MISMATCH`, `ERR_IDENTITY`.
   */
  async request(input: RequestInput): Promise<Grant> {
    const req = parseInput(requestInputSchema, input, 'request');
    // Only needed to tell a replay from a different request under the same key.
    const requestHash = req.idempotencyKey
      ? sha256Hex(
          canonicalJson({
            ...req,
            idempotencyKey: undefined,
            subjectAssertion: undefined,
            notBefore: req.notBefore?.toISOString(),
          }),
        )
      : undefined;
    if (req.idempotencyKey) {
      const existing = await this.replay(req.idempotencyKey, requestHash!);
      if (existing) return existing;
    }
    const targets = this.validateTargets(req.targets);
    // No await (and no promise) without an assertion to verify.
    const subject = req.subjectAssertion
      ? await this.proveSubject(req.subject, req.subjectAssertion)
      : req.subject;
    const decision = evaluateRequest(this.policy, { ...req, subject, targets });
    if (!decision.allowed || !decision.value) {
      throw new GrantlineError(
        ErrorCodes.POLICY_DENIED,
        `request denied by policy: ${decision.reasons.map((r) => r.message).join('; ')}`,
        {
          details: { where: 'request', reasons: decision.reasons },
        },
      );
    }
    const snapshot = decision.value;
    // Proven only by the assertion verified above: the input's `kind` and claims are the caller's.
    if (snapshot.requireProvenWorkload && (!req.subjectAssertion || subject.kind !== 'workload')) {
      throw new GrantlineError(
        ErrorCodes.POLICY_DENIED,
        `rule ${snapshot.ruleId} requires the subject to be a workload proven by a signed identity assertion`,
        {
          details: {
            where: 'request',
            reasons: [
              {
                code: 'WORKLOAD_NOT_PROVEN',
                message: 'a workload subject with a subjectAssertion is required',
                path: ['subjectAssertion'],
              },
            ],
          },
        },
      );
    }
    const now = this.clock.now();
    const start = req.notBefore && req.notBefore > now ? req.notBefore : now;
    const ttl = this.ruleTtl(snapshot.ruleId);
    const preApproved = snapshot.template !== undefined;
    const grant: Grant = {
      id: this.ids(),
      version: 1,
      createdAt: isoOf(now),
      updatedAt: isoOf(now),
      state: preApproved ? 'approved' : 'requested',
      requester: req.requester,
      subject,
      justification: req.justification,
      targets,
      window: {
        durationSeconds: req.durationSeconds,
        ...(req.notBefore ? { notBefore: req.notBefore.toISOString() } : {}),
        requestExpiresAt: isoAt(start.getTime() + (preApproved ? this.activationTtl(snapshot) : ttl) * 1000),
        extensions: 0,
      },
      policy: snapshot,
      approvals: [],
      usage: { count: 0 },
      audit: { seq: 0, head: '' },
      dueAt: null,
      ...(req.idempotencyKey ? { idempotencyKey: req.idempotencyKey } : {}),
    };
    const drafts: AuditDraft[] = [
      {
        type: 'requested',
        actor: actorOf(req.requester),
        data: {
          requester: req.requester,
          subject,
          justification: req.justification,
          targets: targets.map(({ id, system, resource, permissions }) => ({
            id,
            system,
            resource,
            ...(permissions ? { permissions } : {}),
          })),
          durationSeconds: req.durationSeconds,
          policy: {
            id: snapshot.policyId,
            version: snapshot.policyVersion,
            hash: snapshot.policyHash,
            rule: snapshot.ruleId,
            snapshotHash: policySnapshotHash(snapshot),
          },
          owner: snapshot.owner,
          operator: snapshot.operator,
          reasons: decision.reasons,
          ...(requestHash ? { requestHash } : {}),
        },
      },
    ];
    if (preApproved) {
      drafts.push({
        type: 'approved',
        actor: { id: `policy:template:${snapshot.template}`, kind: 'system' },
        data: { template: snapshot.template, rule: snapshot.ruleId, preApproved: true },
      });
    }
    const created = await this.createCase(grant, drafts);
    if (created.fresh) {
      this.publish('grant:requested', created.grant, {
        requesterId: req.requester.id,
        subjectId: subject.id,
      });
      if (preApproved) this.publish('grant:approved', created.grant, { template: snapshot.template });
    } else if ((created.requestHash ?? requestHash) !== requestHash) {
      throw this.idempotencyMismatch(req.idempotencyKey!);
    }
    return created.grant;
  }

  /**
   * Opens a break-glass case: approved at once for an allowed role, capped in duration, with a
   * mandatory review due within the policy's deadline. An overdue review blocks the actor's next one.
   * @throws `ERR_VALIDATION`, `ERR_BREAK_GLASS_REFUSED` (with reasons), `ERR_NO_EXECUTOR`.
   */
  async breakGlass(input: BreakGlassInput): Promise<Grant> {
    const req = parseInput(breakGlassInputSchema, input, 'breakGlass');
    // In its folded form, so that every break-glass case of one actor is stored under one id: the
    // store finds cases by exact requester id, and the overdue-review block must find them all.
    if (req.requester.id !== foldIdentity(req.requester.id)) {
      throw new GrantlineError(
        ErrorCodes.VALIDATION,
        `breakGlass: requester id ${JSON.stringify(req.requester.id)} must be written in its canonical form ${JSON.stringify(foldIdentity(req.requester.id))} (foldIdentity: NFKC, full case folding)`,
        {
          details: {
            where: 'breakGlass',
            issues: [{ path: ['requester', 'id'], code: 'custom', message: 'not in canonical form' }],
          },
        },
      );
    }
    const requestHash = req.idempotencyKey
      ? sha256Hex(canonicalJson({ ...req, idempotencyKey: undefined, breakGlass: true }))
      : undefined;
    if (req.idempotencyKey) {
      const existing = await this.replay(req.idempotencyKey, requestHash!);
      if (existing) return existing;
    }
    const targets = this.validateTargets(req.targets);
    const overdue = await this.overdueReviewsOf(req.requester.id);
    const decision = evaluateBreakGlass(this.policy, req.requester, req.durationSeconds, overdue);
    const bg = this.policy.policy.breakGlass;
    if (!decision.allowed || !bg) {
      throw new GrantlineError(
        ErrorCodes.BREAK_GLASS_REFUSED,
        `break-glass refused: ${decision.reasons.map((r) => r.message).join('; ')}`,
        {
          details: { where: 'breakGlass', reasons: decision.reasons },
        },
      );
    }
    const snapshot = breakGlassSnapshot(this.policy);
    const now = this.clock.now();
    const at = now.toISOString();
    const grant: Grant = {
      id: this.ids(),
      version: 1,
      createdAt: at,
      updatedAt: at,
      state: 'approved',
      requester: req.requester,
      subject: req.subject,
      justification: req.justification,
      targets,
      window: {
        durationSeconds: req.durationSeconds,
        requestExpiresAt: new Date(now.getTime() + this.activationTtl(snapshot) * 1000).toISOString(),
        extensions: 0,
      },
      policy: snapshot,
      approvals: [],
      breakGlass: {
        actor: req.requester,
        reason: req.justification.reason,
        at,
        reviewDueAt: new Date(now.getTime() + bg.reviewWithinSeconds * 1000).toISOString(),
        reviewerRoles: bg.reviewerRoles,
      },
      usage: { count: 0 },
      audit: { seq: 0, head: '' },
      dueAt: null,
      ...(req.idempotencyKey ? { idempotencyKey: req.idempotencyKey } : {}),
    };
    const created = await this.createCase(grant, [
      {
        type: 'requested',
        actor: actorOf(req.requester),
        data: {
          requester: req.requester,
          subject: req.subject,
          justification: req.justification,
          targets: targets.map(({ id, system, resource, permissions }) => ({
            id,
            system,
            resource,
            ...(permissions ? { permissions } : {}),
          })),
          durationSeconds: req.durationSeconds,
          policy: {
            id: this.policy.policy.id,
            version: this.policy.policy.version,
            hash: this.policy.hash,
            rule: 'break-glass',
            snapshotHash: policySnapshotHash(snapshot),
          },
          owner: this.policy.policy.owner,
          operator: bg.operator,
          ...(requestHash ? { requestHash } : {}),
        },
      },
      {
        type: 'breakglass.used',
        actor: actorOf(req.requester),
        data: {
          reason: req.justification.reason,
          reviewDueAt: grant.breakGlass!.reviewDueAt,
          reasons: decision.reasons,
        },
      },
    ]);
    if (created.fresh) {
      this.publish('breakglass:used', created.grant, {
        actorId: req.requester.id,
        reviewDueAt: grant.breakGlass!.reviewDueAt,
      });
    } else if ((created.requestHash ?? requestHash) !== requestHash) {
      throw this.idempotencyMismatch(req.idempotencyKey!);
    }
    return created.grant;
  }

  // ---------------------------------------------------------------- decisions

  /**
   * Records an approval. The case becomes `approved` when the quorum (count, qualifying roles,
   * distinct roles) is met. Concurrent approvals are serialised by compare-and-set and retried.
   * @throws `ERR_APPROVAL_REFUSED` with reasons (self-approval, operator team, role, duplicate),
   * `ERR_INVALID_TRANSITION` (also when the case's deadline has passed: it is expired then, as the
   * sweeper would have), `ERR_NOT_FOUND`, `ERR_VALIDATION`, `ERR_IDENTITY`.
   */
  async approve(id: string, input: ApproveInput): Promise<Grant> {
    this.checkId(id, 'approve');
    const a = parseInput(approveInputSchema, input, 'approve');
    const { approver, proof } = a.assertion
      ? await this.proveApprover(a.approver, a.assertion, 'approve', ['assertion'])
      : { approver: a.approver, proof: undefined };
    // Awaited, not returned: an async function resolving with a promise takes two more turns.
    const out = await this.mutate(id, (g, now) => {
      const lapsed = lapsedCommand(g, now);
      if (lapsed) return lapsed;
      const d = evaluateApproval(g, approver, a.role, proof !== undefined);
      if (!d.allowed || !d.value) {
        throw new GrantlineError(
          ErrorCodes.APPROVAL_REFUSED,
          `approval refused: ${d.reasons.map((r) => r.message).join('; ')}`,
          {
            details: { where: 'approve', caseId: id, reasons: d.reasons },
          },
        );
      }
      return {
        type: 'approve',
        approval: {
          approver,
          role: d.value.role,
          at: isoOf(now),
          ...(a.reason ? { reason: a.reason } : {}),
          ...(proof ? { proof } : {}),
        },
        // From the approval, or from `notBefore` when the case may not be issued before it.
        activateBy: isoAt(
          Math.max(now.getTime(), g.window.notBefore ? Date.parse(g.window.notBefore) : 0) +
            this.activationTtl(g.policy) * 1000,
        ),
      };
    });
    if (out.state === 'expired') throw lapsedError(out, 'approve');
    return out;
  }

  /**
   * Denies a pending case. Only someone who could approve it may deny it.
   * @throws `ERR_APPROVAL_REFUSED`, `ERR_INVALID_TRANSITION`, `ERR_NOT_FOUND`, `ERR_VALIDATION`.
   */
  async deny(id: string, input: DecisionInput): Promise<Grant> {
    this.checkId(id, 'deny');
    const d = parseInput(decisionInputSchema, input, 'deny');
    return this.mutate(id, (g) => {
      if (!d.actor.roles.some((r) => g.policy.approvals.roles.includes(r))) {
        throw new GrantlineError(
          ErrorCodes.APPROVAL_REFUSED,
          `${d.actor.id} holds no role that may decide this case`,
          {
            details: {
              where: 'deny',
              caseId: id,
              reasons: [
                { code: 'ROLE_NOT_QUALIFIED', message: 'no qualifying role', path: ['actor', 'roles'] },
              ],
            },
          },
        );
      }
      return { type: 'deny', actor: actorOf(d.actor), reason: d.reason };
    });
  }

  /**
   * Withdraws a case before issuance. The requester, the subject or a qualifying approver may cancel.
   * @throws `ERR_APPROVAL_REFUSED`, `ERR_INVALID_TRANSITION`, `ERR_NOT_FOUND`, `ERR_VALIDATION`.
   */
  async cancel(id: string, input: DecisionInput): Promise<Grant> {
    this.checkId(id, 'cancel');
    const d = parseInput(decisionInputSchema, input, 'cancel');
    return this.mutate(id, (g) => {
      const party = d.actor.id === g.requester.id || d.actor.id === g.subject.id;
      if (!party && !d.actor.roles.some((r) => g.policy.approvals.roles.includes(r))) {
        throw new GrantlineError(ErrorCodes.APPROVAL_REFUSED, `${d.actor.id} may not cancel this case`, {
          details: {
            where: 'cancel',
            caseId: id,
            reasons: [
              { code: 'NOT_A_PARTY', message: 'not requester, subject or approver', path: ['actor'] },
            ],
          },
        });
      }
      return { type: 'cancel', actor: actorOf(d.actor), reason: d.reason };
    });
  }

  // ---------------------------------------------------------------- issuance

  /**
   * Issues access for every target of an approved case, all or nothing. The intent (`issuing`) is
   * committed before any executor call; on a partial failure the issued targets are revoked and
   * verified and the case ends `failed`. Secrets are returned here once and kept nowhere.
   * An issue call that answers after `executorTimeoutMs` has failed the case already; what it made
   * is then revoked and verified with its refs and recorded as `target.issued-late`.
   * @throws `ERR_INVALID_TRANSITION` (not approved, before `notBefore`, or past the case's deadline,
   * which expires it), `ERR_ISSUANCE_FAILED`,
   * `ERR_APPROVAL_REFUSED` (actor is neither requester nor subject), `ERR_NOT_FOUND`.
   */
  async issue(id: string, input: IssueInput = {}): Promise<IssueOutcome> {
    this.checkId(id, 'issue');
    const opts = parseInput(issueInputSchema, input, 'issue');
    let started = await this.mutate(id, (g, now) => {
      const lapsed = lapsedCommand(g, now);
      if (lapsed) return lapsed;
      if (opts.actor && opts.actor.id !== g.requester.id && opts.actor.id !== g.subject.id) {
        throw new GrantlineError(
          ErrorCodes.APPROVAL_REFUSED,
          `${opts.actor.id} is neither the requester nor the subject`,
          {
            details: {
              where: 'issue',
              caseId: id,
              reasons: [
                { code: 'NOT_A_PARTY', message: 'issue is for the requester or subject', path: ['actor'] },
              ],
            },
          },
        );
      }
      if (g.window.notBefore && Date.parse(g.window.notBefore) > now.getTime()) {
        throw new GrantlineError(
          ErrorCodes.INVALID_TRANSITION,
          `case ${id} may not be issued before ${g.window.notBefore}`,
          {
            details: { caseId: id, state: g.state, command: 'beginIssue' },
          },
        );
      }
      return {
        type: 'beginIssue',
        actor: opts.actor ? actorOf(opts.actor) : actorOf(g.subject),
        staleAt: isoAt(now.getTime() + this.issuingTimeoutMs),
      };
    });
    if (started.state === 'expired') throw lapsedError(started, 'issue');
    const actor = opts.actor ? actorOf(opts.actor) : actorOf(started.subject);
    // This instance's own clock, not floored: the credentials' lifetime must not grow by another
    // instance's clock running fast. The steps that record them are floored at it instead.
    const now = this.clock.now();
    const issuedFloor = isoOf(now);
    const durationMs = Math.min(started.window.durationSeconds, started.policy.maxDurationSeconds) * 1000;
    const expiresAt = new Date(now.getTime() + durationMs);
    const credentials: Record<string, Record<string, string>> = {};
    const issued: {
      targetId: string;
      issuance: { ref: Record<string, string>; fingerprint?: string; issuedAt: string; expiresAt: string };
    }[] = [];
    const secretValues: string[] = [];
    // Filled as targets are issued: a rollback or late removal this call (or this instance's sweeper,
    // meanwhile) runs records executor errors with these redacted. Removed when the call ends.
    this.secretsInFlight.set(id, secretValues);
    let failure: { targetId: string; error: FailureInfo } | undefined;
    // Settled once this call has recorded its outcome: an issuance that answers late waits for it.
    let settle!: () => void;
    const recorded = new Promise<void>((r) => {
      settle = r;
    });
    const window = {
      ...started,
      // Object.assign, not spread: keys added to a spread copy take V8's slow path.
      window: Object.assign({}, started.window, {
        expiresAt: isoOf(expiresAt),
        issuedAt: isoOf(now),
      }),
    };
    for (const t of started.targets) {
      try {
        const exec = this.executorFor(t.system);
        const res = await this.callExecutor(
          t.system,
          'issue',
          (s) =>
            exec.issue({
              grant: window,
              target: { ...t, params: t.params ?? {} },
              now,
              get signal() {
                return s.signal;
              },
            }),
          // Issued after the deadline, so after this call recorded the target as failed: removed
          // with its refs once this call has recorded its outcome (the case has left `issuing`).
          (late) => {
            const issuance = {
              ref: late.ref,
              ...(late.secret || late.fingerprint
                ? {
                    fingerprint: late.fingerprint ?? sha256Hex(canonicalJson(late.secret ?? {})).slice(0, 32),
                  }
                : {}),
              issuedAt: isoOf(now),
              expiresAt: late.expiresAt.toISOString(),
            };
            const lateSecrets = [...secretValues, ...Object.values(late.secret ?? {})];
            void recorded
              .then(() =>
                this.removeLateIssuance(id, [{ targetId: t.id, issuance }], actor, undefined, lateSecrets),
              )
              .catch((e: unknown) =>
                this.logger.error('grantline: an issuance that answered late could not be removed', {
                  caseId: id,
                  targetId: t.id,
                  error: failureOf(e, lateSecrets),
                }),
              );
          },
        );
        const secret = res.secret ?? {};
        credentials[t.id] = secret;
        secretValues.push(...Object.values(secret));
        issued.push({
          targetId: t.id,
          issuance: {
            ref: res.ref,
            ...(Object.keys(secret).length > 0 || res.fingerprint
              ? { fingerprint: res.fingerprint ?? sha256Hex(canonicalJson(secret)).slice(0, 32) }
              : {}),
            issuedAt: isoOf(now),
            expiresAt: res.expiresAt.toISOString(), // the executor's value: its own method, as ever
          },
        });
      } catch (err) {
        failure = { targetId: t.id, error: failureOf(err, secretValues) };
        // An answer that could not be recorded, but whose refs name what was made: recorded with
        // them, so the rollback removes it by its refs (a system may not find it without).
        const ref = salvagedRef(err);
        if (ref) {
          issued.push({
            targetId: t.id,
            issuance: { ref, issuedAt: isoOf(now), expiresAt: isoOf(expiresAt) },
          });
        }
        this.logger.warn('grantline: issuance failed', {
          caseId: id,
          targetId: t.id,
          code: failure.error.code,
        });
        break;
      }
    }
    try {
      if (failure) {
        const f = failure;
        started = await this.mutate(
          id,
          (_, at) => ({
            type: 'issueFailed',
            actor,
            issued,
            failedTargetId: f.targetId,
            error: f.error,
            resumeAt: this.resumeAt(at),
          }),
          started,
          issuedFloor,
        );
        const after = await this.advance(started).catch(() => started);
        throw new GrantlineError(
          ErrorCodes.ISSUANCE_FAILED,
          `issuance of case ${id} failed at target ${f.targetId}: ${f.error.message}; rolled back`,
          {
            retryable: false,
            details: { caseId: id, targetId: f.targetId, error: f.error, state: after.state },
          },
        );
      }
      let done: Grant;
      try {
        done = await this.mutate(
          id,
          (_, at) => ({
            type: 'issued',
            actor,
            issued,
            expiresAt: isoOf(expiresAt),
            resumeAt: this.resumeAt(at),
          }),
          started,
          issuedFloor,
        );
      } catch (err) {
        // The case moved on while we were issuing (another instance's sweeper rolled it back after
        // `issuingTimeoutMs`): its rollback may have run before these credentials existed, so remove
        // them now, with their issuance refs, and record it. Nothing issued late may stay behind.
        const after = await this.removeLateIssuance(id, issued, actor).catch((e: unknown) => {
          this.logger.error('grantline: late issuance could not be recorded', {
            caseId: id,
            error: failureOf(e, secretValues),
          });
          return undefined;
        });
        throw new GrantlineError(
          ErrorCodes.ISSUANCE_FAILED,
          `case ${id} changed during issuance and was rolled back; what was issued late was revoked`,
          {
            details: { caseId: id, ...(after ? { state: after.state } : {}) },
            cause: isGrantlineError(err) ? err.toJSON() : undefined,
          },
        );
      }
      if (done.state === 'revoking') {
        // The break-glass review was rejected during issuance: what was issued is being revoked.
        const after = await this.advance(done).catch(() => done);
        throw new GrantlineError(
          ErrorCodes.ISSUANCE_FAILED,
          `the break-glass review of case ${id} was rejected during issuance; what was issued is revoked`,
          { retryable: false, details: { caseId: id, state: after.state } },
        );
      }
      return { grant: done, credentials };
    } finally {
      if (this.secretsInFlight.get(id) === secretValues) this.secretsInFlight.delete(id);
      settle();
    }
  }

  // ---------------------------------------------------------------- use and revocation

  /**
   * Records one use of the access (who, from where, what action). Usage outside the rule's
   * constraints (source CIDRs, actions, time window) revokes the case with trigger `violation`.
   * Use after revocation is recorded and flagged `afterRevocation`.
   */
  async recordUsage(id: string, input: UsageInput): Promise<Grant> {
    this.checkId(id, 'recordUsage');
    const u = parseInput(usageInputSchema, input, 'recordUsage');
    const g = await this.mutate(id, (g, now) => {
      if (u.targetId && !g.targets.some((t) => t.id === u.targetId)) {
        throw new GrantlineError(
          ErrorCodes.VALIDATION,
          `recordUsage: case ${id} has no target ${u.targetId}`,
          {
            details: {
              where: 'recordUsage',
              issues: [{ path: ['targetId'], code: 'custom', message: 'unknown target' }],
            },
          },
        );
      }
      // The use's own time is the step's instant, unless that was floored past this instance's clock
      // (at the case's last time, which an instance running fast may have set ahead): the
      // time-window check reads it.
      const local = this.clock.now();
      const at = u.at ?? (local.getTime() < now.getTime() ? local : now);
      const check =
        g.state === 'issued'
          ? checkUsage(g.policy.constraints, { sourceIp: u.sourceIp, action: u.action, at })
          : { reasons: [] as DecisionReason[] };
      const actor = u.actor ?? g.subject;
      return {
        type: 'recordUsage',
        actor: actorOf(actor),
        usage: {
          at: at.toISOString(),
          sourceIp: u.sourceIp,
          action: u.action,
          outcome: u.outcome,
          source: u.source,
          usedBy: actor.id,
          ...(u.targetId ? { targetId: u.targetId } : {}),
          ...(u.resource ? { resource: u.resource } : {}),
          ...(u.detail ? { detail: u.detail } : {}),
        },
        violation: check.reasons,
        resumeAt: this.resumeAt(now),
      };
    });
    return g.state === 'revoking' ? this.advance(g) : g;
  }

  /**
   * Reports a policy violation found by a detector; revokes the case with trigger `violation`.
   */
  async reportViolation(id: string, input: { detector: string; reason: string }): Promise<Grant> {
    this.checkId(id, 'reportViolation');
    const d = parseInput(
      decisionInputSchema,
      { actor: { id: input?.detector, kind: 'workload' }, reason: input?.reason },
      'reportViolation',
    );
    const g = await this.mutate(id, (_g, now) => ({
      type: 'requestRevoke',
      trigger: 'violation',
      actor: { id: d.actor.id, kind: 'system' },
      reason: d.reason,
      resumeAt: this.resumeAt(now),
    }));
    return this.advance(g);
  }

  /** The task is done: revoke now with trigger `completion`, then verify. */
  async complete(id: string, input: RevokeInput): Promise<Grant> {
    // async (a rejection, never a synchronous throw, even called detached); awaited: one turn, not two.
    return await this.revokeWith(id, input, 'completion', 'complete');
  }

  /** Revokes now with trigger `manual`, then verifies. Revoke is idempotent per case. */
  async revoke(id: string, input: RevokeInput): Promise<Grant> {
    return await this.revokeWith(id, input, 'manual', 'revoke');
  }

  /** Runs verification of the case's removed targets now (the sweeper also does it). */
  async verify(id: string): Promise<Grant> {
    this.checkId(id, 'verify');
    const g = await this.mustGet(id);
    if (g.state !== 'revoked' && g.state !== 'revoking') {
      if (g.state === 'verified' || g.state === 'failed') return g;
      throw new GrantlineError(
        ErrorCodes.INVALID_TRANSITION,
        `case ${id} in state ${g.state} has nothing to verify`,
        {
          details: { caseId: id, state: g.state, command: 'verify' },
        },
      );
    }
    return this.advance(g);
  }

  /**
   * Records the mandatory review of a break-glass case. A rejected review ends the access: live access
   * is revoked with trigger `review`, a case not yet issued is cancelled, and one being issued is
   * revoked the moment issuance completes (`issue` then throws `ERR_ISSUANCE_FAILED`). The reviewer
   * must be a human holding a reviewer role, not the actor or subject, and not in the break-glass
   * operator team (reasons `SELF_REVIEW`, `REVIEWER_NOT_HUMAN`, `OPERATOR_TEAM_REVIEW`,
   * `ROLE_NOT_QUALIFIED`; `ERR_APPROVAL_REFUSED`).
   */
  async review(id: string, input: ReviewInput): Promise<Grant> {
    this.checkId(id, 'review');
    const r = parseInput(reviewInputSchema, input, 'review');
    const g = await this.mutate(id, (g, now) => {
      const roles = g.breakGlass?.reviewerRoles ?? [];
      const role = r.role ?? r.reviewer.roles.find((x) => roles.includes(x));
      const reasons: DecisionReason[] = [];
      if (
        g.breakGlass &&
        (sameIdentity(r.reviewer.id, g.breakGlass.actor.id) || sameIdentity(r.reviewer.id, g.subject.id))
      ) {
        reasons.push({
          code: 'SELF_REVIEW',
          message: 'the break-glass actor or subject may not review it',
          path: ['reviewer', 'id'],
        });
      }
      if (r.reviewer.kind !== 'human') {
        reasons.push({
          code: 'REVIEWER_NOT_HUMAN',
          message: 'a break-glass review must come from a human principal',
          path: ['reviewer', 'kind'],
        });
      }
      if (g.breakGlass && r.reviewer.teams.some((team) => sameIdentity(team, g.policy.operator))) {
        reasons.push({
          code: 'OPERATOR_TEAM_REVIEW',
          message: `${r.reviewer.id} is in the break-glass operator team ${g.policy.operator}, which executes and may not review`,
          path: ['reviewer', 'teams'],
        });
      }
      if (!role || !roles.includes(role) || !r.reviewer.roles.includes(role)) {
        reasons.push({
          code: 'ROLE_NOT_QUALIFIED',
          message: `reviewer needs one of ${roles.join(', ')}`,
          path: ['reviewer', 'roles'],
        });
      }
      if (reasons.length > 0) {
        throw new GrantlineError(
          ErrorCodes.APPROVAL_REFUSED,
          `review refused: ${reasons.map((x) => x.message).join('; ')}`,
          {
            details: { where: 'review', caseId: id, reasons },
          },
        );
      }
      return {
        type: 'review',
        review: {
          reviewer: r.reviewer,
          role: role!,
          outcome: r.outcome,
          at: isoOf(now),
          ...(r.notes ? { notes: r.notes } : {}),
        },
        resumeAt: this.resumeAt(now),
      };
    });
    return g.state === 'revoking' ? this.advance(g) : g;
  }

  /**
   * Extends live access within the rule's cap: never past `maxDuration` from first issuance, at most
   * `maxExtensions` times, and with its own approvals when the rule requires them (same quorum and
   * the same refusals as the case: no self-approval, no operator team; an approval may carry an
   * `assertion` proving the approver, required where the rule requires proven approvers). Executors
   * that can renew are asked to; otherwise the extension may not outlive what was issued. Recorded
   * as its own event.
   * @throws `ERR_POLICY_DENIED` (reasons `EXTENSION_NOT_ALLOWED`, `EXTENSION_LIMIT`,
   * `EXTENSION_PAST_MAX`, `EXECUTOR_CANNOT_RENEW`), `ERR_APPROVAL_REFUSED`, `ERR_INVALID_TRANSITION`
   * (not issued, or its window has ended: access the sweeper is about to revoke is not revived),
   * `ERR_EXECUTOR` (a renewal failed: nothing recorded, secrets renewed so far redacted from the
   * message, `retryable` as the failure), `ERR_CONFLICT` (retryable: the case changed while it was
   * extended, e.g. by a racing extension; nothing was recorded, and what was renewed ends with the
   * case at its recorded expiry).
   */
  async extend(id: string, input: ExtendInput): Promise<IssueOutcome> {
    this.checkId(id, 'extend');
    const x = parseInput(extendInputSchema, input, 'extend');
    const g = await this.mustGet(id);
    const deny = (code: string, message: string, path: (string | number)[] = ['seconds']): never => {
      throw new GrantlineError(ErrorCodes.POLICY_DENIED, `extension refused: ${message}`, {
        details: { where: 'extend', caseId: id, reasons: [{ code, message, path }] },
      });
    };
    if (g.state !== 'issued') {
      throw new GrantlineError(
        ErrorCodes.INVALID_TRANSITION,
        `cannot extend case ${id} in state ${g.state}`,
        {
          details: { caseId: id, state: g.state, command: 'extend' },
        },
      );
    }
    if (x.actor.id !== g.requester.id && x.actor.id !== g.subject.id) {
      throw new GrantlineError(
        ErrorCodes.APPROVAL_REFUSED,
        `${x.actor.id} is neither the requester nor the subject`,
        {
          details: {
            where: 'extend',
            caseId: id,
            reasons: [
              { code: 'NOT_A_PARTY', message: 'extend is for the requester or subject', path: ['actor'] },
            ],
          },
        },
      );
    }
    // Issued, but its window has ended (the sweeper has not revoked it yet): that access is over and
    // may not be brought back by an extension. Checked again when the extension is recorded. This
    // instance's clock: a step's instant is floored at the case's last time, which an instance
    // running fast may have set past the window.
    const windowEnded = (cur: Grant, meanwhile: string) =>
      cur.state === 'issued' && Date.parse(cur.window.expiresAt!) <= this.clock.now().getTime()
        ? new GrantlineError(
            ErrorCodes.INVALID_TRANSITION,
            `cannot extend case ${id}: its window ended at ${cur.window.expiresAt}${meanwhile}`,
            { details: { caseId: id, state: cur.state, command: 'extend', expiresAt: cur.window.expiresAt } },
          )
        : undefined;
    const ended = windowEnded(g, '');
    if (ended) throw ended;
    const rule = g.policy.extension;
    if (!rule) deny('EXTENSION_NOT_ALLOWED', `rule ${g.policy.ruleId} allows no extensions`);
    if (g.window.extensions >= rule!.maxExtensions)
      deny('EXTENSION_LIMIT', `at most ${rule!.maxExtensions} extension(s)`);
    const to = new Date(Date.parse(g.window.expiresAt!) + x.seconds * 1000);
    if (to.getTime() > Date.parse(g.window.hardLimitAt!)) {
      deny(
        'EXTENSION_PAST_MAX',
        `would end ${to.toISOString()}, past ${g.window.hardLimitAt} (maxDuration from first issuance)`,
      );
    }
    const approvals: Grant['approvals'] = [];
    if (rule!.requiresApproval) {
      for (const [i, a] of x.approvals.entries()) {
        const { approver, proof } = await this.proveApprover(a.approver, a.assertion, 'extend', [
          'approvals',
          i,
          'assertion',
        ]);
        const d = evaluateApproval({ ...g, approvals }, approver, a.role, proof !== undefined);
        if (!d.allowed || !d.value) {
          throw new GrantlineError(
            ErrorCodes.APPROVAL_REFUSED,
            `extension approval ${i} refused: ${d.reasons.map((r) => r.message).join('; ')}`,
            {
              details: {
                where: 'extend',
                caseId: id,
                reasons: d.reasons.map((r) => ({ ...r, path: ['approvals', i, ...(r.path ?? [])] })),
              },
            },
          );
        }
        approvals.push({
          approver,
          role: d.value.role,
          at: this.clock.now().toISOString(),
          ...(a.reason ? { reason: a.reason } : {}),
          ...(proof ? { proof } : {}),
        });
      }
      if (!quorumMet(g.policy, approvals, { extension: true })) {
        throw new GrantlineError(
          ErrorCodes.APPROVAL_REFUSED,
          `extension needs ${Math.max(1, g.policy.approvals.count)} approval(s) under rule ${g.policy.ruleId}`,
          {
            details: {
              where: 'extend',
              caseId: id,
              reasons: [
                { code: 'QUORUM_NOT_MET', message: 'not enough qualifying approvals', path: ['approvals'] },
              ],
            },
          },
        );
      }
    }
    for (const t of g.targets) {
      const exec = this.executorFor(t.system);
      if (!exec.renew && t.issuance && Date.parse(t.issuance.expiresAt) < to.getTime()) {
        deny(
          'EXECUTOR_CANNOT_RENEW',
          `the ${t.system} executor cannot renew target ${t.id}, issued until ${t.issuance.expiresAt}`,
        );
      }
    }
    // Renew first, then record: if recording fails the sweeper still revokes at the old expiry.
    const credentials: Record<string, Record<string, string>> = {};
    const secretValues: string[] = [];
    const renewed: { targetId: string; expiresAt: string; fingerprint?: string }[] = [];
    for (const t of g.targets) {
      const exec = this.executorFor(t.system);
      if (!exec.renew || !t.issuance) continue;
      const issuance = t.issuance;
      let res: Awaited<ReturnType<NonNullable<typeof exec.renew>>>;
      try {
        res = await this.callExecutor(t.system, 'renew', (s) =>
          exec.renew!({
            grant: g,
            target: { ...t, params: t.params ?? {} },
            now: this.clock.now(),
            issuance,
            expiresAt: to,
            get signal() {
              return s.signal;
            },
          }),
        );
      } catch (err) {
        // Typed, as every failure, and without the secrets renewed so far for other targets (an
        // executor error may quote them); nothing is recorded, what was renewed ends with the case.
        const error = failureOf(err, secretValues);
        throw new GrantlineError(
          error.code as ErrorCode,
          `extension of case ${id} failed at target ${t.id}: ${error.message}; nothing was recorded`,
          { retryable: error.retryable, details: { where: 'extend', caseId: id, targetId: t.id, error } },
        );
      }
      if (res.secret) {
        credentials[t.id] = res.secret;
        secretValues.push(...Object.values(res.secret));
      }
      renewed.push({
        targetId: t.id,
        expiresAt: res.expiresAt.toISOString(),
        ...(res.secret ? { fingerprint: sha256Hex(canonicalJson(res.secret)).slice(0, 32) } : {}),
      });
    }
    const done = await this.mutate(
      id,
      (cur) => {
        // Everything above was decided on `g`: a racing extension, a revocation or an expiry that
        // committed since makes it stale (its count, its base expiry). What was renewed then stays
        // unrecorded and ends with the case at the recorded expiry (executors remove by case and
        // target; the token executor deny-lists up to the hard limit, past any renewed token).
        // The window may have ended while the approvals were proven and the targets renewed.
        const endedMeanwhile = windowEnded(cur, ', while it was being extended; nothing was recorded');
        if (endedMeanwhile) throw endedMeanwhile;
        if (
          cur.state !== 'issued' ||
          cur.window.extensions !== g.window.extensions ||
          cur.window.expiresAt !== g.window.expiresAt
        ) {
          throw new GrantlineError(
            ErrorCodes.CONFLICT,
            `case ${id} changed while it was being extended (now ${cur.state}, ${cur.window.extensions} extension(s)); nothing was recorded`,
            // A retry can succeed only while the case is still issued (another extension won).
            {
              retryable: cur.state === 'issued',
              details: { caseId: id, state: cur.state, command: 'extend' },
            },
          );
        }
        return {
          type: 'extend',
          actor: actorOf(x.actor),
          expiresAt: to.toISOString(),
          reason: x.reason,
          approvals,
          renewed,
        };
      },
      g,
    );
    return { grant: done, credentials };
  }

  /**
   * A ticket was closed (pushed by a ticketing webhook): every issued case tied to it is completed,
   * revoked and verified. Returns the cases it completed.
   */
  async ticketClosed(input: { ticket: string; actor?: Principal }): Promise<Grant[]> {
    const t = parseInput(ticketClosedInputSchema, input, 'ticketClosed');
    const out: Grant[] = [];
    for await (const g of this.issuedCases()) {
      if (g.justification.ticket !== t.ticket) continue;
      out.push(await this.completeForTicket(g, t.ticket, t.actor));
    }
    return out;
  }

  /**
   * Asks the configured `TicketResolver` about the ticket of every issued case (once per ticket) and
   * completes the cases whose ticket is closed. `startSweeper` runs it every `ticketPollMs`.
   */
  async pollTickets(): Promise<Grant[]> {
    if (!this.tickets) return [];
    const open = new Map<string, boolean>();
    const out: Grant[] = [];
    for await (const g of this.issuedCases()) {
      const ticket = g.justification.ticket;
      if (!ticket) continue;
      if (!open.has(ticket)) {
        try {
          open.set(ticket, await this.tickets.isOpen(ticket));
        } catch (err) {
          this.logger.warn('grantline: ticket lookup failed', { ticket, error: failureOf(err) });
          open.set(ticket, true); // unknown is not closed: never revoke on a lookup failure
        }
      }
      if (open.get(ticket) === false) out.push(await this.completeForTicket(g, ticket));
    }
    return out;
  }

  private async *issuedCases(): AsyncGenerator<Grant> {
    let cursor: string | undefined;
    do {
      const page = await this.store.list({ states: ['issued'], limit: 500, ...(cursor ? { cursor } : {}) });
      yield* page.grants;
      cursor = page.nextCursor;
    } while (cursor);
  }

  private async completeForTicket(g: Grant, ticket: string, actor?: Principal): Promise<Grant> {
    const next = await this.mutate(
      g.id,
      (cur, now) =>
        cur.state === 'issued'
          ? {
              type: 'requestRevoke',
              trigger: 'completion',
              actor: actor ? actorOf(actor) : { id: 'ticket-resolver', kind: 'system' },
              reason: `ticket ${ticket} closed`,
              resumeAt: this.resumeAt(now),
            }
          : null,
      g,
    );
    return next.state === 'revoking' ? this.advance(next) : next;
  }

  // ---------------------------------------------------------------- reads

  /** The case, or throws `ERR_NOT_FOUND`. */
  async get(id: string): Promise<Grant> {
    this.checkId(id, 'get');
    return this.mustGet(id);
  }

  /** Cases by state, subject or requester, newest first, paged with `cursor`. */
  async list(query: ListQuery = {}): Promise<GrantPage> {
    return this.store.list(parseInput(listQuerySchema, query, 'list'));
  }

  /** The case's audit events in order. */
  async history(id: string): Promise<AuditEvent[]> {
    this.checkId(id, 'history');
    await this.mustGet(id);
    return this.store.events(id);
  }

  /** Re-verifies the case's hash chain from the store and that the record points at its head. */
  async checkChain(id: string): Promise<ReturnType<typeof verifyChain>> {
    const g = await this.get(id);
    const events = await this.store.events(id);
    const result = verifyChain(id, events);
    if (result.valid && (g.audit.seq !== events.length || g.audit.head !== result.head)) {
      return {
        valid: false,
        head: result.head,
        problems: [
          {
            code: 'CHAIN_SEQ_GAP',
            seq: events.length,
            message: `case record points at seq ${g.audit.seq}, chain has ${events.length}`,
          },
        ],
      };
    }
    return result;
  }

  /**
   * The signed evidence bundle of a case (see `verifyEvidence`): record, every audit event, chain head,
   * policy snapshot, signer `kid`. Holds no secret.
   * @throws `ERR_EVIDENCE` when no signer is configured, `ERR_NOT_FOUND`, `ERR_VALIDATION`.
   */
  async evidence(id: string): Promise<EvidenceBundle> {
    this.checkId(id, 'evidence');
    if (!this.signer) {
      throw new GrantlineError(
        ErrorCodes.EVIDENCE,
        'evidence needs a signer: pass `signer` to createGrantline',
        { details: { where: 'evidence', path: ['signer'] } },
      );
    }
    // Record and events are two reads; a transition committing in between appends events the record
    // read first does not reflect yet. Cut the bundle at the record's head when the chain contains that
    // head (a consistent snapshot); any other disagreement is tampering and goes into the bundle as is.
    const grant = await this.mustGet(id);
    let events = await this.store.events(id);
    const head = events[grant.audit.seq - 1];
    if (events.length > grant.audit.seq && head?.seq === grant.audit.seq && head.hash === grant.audit.head) {
      events = events.slice(0, grant.audit.seq);
    }
    return createEvidence({ grant, events, signer: this.signer, now: this.clock.now(), policy: this.policy });
  }

  /**
   * Signs a checkpoint of everything appended since the last one now (the sweeper also does, in batches).
   * @throws `ERR_EVIDENCE` when checkpoints are not configured or the stream does not extend the last one.
   */
  async checkpoint(): Promise<SignedCheckpoint | null> {
    if (!this.checkpointer) {
      throw new GrantlineError(
        ErrorCodes.EVIDENCE,
        'checkpoints are not configured: pass `checkpoints` and `signer` to createGrantline',
        {
          details: { where: 'checkpoint', path: ['checkpoints'] },
        },
      );
    }
    return this.checkpointer.run();
  }

  /**
   * Period report over the store: lingering access, pending or failed revocations, unverified removals,
   * break-glass without review, approval and revocation latency, mapped to the controls they evidence.
   * Render with `renderReportMarkdown`. @throws `ERR_VALIDATION` for a bad period.
   */
  async report(period: Omit<ReportInput, 'now'>): Promise<GrantlineReport> {
    return buildReport(this.store, { ...period, now: this.clock.now() });
  }

  // ---------------------------------------------------------------- sweeper

  /**
   * One sweeper pass: claims due cases under a lease and moves each one step on (expire pending
   * requests, revoke at expiry, retry failed revocations, verify removals, roll back stale issuing,
   * raise overdue reviews). Safe to run in every instance at once. Options: `limit` at most this
   * many due cases per pass (default 500, at most 10,000); `concurrency` cases worked on at once
   * (default 8). @throws `ERR_VALIDATION` for a bad option (nothing is claimed).
   */
  async sweep(options: SweepOptions = {}): Promise<SweepResult> {
    const { limit, concurrency } = parseInput(sweepOptionsSchema, options, 'sweep');
    const result: SweepResult = {
      claimed: 0,
      expired: 0,
      revoked: 0,
      verified: 0,
      failed: 0,
      retried: 0,
      rolledBack: 0,
      overdueReviews: 0,
      errors: 0,
      deferred: 0,
    };
    const claimedAt = this.clock.now();
    // Start no case once most of the claim's lease is spent: after it, another instance may claim it.
    const cutoff = claimedAt.getTime() + this.leaseMs * 0.8;
    const late = () => this.clock.now().getTime() >= cutoff;
    const claimed = await this.store.claimDue(claimedAt, limit, this.leaseMs, this.instanceId);
    result.claimed = claimed.length;
    // With a store that commits many cases per round trip, the common steps (an expired window, a
    // revocation due) are committed in groups; everything else goes case by case, in due order.
    if (this.store.compareAndSetMany) {
      await this.sweepBatched(claimed, result, concurrency, cutoff);
      return result;
    }
    await forEachConcurrently(claimed, concurrency, async (g) => {
      if (late()) result.deferred++;
      else await this.advanceInPass(result, g, g);
    });
    return result;
  }

  /**
   * Runs the sweeper in the background: it sleeps until the next due time (capped by `maxSleepMs`),
   * wakes early when the store reports a change, and stops on `stop()` or the abort signal. Options:
   * `signal` stops the sweeper when aborted (as `stop()` does); `maxSleepMs` the longest sleep
   * between passes (default 30,000); `minSleepMs` the shortest (default 10); `limit` due cases per
   * pass (default 500; a full pass is followed at once by another); `ticketPollMs` how often to ask
   * the TicketResolver about open cases' tickets (default 60,000). @throws `ERR_VALIDATION` for a
   * bad option (nothing is started).
   */
  startSweeper(input: StartSweeperOptions = {}): { stop(): Promise<void> } {
    const options = parseInput(startSweeperOptionsSchema, input, 'startSweeper');
    if (this.sweeperHandle) return this.sweeperHandle;
    this.checkpointer?.start();
    const maxSleep = options.maxSleepMs ?? 30_000;
    const minSleep = options.minSleepMs ?? 10;
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    let wake: (() => void) | undefined;
    // A change seen while sweeping (no sleep to cut short) must not be lost: remember it.
    let dirty = false;
    let nextTicketPoll = 0;
    const poke = () => {
      dirty = true;
      wake?.();
    };
    const unsubscribe = this.store.onChange?.(poke);
    const loop = (async () => {
      while (!stopped) {
        dirty = false;
        if (this.tickets && Date.now() >= nextTicketPoll) {
          nextTicketPoll = Date.now() + (options.ticketPollMs ?? 60_000);
          await this.pollTickets().catch((err) =>
            this.logger.error('grantline: ticket poll failed', { error: failureOf(err) }),
          );
        }
        let swept: SweepResult | undefined;
        try {
          swept = await this.sweep({ limit: options.limit ?? 500 });
        } catch (err) {
          this.logger.error('grantline: sweep failed', { error: failureOf(err) });
        }
        if (stopped) break;
        let delay = this.tickets
          ? Math.min(maxSleep, Math.max(minSleep, nextTicketPoll - Date.now()))
          : maxSleep;
        if (swept && swept.claimed >= (options.limit ?? 500)) delay = 0;
        else {
          try {
            const due = await this.store.nextDue();
            if (due) delay = Math.min(delay, Math.max(minSleep, due.getTime() - this.clock.now().getTime()));
          } catch {
            delay = Math.min(maxSleep, 1_000);
          }
        }
        if (dirty) delay = Math.min(delay, minSleep);
        await new Promise<void>((resolve) => {
          wake = resolve;
          timer = setTimeout(resolve, delay);
        });
        clearTimeout(timer);
        wake = undefined;
      }
    })();
    const stop = async () => {
      stopped = true;
      poke();
      unsubscribe?.();
      await loop;
      this.sweeperHandle = undefined;
    };
    options.signal?.addEventListener('abort', () => void stop(), { once: true });
    this.sweeperHandle = { stop };
    return this.sweeperHandle;
  }

  /** Stops the background sweeper, if any. The store is the host's to close. */
  async close(): Promise<void> {
    await this.sweeperHandle?.stop();
    await this.checkpointer?.stop();
  }

  // ---------------------------------------------------------------- internals

  /**
   * The sweeper's pass for stores with `compareAndSetMany`: the same steps and records as
   * {@link advance}, in fewer round trips.
   * 1. Every claimed case whose window ended gets its revocation intent (`revoke.requested`)
   *    committed, all in one call, before any executor is called for it. The intent's `resumeAt`
   *    (when other sweepers may take the case over) is a full `leaseMs` after the last moment this
   *    pass may start a case, so a case started in this pass keeps at least that long to itself.
   * 2. Then the claimed cases are taken in due order, `concurrency` at once. A revoking case's
   *    targets are revoked and verified (re-revoked when verification keeps finding them, as in
   *    `advance`), and the outcome (`target.revoked` … `verified`, or the failure and its retry) is
   *    committed as ONE version of the case, each event keeping the time of its step. Commits are
   *    grouped: whatever finished while the previous group was in flight goes in the next call.
   *    Any other case (a request or issuance deadline, a break-glass review, a verification retry,
   *    late issuance) is advanced case by case, in its turn.
   * 3. A case whose grouped commit lost a race is re-read and advanced case by case.
   * A crash between the executor calls and the commit leaves the case `revoking` with its intent
   * recorded: the next sweeper repeats the (idempotent) removal.
   */
  private async sweepBatched(
    claimed: Grant[],
    result: SweepResult,
    concurrency: number,
    cutoff: number,
  ): Promise<void> {
    const t = this.clock.now().getTime();
    const late = () => this.clock.now().getTime() >= cutoff;
    type Item = { claimed: Grant; current: Grant; grouped: boolean; skip?: boolean };
    const items: Item[] = claimed.map((g) => ({
      claimed: g,
      current: g,
      grouped:
        !(g.breakGlass && !g.breakGlass.review && !g.breakGlass.overdueRaisedAt) &&
        ((g.state === 'issued' && !!g.window.expiresAt && Date.parse(g.window.expiresAt) <= t) ||
          (g.state === 'revoking' && (!g.retry?.nextAt || Date.parse(g.retry.nextAt) <= t))),
    }));
    const commit = this.groupCommitter();
    // 1. Intents, all at once (they join one call).
    const resumeAt = new Date(cutoff + this.leaseMs).toISOString();
    await Promise.all(
      items
        .filter((it) => it.grouped && it.claimed.state === 'issued')
        .map(async (it) => {
          const intent: Command = {
            type: 'requestRevoke',
            trigger: 'expiry',
            actor: SYSTEM,
            reason: 'window ended',
            resumeAt,
          };
          try {
            const now = notBefore(this.clock.now(), it.claimed.updatedAt);
            const r = transition(it.claimed, intent, now);
            const stored = await commit(it.claimed, r.next, [{ at: now, drafts: r.events }], r.effects, [
              intent.type,
            ]);
            if (stored) it.current = stored;
            else it.grouped = false; // lost a race: advance() re-reads and decides again
          } catch (err) {
            it.skip = true; // still leased: claimed again when the lease ends
            this.sweepStepFailed(result, it.claimed, err);
          }
        }),
    );
    // 2. In due order: grouped removals, and everything else case by case.
    const commits: Promise<void>[] = [];
    const lostRaces: Item[] = [];
    await forEachConcurrently(items, concurrency, async (it) => {
      if (it.skip) return;
      if (late()) {
        result.deferred++; // due again when its lease (or recorded intent) ends
        return;
      }
      if (!it.grouped) return this.advanceInPass(result, it.claimed, it.current);
      const base = it.current;
      try {
        const removal = await this.removeInMemory(base);
        if (removal.types.length === 0) return tally(result, it.claimed, base);
        // Not awaited: the worker goes on to its next case while the group commits.
        commits.push(
          commit(base, removal.next, removal.steps, removal.effects, removal.types).then(
            (stored) => {
              if (stored) tally(result, it.claimed, stored);
              else lostRaces.push(it);
            },
            (err) => this.sweepStepFailed(result, base, err),
          ),
        );
      } catch (err) {
        this.sweepStepFailed(result, base, err);
      }
    });
    await Promise.all(commits);
    // 3. Someone else moved these on while their removal ran: decide again on what is stored now.
    for (const it of lostRaces) {
      if (late()) {
        result.deferred++;
        continue;
      }
      try {
        const fresh = await this.store.get(it.claimed.id);
        if (fresh) await this.advanceInPass(result, it.claimed, fresh);
      } catch (err) {
        this.sweepStepFailed(result, it.claimed, err);
      }
    }
  }

  /**
   * A revoking case's removal as `advance` does it (revoke, verify, and revoke again when
   * verification gave up on a target), with every step applied in memory: the steps (each with its
   * time and events), effects and command types to commit as one version.
   */
  private async removeInMemory(grant: Grant): Promise<{
    next: Grant;
    steps: { at: Date; drafts: AuditDraft[] }[];
    effects: Effect[];
    types: string[];
  }> {
    const steps: { at: Date; drafts: AuditDraft[] }[] = [];
    const effects: Effect[] = [];
    const types: string[] = [];
    let last = grant.updatedAt; // the time of the case's last step (recorded or in memory)
    const local: RemovalStep = async (g, cmd, applies) => {
      if (!applies(g)) return g;
      const now = notBefore(this.clock.now(), last);
      last = isoOf(now);
      const r = transition(g, cmd, now);
      steps.push({ at: now, drafts: r.events });
      effects.push(...r.effects);
      types.push(cmd.type);
      return r.next;
    };
    let g = grant;
    for (let step = 0; step < 4 * g.targets.length + 6; step++) {
      const applied = types.length;
      if (g.state === 'revoking') {
        g = await this.revokeTargets(g, local);
        if (g.state === 'revoking' || types.length === applied) break;
      } else if (g.state === 'revoked') {
        g = await this.verifyTargets(g, local);
        if (g.state === 'revoked' || types.length === applied) break;
      } else break;
    }
    return { next: g, steps, effects, types };
  }

  /** One case advanced case by case inside a sweeper pass; a failure is counted and logged. */
  private async advanceInPass(result: SweepResult, claimed: Grant, current: Grant): Promise<void> {
    try {
      tally(result, claimed, await this.advance(current, true));
    } catch (err) {
      this.sweepStepFailed(result, claimed, err);
    }
  }

  private sweepStepFailed(result: SweepResult, g: Grant, err: unknown): void {
    result.errors++;
    this.logger.error('grantline: sweep step failed', { caseId: g.id, error: failureOf(err) });
  }

  /**
   * Group commit over `compareAndSetMany`: a submitted step waits for the call in flight (if any) and
   * goes in the next one with everything else submitted meanwhile (at most 1,000 cases a call).
   * Resolves with the stored case (its effects published), or null when the case moved on.
   */
  private groupCommitter() {
    type Pending = {
      item: CasItem;
      done: (outcome: CasOutcome) => void;
      fail: (err: unknown) => void;
    };
    const pending: Pending[] = [];
    let flushing = false;
    const flush = async () => {
      await Promise.resolve(); // let every submit of this tick join the first call
      while (pending.length > 0) {
        const batch = pending.splice(0, 1_000);
        try {
          const outcomes = await this.store.compareAndSetMany!(batch.map((p) => p.item));
          for (const [i, p] of batch.entries()) p.done(outcomes[i]!);
        } catch (err) {
          for (const p of batch) p.fail(err);
        }
      }
      flushing = false;
    };
    return async (
      current: Grant,
      next: Grant,
      steps: { at: Date; drafts: AuditDraft[] }[],
      effects: Effect[],
      commands: string[],
    ): Promise<Grant | null> => {
      const latest = steps.length > 0 ? isoOf(steps[steps.length - 1]!.at) : current.updatedAt;
      const now = notBefore(this.clock.now(), latest);
      const { record, events } = this.commitRecord(current, next, steps, now);
      const outcome = await new Promise<CasOutcome>((done, fail) => {
        pending.push({ item: { grant: record, expectedVersion: current.version, events }, done, fail });
        if (!flushing) {
          flushing = true;
          void flush();
        }
      });
      if (!outcome.ok) {
        if (outcome.error.code === ErrorCodes.CONFLICT) return null;
        throw outcome.error;
      }
      this.logger.debug('grantline: transition', {
        caseId: current.id,
        command: commands.join('+'),
        from: current.state,
        to: outcome.grant.state,
        version: outcome.grant.version,
      });
      this.publishEffects(outcome.grant, effects);
      return outcome.grant;
    };
  }

  /**
   * Moves a case one or more steps on from whatever is due now. Used by the sweeper and inline
   * after a revocation is requested. Never throws for executor failures: they are recorded and
   * scheduled for retry.
   */
  private async advance(grant: Grant, fromSweeper = false): Promise<Grant> {
    let g = grant;
    const now = () => this.clock.now();
    for (let step = 0; step < 4 * g.targets.length + 6; step++) {
      const t = now().getTime();
      if (
        g.breakGlass &&
        !g.breakGlass.review &&
        !g.breakGlass.overdueRaisedAt &&
        Date.parse(g.breakGlass.reviewDueAt) <= t
      ) {
        g = await this.mutate(
          g.id,
          (cur) =>
            cur.breakGlass?.review || cur.breakGlass?.overdueRaisedAt ? null : { type: 'reviewOverdue' },
          g,
        );
        continue;
      }
      if (lapsedCommand(g, new Date(t))) {
        g = await this.mutate(g.id, (cur) => lapsedCommand(cur, new Date(t)) ?? null, g);
        continue;
      }
      if (
        g.state === 'failed' &&
        g.revocation?.pendingLate?.length &&
        (!fromSweeper || !g.retry?.nextAt || Date.parse(g.retry.nextAt) <= t)
      ) {
        // A credential issued after the case failed, not yet removed: revoke and verify it again.
        const pending = g.revocation.pendingLate;
        const late = g.targets
          .filter((x) => pending.includes(x.id) && x.issuance)
          .map((x) => ({ targetId: x.id, issuance: x.issuance! }));
        g = await this.removeLateIssuance(g.id, late, SYSTEM, g);
        break;
      }
      if (g.state === 'issuing' && fromSweeper && g.retry?.nextAt && Date.parse(g.retry.nextAt) <= t) {
        g = await this.mutate(
          g.id,
          (cur, now) =>
            cur.state === 'issuing'
              ? {
                  type: 'requestRevoke',
                  trigger: 'rollback',
                  actor: SYSTEM,
                  reason: 'issuance did not complete in time',
                  resumeAt: this.resumeAt(now),
                }
              : null,
          g,
        );
        continue;
      }
      if (g.state === 'issued' && g.window.expiresAt && Date.parse(g.window.expiresAt) <= t) {
        g = await this.mutate(
          g.id,
          (cur, now) =>
            cur.state === 'issued'
              ? {
                  type: 'requestRevoke',
                  trigger: 'expiry',
                  actor: SYSTEM,
                  reason: 'window ended',
                  resumeAt: this.resumeAt(now),
                }
              : null,
          g,
        );
        continue;
      }
      if (
        g.state === 'revoking' &&
        (!fromSweeper || !g.retry?.nextAt || Date.parse(g.retry.nextAt) <= t || step > 0)
      ) {
        const before = g.version;
        g = await this.revokeTargets(g);
        if (g.state === 'revoking' || g.version === before) break;
        continue;
      }
      if (
        g.state === 'revoked' &&
        (!fromSweeper || !g.retry?.nextAt || Date.parse(g.retry.nextAt) <= t || step > 0)
      ) {
        const before = g.version;
        g = await this.verifyTargets(g);
        if (g.state === 'revoked' || g.version === before) break;
        continue;
      }
      break;
    }
    return g;
  }

  /** Commits one removal step now (the per-case path): `applies` re-checks it on a fresh record. */
  private readonly commitStep: RemovalStep = (g, cmd, applies) =>
    this.mutate(g.id, (cur) => (applies(cur) ? cmd : null), g);

  private async revokeTargets(grant: Grant, step: RemovalStep = this.commitStep): Promise<Grant> {
    let g = grant;
    for (const t of grant.targets.filter((x) => !x.revocation?.confirmedAt)) {
      let cmd: Command;
      try {
        const exec = this.executorFor(t.system);
        const res = await this.callExecutor(t.system, 'revoke', (s) =>
          exec.revoke(this.removalContext(g, t, s)),
        );
        cmd = {
          type: 'targetRevoked',
          targetId: t.id,
          alreadyGone: res.alreadyGone ?? false,
          ...(res.detail ? { detail: res.detail } : {}),
          resumeAt: this.resumeAt(),
        };
      } catch (err) {
        const error = failureOf(err, this.secretsInFlight.get(g.id));
        const attempts = (t.revocation?.attempts ?? 0) + 1;
        this.logger.warn('grantline: revocation attempt failed', {
          caseId: g.id,
          targetId: t.id,
          attempts,
          code: error.code,
        });
        cmd = {
          type: 'targetRevokeFailed',
          targetId: t.id,
          error,
          nextAt: this.backoff(attempts),
          exhausted: !error.retryable || attempts >= this.retryOpts.maxAttempts,
        };
      }
      // After a lost race the fresh record decides: a target someone else confirmed is skipped.
      g = await step(
        g,
        cmd,
        (cur) => cur.state === 'revoking' && !cur.targets.find((x) => x.id === t.id)?.revocation?.confirmedAt,
      );
      if (g.state !== 'revoking') break;
    }
    return g;
  }

  private async verifyTargets(grant: Grant, step: RemovalStep = this.commitStep): Promise<Grant> {
    let g = grant;
    for (const t of grant.targets.filter((x) => x.verification?.result !== 'absent')) {
      let cmd: Command;
      const attempts = (t.verification?.attempts ?? 0) + 1;
      try {
        const exec = this.executorFor(t.system);
        const res = await this.callExecutor(t.system, 'verify', (s) =>
          exec.verify(this.removalContext(g, t, s)),
        );
        cmd =
          res.status === 'absent'
            ? {
                type: 'targetVerified',
                targetId: t.id,
                verifier: `executor:${t.system}@${this.instanceId}`,
                method: res.method,
                observation: res.observation,
              }
            : {
                type: 'targetVerifyFailed',
                targetId: t.id,
                present: true,
                method: res.method,
                observation: res.observation,
                nextAt: this.backoff(attempts),
                exhausted: attempts >= this.retryOpts.maxAttempts,
              };
      } catch (err) {
        const error = failureOf(err, this.secretsInFlight.get(g.id));
        cmd = {
          type: 'targetVerifyFailed',
          targetId: t.id,
          present: false,
          error,
          nextAt: this.backoff(attempts),
          exhausted: !error.retryable || attempts >= this.retryOpts.maxAttempts,
        };
      }
      g = await step(
        g,
        cmd,
        (cur) =>
          cur.state === 'revoked' &&
          cur.targets.find((x) => x.id === t.id)?.verification?.result !== 'absent',
      );
      if (g.state !== 'revoked') break;
    }
    return g;
  }

  /**
   * Runs one executor call with the `executorTimeoutMs` deadline. On timeout the call's signal is
   * aborted and a retryable `ERR_EXECUTOR` is thrown; the caller records it like any failure.
   */
  private async callExecutor<T>(
    system: string,
    op: ExecutorOp,
    call: (s: CallSignal) => Promise<T>,
    late?: (answer: T) => void,
  ): Promise<T> {
    const s = new CallSignal();
    let timedOut = false;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        timedOut = true;
        const err = new GrantlineError(
          ErrorCodes.EXECUTOR,
          `executor ${system}: ${op} did not answer within ${this.executorTimeoutMs} ms`,
          { retryable: true, details: { system, op, timeoutMs: this.executorTimeoutMs } },
        );
        s.abort(err);
        reject(err);
      }, this.executorTimeoutMs);
      timer.unref?.();
      let pending: Promise<T>;
      try {
        pending = Promise.resolve(call(s));
      } catch (err) {
        clearTimeout(timer);
        reject(err);
        return;
      }
      pending.then(
        (v) => {
          clearTimeout(timer);
          let answer: T;
          try {
            answer = checkExecutorResult(system, op, v);
          } catch (err) {
            if (timedOut)
              this.logger.error('grantline: a late executor answer cannot be recorded', { system, op });
            reject(err);
            return;
          }
          // An answer after the deadline: the caller has moved on, but what it did is real (an
          // aborted request does not undo what the server already did). `late` deals with it.
          if (timedOut) late?.(answer);
          else resolve(answer);
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err);
        },
      );
    });
  }

  /**
   * `issue` found the case rolled back under it (see `issue`): revokes and verifies each target it
   * issued, with the issuance refs, and records the outcome. A removal that fails puts the target
   * back into the case's revocation when the case is still revoking (the sweeper finishes it); on a
   * case that already ended `failed` it flags the case exposed and raises `revocation:failed`.
   */
  private async removeLateIssuance(
    id: string,
    issued: { targetId: string; issuance: Issuance }[],
    actor: Actor,
    known?: Grant,
    secrets: string[] | undefined = this.secretsInFlight.get(id),
  ): Promise<Grant> {
    const current = known ?? (await this.mustGet(id));
    const results: LateIssuanceResult[] = [];
    for (const { targetId, issuance } of issued) {
      const t = current.targets.find((x) => x.id === targetId)!;
      const why = { trigger: 'rollback', reason: 'issued after the case was rolled back' };
      try {
        const exec = this.executorFor(t.system);
        await this.callExecutor(t.system, 'revoke', (s) =>
          exec.revoke(this.removalContext(current, t, s, why, issuance)),
        );
        const v = await this.callExecutor(t.system, 'verify', (s) =>
          exec.verify(this.removalContext(current, t, s, why, issuance)),
        );
        results.push({
          targetId,
          issuance,
          removed: v.status === 'absent',
          method: v.method,
          observation: v.observation,
        });
      } catch (err) {
        results.push({ targetId, issuance, removed: false, error: failureOf(err, secrets) });
      }
    }
    const attempts = (current.state === 'failed' ? (current.retry?.attempts ?? 0) : 0) + 1;
    return this.mutate(
      id,
      (cur, now) =>
        // The sweeper's retry of a failed case's late removal: skip when someone finished it already.
        known && !cur.revocation?.pendingLate?.length
          ? null
          : {
              type: 'lateIssuance',
              actor,
              results,
              resumeAt: this.resumeAt(now),
              nextAt: this.backoff(attempts, now),
            },
      known,
    );
  }

  /**
   * The context of a `revoke` or `verify` call for one target: by default of a case being revoked
   * (its trigger and reason, the target's issuance); a late issuance passes its own.
   */
  private removalContext(
    g: Grant,
    t: Grant['targets'][number],
    s: CallSignal,
    why: { trigger: string; reason: string } = g.revocation!,
    issuance: Issuance | undefined = t.issuance,
  ) {
    const ctx = {
      grant: g,
      target: { ...t, params: t.params ?? {} },
      now: this.clock.now(),
      trigger: why.trigger,
      reason: why.reason,
      get signal() {
        return s.signal;
      },
    };
    return issuance ? Object.assign(ctx, { issuance }) : ctx;
  }

  /** When the sweeper takes over a step this process is about to do inline (now + lease). */
  private resumeAt(now: Date = this.clock.now()): string {
    return isoAt(now.getTime() + this.leaseMs);
  }

  /** Capped exponential backoff with jitter ("equal jitter": half fixed, half random). */
  private backoff(attempts: number, now: Date = this.clock.now()): string {
    const exp = Math.min(this.retryOpts.maxMs, this.retryOpts.baseMs * 2 ** Math.min(30, attempts - 1));
    const delay = exp / 2 + this.random() * (exp / 2);
    return isoAt(now.getTime() + delay);
  }

  private async revokeWith(
    id: string,
    input: RevokeInput,
    trigger: 'completion' | 'manual',
    where: string,
  ): Promise<Grant> {
    this.checkId(id, where);
    const r = parseInput(revokeInputSchema, input, where);
    const current = this.found(id, await this.store.get(id));
    // Idempotent: a case already on its way out (or out) is returned as it is, after a nudge.
    if (current.state === 'revoking' || current.state === 'revoked') return await this.advance(current);
    if (current.state === 'verified' || current.state === 'failed') return current;
    const g = await this.mutate(
      id,
      (g, now) => {
        if (trigger === 'completion' && r.actor.id !== g.requester.id && r.actor.id !== g.subject.id) {
          throw new GrantlineError(ErrorCodes.APPROVAL_REFUSED, `${r.actor.id} may not complete this case`, {
            details: {
              where,
              caseId: id,
              reasons: [
                {
                  code: 'NOT_A_PARTY',
                  message: 'only the requester or subject completes a task',
                  path: ['actor'],
                },
              ],
            },
          });
        }
        return {
          type: 'requestRevoke',
          trigger,
          actor: actorOf(r.actor),
          reason: r.reason,
          resumeAt: this.resumeAt(now),
        };
      },
      current,
    );
    return await this.advance(g);
  }

  /**
   * Loads the case (or uses `known`), derives the command and commits it with compare-and-set; on a
   * lost race it reloads and re-derives (the command may then be refused), up to 16 times. `decide`
   * gets the step's instant, the one its events and record carry.
   */
  private async mutate(
    id: string,
    decide: (g: Grant, now: Date) => Command | null,
    known?: Grant,
    /** An instant the step may not precede either (e.g. the time credentials were issued at). */
    floor?: string,
  ): Promise<Grant> {
    let current = known ?? this.found(id, await this.store.get(id));
    for (let attempt = 0; ; attempt++) {
      let now = notBefore(this.clock.now(), current.updatedAt);
      if (floor !== undefined) now = notBefore(now, floor);
      const command = decide(current, now);
      if (command === null) return current; // nothing left to do on the current record
      const { next, events: drafts, effects } = transition(current, command, now);
      const { record, events } = this.commitRecord(current, next, [{ at: now, drafts }], now);
      // The store's promise awaited here, in no helper of its own: one async layer less per step.
      let stored: Grant | null;
      try {
        stored = await this.store.compareAndSet(record, current.version, events);
      } catch (err) {
        if (!isGrantlineError(err) || err.code !== ErrorCodes.CONFLICT) throw err;
        stored = null; // lost the race
      }
      if (stored) {
        // The default logger drops everything: build no log record for it on every transition.
        if (this.logger !== silentLogger)
          this.logger.debug('grantline: transition', {
            caseId: id,
            command: command.type,
            from: current.state,
            to: stored.state,
            version: stored.version,
          });
        this.publishEffects(stored, effects);
        return stored;
      }
      if (attempt >= 15) {
        throw new GrantlineError(
          ErrorCodes.CONFLICT,
          `case ${id} kept changing; gave up after ${attempt + 1} attempts`,
          {
            retryable: true,
            details: { caseId: id },
          },
        );
      }
      current = this.found(id, await this.store.get(id));
    }
  }

  /**
   * The record and chained events that commit `next` (one version after `current`); each step's
   * events carry that step's time (several steps commit together on the sweeper's grouped path).
   */
  private commitRecord(
    current: Grant,
    next: Grant,
    steps: { at: Date; drafts: AuditDraft[] }[],
    now: Date,
  ): { record: Grant; events: AuditEvent[] } {
    const events: AuditEvent[] = [];
    let prev = { seq: current.audit.seq, hash: current.audit.head } as AuditEvent;
    for (const step of steps) {
      const chained = chainEvents(current.id, isoOf(step.at), prev, step.drafts);
      for (const e of chained) events.push(e);
      if (chained.length > 0) prev = chained[chained.length - 1]!;
    }
    const last = events[events.length - 1];
    const audit = last ? { seq: last.seq, head: last.hash } : current.audit;
    const record = finalizeGrant(next, current.version, now, audit); // one copy of the record, not two
    return { record, events };
  }

  private async createCase(
    grant: Grant,
    drafts: AuditDraft[],
  ): Promise<{ grant: Grant; fresh: boolean; requestHash?: string }> {
    const events = chainEvents(grant.id, grant.createdAt, undefined, drafts);
    const last = events[events.length - 1]!;
    const record = { ...grant, audit: { seq: last.seq, head: last.hash } };
    record.dueAt = computeDue(record); // a new case: updatedAt is its createdAt
    const res = await this.store.create(record, events);
    if (res.created) return { grant: res.grant, fresh: true };
    const first = (await this.store.events(res.grant.id))[0];
    return { grant: res.grant, fresh: false, requestHash: first?.data.requestHash as string | undefined };
  }

  private async replay(key: string, requestHash: string): Promise<Grant | null> {
    const existing = await this.store.findByIdempotencyKey(key);
    if (!existing) return null;
    const first = (await this.store.events(existing.id))[0];
    if (first?.data.requestHash !== requestHash) throw this.idempotencyMismatch(key);
    return existing;
  }

  private idempotencyMismatch(key: string): GrantlineError {
    return new GrantlineError(
      ErrorCodes.IDEMPOTENCY_MISMATCH,
      `idempotency key ${key} was used for a different request`,
      {
        details: { where: 'request', path: ['idempotencyKey'] },
      },
    );
  }

  private validateTargets(targets: Target[]): Target[] {
    return targets.map((t, i) => {
      const exec = this.executors.get(t.system);
      if (!exec) {
        throw new GrantlineError(ErrorCodes.NO_EXECUTOR, `no executor is registered for system ${t.system}`, {
          details: { where: 'request', path: ['targets', i, 'system'] },
        });
      }
      const parsed = exec.paramsSchema.safeParse(t.params ?? {});
      if (!parsed.success) {
        const issues = parsed.error.issues.map((iss) => ({
          ...iss,
          path: ['targets', i, 'params', ...iss.path],
        }));
        throw new GrantlineError(
          ErrorCodes.VALIDATION,
          `request: invalid params for target ${t.id} at ${issues[0]?.path.join('.')}: ${issues[0]?.message}`,
          {
            details: {
              where: 'request',
              issues: issues.map((x) => ({
                path: x.path.map((p) => (typeof p === 'symbol' ? String(p) : p)),
                code: x.code,
                message: x.message,
              })),
            },
          },
        );
      }
      return Object.assign({}, t, { params: parsed.data as Record<string, unknown> });
    });
  }

  private executorFor(system: string): Executor<Record<string, unknown>> {
    const exec = this.executors.get(system);
    if (!exec)
      throw new GrantlineError(ErrorCodes.NO_EXECUTOR, `no executor is registered for system ${system}`, {
        retryable: true,
        details: { system },
      });
    return exec;
  }

  /**
   * An approver as proven by `assertion` (roles and claims from the verified identity, and the
   * proof to record), or as given when there is none.
   * @throws `ERR_IDENTITY` when the assertion does not verify or proves someone else.
   */
  private async proveApprover(
    approver: Principal,
    assertion: string | undefined,
    where: string,
    path: (string | number)[],
  ): Promise<{ approver: Principal; proof?: { issuer: string; subject: string; kid?: string } }> {
    if (!assertion) return { approver };
    const verified = await this.verifyIdentity(assertion, 'approver', where, path);
    if (verified.subject !== approver.id) {
      throw new GrantlineError(
        ErrorCodes.IDENTITY,
        `assertion proves ${verified.subject}, not approver ${approver.id}`,
        { details: { where, path } },
      );
    }
    return {
      approver: recordable(
        approvalSchema.shape.approver,
        {
          ...approver,
          roles: verified.roles,
          // Proven teams added to the caller's: a team can only exclude from approving, never qualify.
          teams: verified.teams ? [...new Set([...approver.teams, ...verified.teams])] : approver.teams,
          claims: verified.claims,
        },
        where,
        path,
      ),
      proof: recordable(
        approvalSchema.shape.proof,
        {
          issuer: verified.issuer,
          subject: verified.subject,
          ...(verified.kid ? { kid: verified.kid } : {}),
        },
        where,
        path,
      )!,
    };
  }

  private async proveSubject(subject: Principal, assertion: string | undefined): Promise<Principal> {
    if (!assertion) return subject;
    const path = ['subjectAssertion'];
    const v = await this.verifyIdentity(assertion, 'workload', 'request', path);
    if (v.subject !== subject.id) {
      throw new GrantlineError(
        ErrorCodes.IDENTITY,
        `assertion proves ${v.subject}, not subject ${subject.id}`,
        {
          details: { where: 'request', path },
        },
      );
    }
    return recordable(
      principalSchema,
      {
        ...subject,
        claims: {
          ...v.claims,
          proof: { issuer: v.issuer, subject: v.subject, ...(v.kid ? { kid: v.kid } : {}) },
        },
      },
      'request',
      path,
    );
  }

  /** Asks the identity verifier; a failure it throws untyped becomes `ERR_IDENTITY`. */
  private async verifyIdentity(
    assertion: string,
    purpose: 'approver' | 'workload',
    where: string,
    path: (string | number)[],
  ): Promise<VerifiedIdentity> {
    if (!this.identity) {
      throw new GrantlineError(
        ErrorCodes.IDENTITY,
        'an identity assertion was given but no identity verifier is configured',
        { details: { where, path } },
      );
    }
    let answer: unknown;
    try {
      answer = await this.identity.verify(assertion, purpose);
    } catch (err) {
      if (isGrantlineError(err)) throw err;
      throw new GrantlineError(ErrorCodes.IDENTITY, 'the identity verifier rejected the assertion', {
        details: { where, path },
        cause: err,
      });
    }
    // A port's answer is input: its shape is checked before any of it is used.
    return recordable(verifiedIdentitySchema, answer, where, path);
  }

  private async overdueReviewsOf(actorId: string): Promise<number> {
    // The store filters by the exact requester id: ask for the id as given and its folded form (the
    // usual canonical spelling), and count cases whose actor folds equal, each case once.
    const seen = new Set<string>();
    let count = 0;
    for (const requesterId of new Set([actorId, foldIdentity(actorId)])) {
      let cursor: string | undefined;
      do {
        const page = await this.store.list({ requesterId, limit: 500, ...(cursor ? { cursor } : {}) });
        const now = this.clock.now().getTime();
        for (const g of page.grants) {
          if (
            !seen.has(g.id) &&
            g.breakGlass &&
            sameIdentity(g.breakGlass.actor.id, actorId) &&
            !g.breakGlass.review &&
            Date.parse(g.breakGlass.reviewDueAt) <= now
          ) {
            seen.add(g.id);
            count++;
          }
        }
        cursor = page.nextCursor;
      } while (cursor);
    }
    return count;
  }

  /** How long an approved case may wait for issuance: its snapshot's, else (older cases) this policy's. */
  private activationTtl(snapshot: PolicySnapshot): number {
    return snapshot.activationTtlSeconds ?? this.policy.policy.activationTtlSeconds;
  }

  private ruleTtl(ruleId: string): number {
    const rule = this.policy.policy.rules.find((r) => r.id === ruleId);
    return rule?.requestTtlSeconds ?? this.policy.policy.requestTtlSeconds;
  }

  private checkId(id: unknown, where: string): void {
    if (typeof id !== 'string' || id.length === 0 || id.length > 256) {
      throw new GrantlineError(ErrorCodes.VALIDATION, `${where}: case id must be a non-empty string`, {
        details: {
          where,
          issues: [{ path: ['id'], code: 'invalid_type', message: 'expected a non-empty string' }],
        },
      });
    }
  }

  private async mustGet(id: string): Promise<Grant> {
    return this.found(id, await this.store.get(id));
  }

  /** `g`, read for case `id`; `ERR_NOT_FOUND` when there was none. Lets hot paths await the store itself. */
  private found(id: string, g: Grant | null): Grant {
    if (!g) throw new GrantlineError(ErrorCodes.NOT_FOUND, `no case ${id}`, { details: { caseId: id } });
    return g;
  }

  private publishEffects(grant: Grant, effects: Effect[]): void {
    for (const e of effects)
      if (e.type === 'emit') this.publish(e.event as GrantlineEventName, grant, e.payload);
  }

  /** Emits after commit; a listener's exception (or rejected promise) is logged, never propagated. */
  private publish(event: GrantlineEventName, grant: Grant, extra: Record<string, unknown> = {}): void {
    if (this.listenerCount(event) === 0) return; // nobody listens: build no payload
    const payload: GrantlineEventPayload = { ...extra, caseId: grant.id, grant };
    for (const listener of this.listeners(event)) {
      try {
        const out = (listener as (p: GrantlineEventPayload) => unknown).call(this, payload);
        if (out && typeof (out as Promise<unknown>).then === 'function') {
          (out as Promise<unknown>).then(undefined, (err: unknown) =>
            this.logger.error('grantline: event listener rejected', {
              event,
              caseId: grant.id,
              error: failureOf(err),
            }),
          );
        }
      } catch (err) {
        this.logger.error('grantline: event listener threw', {
          event,
          caseId: grant.id,
          error: failureOf(err),
        });
      }
    }
  }
}

/**
 * Creates the Grantline service.
 * @throws GrantlineError `ERR_VALIDATION` when the policy is invalid or two executors claim a system.
 */
export function createGrantline(options: GrantlineOptions): Grantline {
  return new Grantline(options);
}

export { isTerminal };
