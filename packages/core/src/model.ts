import { z } from 'zod';
import { jsonRecord, str } from './json-data.js';

/** Identifier shape for ids supplied by hosts (principals, targets, roles). */
const id = str().min(1).max(256);
const text = (max: number) => str().min(1).max(max);
/** ISO-8601 timestamp in UTC with milliseconds, as produced by `Date#toISOString`. */
export const isoTime = z.iso.datetime({ offset: false });

/**
 * The form in which two principal ids are compared: NFKC, then lower, upper and lower case, then
 * NFKC again. The case round trip gives the full case folding that `toLowerCase` alone misses
 * (`weiß`, `WEISS` and `ẞ` fold to `weiss`; a final `ς` and `σ` to the same sigma; dotless `ı` to
 * `i`), and the fold is idempotent. Ids are stored as given; every check that refuses the same person
 * (self-approval, duplicate approver, self-review, the overdue break-glass block, evidence
 * verification) compares folded forms, so `Olga`, `olga` and an NFD spelling are one person. Checks
 * that grant the requester or subject a right (issue, complete, extend, cancel) keep exact ids, so
 * folding never widens who may act.
 */
export function foldIdentity(id: string): string {
  // Printable ASCII (most ids): NFKC leaves it as it is and the case steps reduce to lower case.
  if (PRINTABLE_ASCII.test(id)) return id.toLowerCase();
  return id.normalize('NFKC').toLowerCase().toUpperCase().toLowerCase().normalize('NFKC');
}
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/** True when two principal ids name the same identity (conservatively: equal once folded). */
export function sameIdentity(a: string | undefined, b: string | undefined): boolean {
  return a !== undefined && b !== undefined && foldIdentity(a) === foldIdentity(b);
}

/**
 * Characters a principal id may not hold: controls and format characters (Cc, Cf) and every
 * Default_Ignorable_Code_Point (the combining grapheme joiner, variation selectors, Hangul fillers,
 * Mongolian free variation selectors, ...). They are invisible, so two ids differing only by them
 * would be two people to every check while reading as one.
 */
const INVISIBLE = /[\p{Cc}\p{Cf}\p{Default_Ignorable_Code_Point}]/u;

/**
 * A principal id, or a team name (a team excludes its members from approving, so two spellings of
 * one team must not pass as two): no leading or trailing whitespace, no control, format or
 * default-ignorable characters.
 */
export const visibleIdSchema = id.refine(
  (v) => v.trim() === v && !INVISIBLE.test(v),
  'no leading/trailing whitespace, control, format or default-ignorable (invisible) characters',
);

/** A person or a workload. A human acting for a CI job is two principals, never one. */
export const principalSchema = z.strictObject({
  id: visibleIdSchema,
  kind: z.enum(['human', 'workload']),
  roles: z.array(id).max(64).default([]),
  /** Teams the principal belongs to; the rule's operator team may not approve. */
  teams: z.array(visibleIdSchema).max(64).default([]),
  /** Claims of a proven identity (set by an identity verifier) or supplied by the host. */
  claims: jsonRecord().optional(),
});
export type Principal = z.output<typeof principalSchema>;
export type PrincipalInput = z.input<typeof principalSchema>;

/** Why access is needed, and what it is tied to. */
export const justificationSchema = z.strictObject({
  reason: text(2000),
  ticket: text(256).optional(),
  changeRecord: text(256).optional(),
  workload: text(256).optional(),
});
export type Justification = z.output<typeof justificationSchema>;

// #region target
/** One system a case grants access to, routed to the executor registered for `system`. */
export const targetSchema = z.strictObject({
  id: z
    .string()
    .min(1)
    .max(64)
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'target id: letters, digits, _ . - only'),
  system: text(64),
  resource: text(1024),
  permissions: z.array(text(256)).max(256).optional(),
  params: jsonRecord().optional(),
});
export type Target = z.output<typeof targetSchema>;
// #endregion

export const GRANT_STATES = [
  'requested',
  'approved',
  'denied',
  'cancelled',
  'expired',
  'issuing',
  'issued',
  'revoking',
  'revoked',
  'verified',
  'failed',
] as const;
export const grantStateSchema = z.enum(GRANT_STATES);
export type GrantState = (typeof GRANT_STATES)[number];

export const REVOCATION_TRIGGERS = [
  'expiry',
  'completion',
  'violation',
  'manual',
  'review',
  'rollback',
] as const;
export const revocationTriggerSchema = z.enum(REVOCATION_TRIGGERS);
export type RevocationTrigger = (typeof REVOCATION_TRIGGERS)[number];

/** Who did something, as recorded on the case and in its audit events. */
export const actorSchema = z.strictObject({
  id,
  kind: z.enum(['human', 'workload', 'system']),
});
export type Actor = z.output<typeof actorSchema>;

export const approvalSchema = z.strictObject({
  approver: principalSchema,
  /** The role that qualified the approver under the rule. */
  role: id,
  reason: str().max(2000).optional(),
  at: isoTime,
  /** Present when the approver's identity was proven by a signed assertion. */
  proof: z.strictObject({ issuer: str(), subject: str(), kid: str().optional() }).optional(),
});
export type Approval = z.output<typeof approvalSchema>;

// #region issuance
/** Non-secret record of what was issued for one target. */
export const issuanceSchema = z.strictObject({
  /** Non-secret references: key id, session name, assignment id, token id. */
  ref: z.record(str(), str()),
  /** SHA-256 fingerprint (hex prefix) of the secret, for correlation without the secret. */
  fingerprint: str().optional(),
  issuedAt: isoTime,
  expiresAt: isoTime,
});
export type Issuance = z.output<typeof issuanceSchema>;
// #endregion

export const targetRevocationSchema = z.strictObject({
  attempts: z.number().int().nonnegative(),
  confirmedAt: isoTime.optional(),
  alreadyGone: z.boolean().optional(),
  lastError: z.strictObject({ code: str(), message: str(), retryable: z.boolean() }).optional(),
  detail: jsonRecord().optional(),
});
export type TargetRevocation = z.output<typeof targetRevocationSchema>;

export const targetVerificationSchema = z.strictObject({
  attempts: z.number().int().nonnegative(),
  result: z.enum(['absent', 'present']).optional(),
  method: str().optional(),
  observation: jsonRecord().optional(),
  verifier: str().optional(),
  at: isoTime.optional(),
  lastError: z.strictObject({ code: str(), message: str(), retryable: z.boolean() }).optional(),
});
export type TargetVerification = z.output<typeof targetVerificationSchema>;

/** A target together with what happened to it. */
export const targetStateSchema = targetSchema.extend({
  issuance: issuanceSchema.optional(),
  revocation: targetRevocationSchema.optional(),
  verification: targetVerificationSchema.optional(),
});
export type TargetState = z.output<typeof targetStateSchema>;

export const approvalRequirementSchema = z.strictObject({
  count: z.number().int().nonnegative(),
  roles: z.array(id),
  distinctRoles: z.boolean(),
});
export type ApprovalRequirement = z.output<typeof approvalRequirementSchema>;

// #region usage-constraints
export const usageConstraintsSchema = z.strictObject({
  sourceCidrs: z.array(str()).optional(),
  actions: z.array(str()).optional(),
  timeWindow: z
    .strictObject({
      /** Days of week allowed, 0 = Sunday (UTC). */
      days: z.array(z.number().int().min(0).max(6)).optional(),
      startHour: z.number().int().min(0).max(23),
      endHour: z.number().int().min(1).max(24),
    })
    // A window crossing midnight (22 to 6) would refuse every use: it is refused here instead.
    .refine((w) => w.startHour < w.endHour, {
      message: 'endHour must be after startHour (a window crossing midnight UTC is not supported)',
      path: ['endHour'],
    })
    .optional(),
});
export type UsageConstraints = z.output<typeof usageConstraintsSchema>;
// #endregion

/** The policy decision frozen into the case at request time. */
export const policySnapshotSchema = z.strictObject({
  policyId: id,
  policyVersion: str(),
  policyHash: str(),
  ruleId: id,
  risk: z.enum(['low', 'medium', 'high']),
  /** The single accountable governance function. */
  owner: id,
  /** The team that executes; it may not approve. */
  operator: id,
  approvals: approvalRequirementSchema,
  maxDurationSeconds: z.number().int().positive(),
  /**
   * How long an approved case may wait to be issued (the policy's, when the case was decided): the
   * case's own, not that of whichever instance approves it later under a newer policy.
   */
  activationTtlSeconds: z.number().int().positive().optional(),
  template: str().optional(),
  constraints: usageConstraintsSchema.optional(),
  requireProvenApprovers: z.boolean().optional(),
  requireProvenWorkload: z.boolean().optional(),
  extension: z
    .strictObject({ requiresApproval: z.boolean(), maxExtensions: z.number().int().nonnegative() })
    .optional(),
});
export type PolicySnapshot = z.output<typeof policySnapshotSchema>;

export const breakGlassSchema = z.strictObject({
  actor: principalSchema,
  reason: str(),
  at: isoTime,
  reviewDueAt: isoTime,
  reviewerRoles: z.array(id),
  overdueRaisedAt: isoTime.optional(),
  review: z
    .strictObject({
      reviewer: principalSchema,
      role: id,
      outcome: z.enum(['accepted', 'rejected']),
      notes: str().optional(),
      at: isoTime,
    })
    .optional(),
});
export type BreakGlass = z.output<typeof breakGlassSchema>;

/** The case record. Secrets never appear here. */
export const grantSchema = z.strictObject({
  id,
  version: z.number().int().positive(),
  createdAt: isoTime,
  updatedAt: isoTime,
  state: grantStateSchema,
  requester: principalSchema,
  subject: principalSchema,
  justification: justificationSchema,
  targets: z.array(targetStateSchema).min(1),
  // #region window
  window: z.strictObject({
    durationSeconds: z.number().int().positive(),
    notBefore: isoTime.optional(),
    /** Pending requests and unused approvals expire at this time. */
    requestExpiresAt: isoTime,
    issuedAt: isoTime.optional(),
    expiresAt: isoTime.optional(),
    /** Cap from first issuance: `issuedAt + maxDuration`; extensions never pass it. */
    hardLimitAt: isoTime.optional(),
    extensions: z.number().int().nonnegative().default(0),
  }),
  // #endregion
  policy: policySnapshotSchema,
  approvals: z.array(approvalSchema),
  decision: z
    .strictObject({
      by: actorSchema,
      outcome: z.enum(['denied', 'cancelled', 'expired']),
      reason: str(),
      at: isoTime,
    })
    .optional(),
  revocation: z
    .strictObject({
      trigger: revocationTriggerSchema,
      reason: str(),
      actor: actorSchema,
      requestedAt: isoTime,
      revokedAt: isoTime.optional(),
      verifiedAt: isoTime.optional(),
      /** Milliseconds from the end of the window (or the trigger) to all targets revoked. */
      lagToRevokedMs: z.number().optional(),
      lagToVerifiedMs: z.number().optional(),
      /** Revocation or verification gave up; the case stays visible as exposed. */
      exposed: z.boolean().optional(),
      /**
       * Targets whose credential was issued after the case had ended `failed` and could not be
       * removed at once: the sweeper keeps revoking them (the state stays `failed`, which is terminal).
       */
      pendingLate: z.array(str()).optional(),
    })
    .optional(),
  breakGlass: breakGlassSchema.optional(),
  usage: z.strictObject({ count: z.number().int().nonnegative(), lastAt: isoTime.optional() }),
  /** Head of the case's audit chain as of this version: last `seq` and its hash. */
  audit: z.strictObject({ seq: z.number().int().nonnegative(), head: str() }),
  /** Next time the sweeper must look at this case, or null when nothing is pending. */
  dueAt: isoTime.nullable(),
  /** Sweeper bookkeeping: consecutive failures of the pending step and when to retry. */
  retry: z.strictObject({ attempts: z.number().int().nonnegative(), nextAt: isoTime.optional() }).optional(),
  idempotencyKey: str().optional(),
});
export type Grant = z.output<typeof grantSchema>;

/** The audit event actor plus the role they acted in. */
export const auditEventSchema = z.strictObject({
  /** Position in the case's chain, from 1. */
  seq: z.number().int().positive(),
  caseId: id,
  type: str(),
  at: isoTime,
  actor: actorSchema,
  actingRole: str().optional(),
  data: jsonRecord(),
  prevHash: str(),
  hash: str(),
  /** Store-wide monotonic position, assigned by the store on append (not part of the hash). */
  globalSeq: z.number().int().positive().optional(),
});
export type AuditEvent = z.output<typeof auditEventSchema>;

// ---- Service inputs ----

/**
 * A principal as a host hands it in: `claims.proof` is refused, as only the identity verifier may
 * set it (a rule requiring a proven workload or approver reads it; a forged one would pass).
 */
const inputPrincipalSchema = principalSchema.superRefine((p, ctx) => {
  if (p.claims?.proof !== undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['claims', 'proof'],
      message: 'claims.proof is set by the identity verifier from a signed assertion, never by the caller',
    });
  }
});

/** Times a host hands in: from 1970 to 9000, so that adding a case's durations stays a valid Date. */
const timeInput = z
  .union([z.date(), isoTime])
  .transform((v) => (v instanceof Date ? v : new Date(v)))
  .refine((d) => d.getTime() >= 0 && d.getTime() < Date.UTC(9000, 0, 1), 'must be from 1970 to 9000');

export const requestInputSchema = z.strictObject({
  requester: inputPrincipalSchema,
  subject: inputPrincipalSchema,
  justification: justificationSchema,
  targets: z
    .array(targetSchema)
    .min(1)
    .max(32)
    .refine(
      (ts) => new Set(ts.map((t) => t.id)).size === ts.length,
      'target ids must be unique within a case',
    ),
  durationSeconds: z
    .number()
    .int()
    .positive()
    .max(31 * 24 * 3600),
  notBefore: timeInput.optional(),
  /** Ask for a pre-approved low-risk template by id. */
  template: id.optional(),
  /** Repeating a request with the same key returns the first case instead of creating another. */
  idempotencyKey: str().min(1).max(200).optional(),
  /** Signed identity assertion proving the subject workload (checked by the identity verifier). */
  subjectAssertion: str().min(1).optional(),
});
export type RequestInput = z.input<typeof requestInputSchema>;

export const approveInputSchema = z.strictObject({
  approver: inputPrincipalSchema,
  /** Role to act in; defaults to the first of the approver's roles that qualifies. */
  role: id.optional(),
  reason: str().max(2000).optional(),
  /** Signed identity assertion proving the approver (checked by the identity verifier). */
  assertion: str().min(1).optional(),
});
export type ApproveInput = z.input<typeof approveInputSchema>;

export const decisionInputSchema = z.strictObject({
  actor: inputPrincipalSchema,
  reason: text(2000),
});
export type DecisionInput = z.input<typeof decisionInputSchema>;

export const issueInputSchema = z.strictObject({ actor: inputPrincipalSchema.optional() }).default({});
export type IssueInput = z.input<typeof issueInputSchema>;

export const usageInputSchema = z.strictObject({
  targetId: str().min(1).optional(),
  /** Who used it (normally the subject). */
  actor: inputPrincipalSchema.optional(),
  sourceIp: z.union([z.ipv4(), z.ipv6()]),
  action: text(512),
  resource: str().max(1024).optional(),
  at: timeInput.optional(),
  outcome: z.enum(['allowed', 'denied', 'error']).default('allowed'),
  /** Where the record came from: 'host', 'cloudtrail', 'token-verifier', ... */
  source: str().max(64).default('host'),
  detail: jsonRecord().optional(),
});
export type UsageInput = z.input<typeof usageInputSchema>;

export const revokeInputSchema = z.strictObject({
  actor: inputPrincipalSchema,
  reason: text(2000),
});
export type RevokeInput = z.input<typeof revokeInputSchema>;

export const breakGlassInputSchema = z.strictObject({
  requester: inputPrincipalSchema,
  subject: inputPrincipalSchema,
  justification: justificationSchema,
  targets: requestInputSchema.shape.targets,
  durationSeconds: z
    .number()
    .int()
    .positive()
    .max(24 * 3600),
  idempotencyKey: str().min(1).max(200).optional(),
});
export type BreakGlassInput = z.input<typeof breakGlassInputSchema>;

export const reviewInputSchema = z.strictObject({
  reviewer: inputPrincipalSchema,
  role: id.optional(),
  outcome: z.enum(['accepted', 'rejected']),
  notes: str().max(4000).optional(),
});
export type ReviewInput = z.input<typeof reviewInputSchema>;

export const listQuerySchema = z
  .strictObject({
    states: z.array(grantStateSchema).optional(),
    subjectId: str().optional(),
    requesterId: str().optional(),
    updatedAfter: isoTime.optional(),
    limit: z.number().int().positive().max(10_000).default(100),
    /** Opaque cursor returned as `nextCursor` by the previous page. */
    cursor: str().optional(),
  })
  .default({ limit: 100 });
export type ListQuery = z.input<typeof listQuerySchema>;
export type ListQueryParsed = z.output<typeof listQuerySchema>;

export const extendInputSchema = z.strictObject({
  /** The requester or the subject. */
  actor: inputPrincipalSchema,
  /** How much longer, in seconds. */
  seconds: z
    .number()
    .int()
    .positive()
    .max(31 * 24 * 3600),
  reason: text(2000),
  /**
   * Approvals of the extension when the rule requires them (same quorum and rules as the case; an
   * `assertion` proves the approver, as for `approve`).
   */
  approvals: z.array(approveInputSchema).max(10).default([]),
});
export type ExtendInput = z.input<typeof extendInputSchema>;

export const ticketClosedInputSchema = z.strictObject({
  ticket: text(256),
  /** Who reports the closure (a ticketing webhook, a person). */
  actor: inputPrincipalSchema.optional(),
});

/** Options of `sweep()`. */
export const sweepOptionsSchema = z
  .strictObject({
    /** At most this many due cases per pass. */
    limit: z.number().int().min(1).max(10_000).default(500),
    /** Cases worked on at once. */
    concurrency: z.number().int().min(1).max(256).default(8),
  })
  .default({ limit: 500, concurrency: 8 });
export type SweepOptions = z.input<typeof sweepOptionsSchema>;

/** Options of `startSweeper()` (the abort signal is checked separately: it is not data). */
export const startSweeperOptionsSchema = z
  .strictObject({
    signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal, 'expected an AbortSignal').optional(),
    maxSleepMs: z.number().int().min(1).max(86_400_000).optional(),
    minSleepMs: z.number().int().min(0).max(86_400_000).optional(),
    limit: z.number().int().min(1).max(10_000).optional(),
    ticketPollMs: z.number().int().min(1).max(86_400_000).optional(),
  })
  .default({});
export type StartSweeperOptions = z.input<typeof startSweeperOptionsSchema>;
