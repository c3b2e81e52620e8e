import type { z } from 'zod';

/**
 * Stable error codes. They are part of the public API: a code is never renamed
 * or reused for a different meaning.
 */
export const ErrorCodes = {
  /** Input failed schema validation; `details.issues` holds zod's issues with their paths. */
  VALIDATION: 'ERR_VALIDATION',
  /** No case with that id exists. */
  NOT_FOUND: 'ERR_NOT_FOUND',
  /** A compare-and-set lost a race: the case changed since it was read. Retryable. */
  CONFLICT: 'ERR_CONFLICT',
  /** The command is not allowed in the case's current state. */
  INVALID_TRANSITION: 'ERR_INVALID_TRANSITION',
  /** No policy rule admits the request, or a required reference is missing. */
  POLICY_DENIED: 'ERR_POLICY_DENIED',
  /** The approver does not qualify (self-approval, operator team, role, duplicate, ...). */
  APPROVAL_REFUSED: 'ERR_APPROVAL_REFUSED',
  /** Break-glass is not allowed for this actor (role, or an overdue review blocks them). */
  BREAK_GLASS_REFUSED: 'ERR_BREAK_GLASS_REFUSED',
  /** An idempotency key was reused with a different request body. */
  IDEMPOTENCY_MISMATCH: 'ERR_IDEMPOTENCY_MISMATCH',
  /** No executor is registered for a target's system. */
  NO_EXECUTOR: 'ERR_NO_EXECUTOR',
  /** An executor call failed; `retryable` tells whether trying again can help. */
  EXECUTOR: 'ERR_EXECUTOR',
  /** Issuance failed; the case was rolled back (or left for the sweeper to roll back). */
  ISSUANCE_FAILED: 'ERR_ISSUANCE_FAILED',
  /** A store operation failed; `retryable` tells whether trying again can help. */
  STORE: 'ERR_STORE',
  /** An identity assertion was rejected. */
  IDENTITY: 'ERR_IDENTITY',
  /** Evidence could not be produced or verified. */
  EVIDENCE: 'ERR_EVIDENCE',
  /** A Grantline-issued access token was rejected (revoked, expired, wrong audience, bad signature). */
  TOKEN_REJECTED: 'ERR_TOKEN_REJECTED',
  /** The service or store was closed. */
  CLOSED: 'ERR_CLOSED',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

const BRAND = Symbol.for('grantline.error');

/** Options for {@link GrantlineError}. */
export interface GrantlineErrorOptions {
  /** True when retrying the same operation later may succeed. Defaults to false. */
  retryable?: boolean;
  /** Machine-readable context: the case id, the path of a bad field, the reasons of a decision. */
  details?: Record<string, unknown>;
  cause?: unknown;
}

/**
 * The one error type every Grantline package throws. Check with
 * {@link isGrantlineError} rather than `instanceof`: the `Symbol.for` brand
 * survives two copies of the package being installed side by side.
 */
export class GrantlineError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Record<string, unknown>;
  readonly [BRAND] = true;

  constructor(code: ErrorCode, message: string, options: GrantlineErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GrantlineError';
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.details = options.details ?? {};
  }

  /** A plain, log-safe representation (no cause chain, which may hold foreign data). */
  toJSON(): {
    name: string;
    code: ErrorCode;
    message: string;
    retryable: boolean;
    details: Record<string, unknown>;
  } {
    return {
      name: this.name,
      code: this.code,
      message: this.message,
      retryable: this.retryable,
      details: this.details,
    };
  }
}

/** True for any Grantline error, from any installed copy of the package. */
export function isGrantlineError(value: unknown): value is GrantlineError {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
}

/** Issue shape reported in `details.issues` of an `ERR_VALIDATION` error. */
export interface ValidationIssue {
  path: (string | number)[];
  code: string;
  message: string;
}

/** Builds an `ERR_VALIDATION` error from zod issues; `where` names the method or argument. */
export function validationError(where: string, issues: readonly z.core.$ZodIssue[]): GrantlineError {
  const mapped: ValidationIssue[] = issues.map((i) => ({
    path: i.path.map((p) => (typeof p === 'symbol' ? String(p) : p)),
    code: i.code,
    message: i.message,
  }));
  const first = mapped[0];
  const at = first && first.path.length > 0 ? ` at ${first.path.join('.')}` : '';
  return new GrantlineError(
    ErrorCodes.VALIDATION,
    `${where}: invalid input${at}: ${first?.message ?? 'unknown problem'}`,
    { details: { where, issues: mapped } },
  );
}

/** Parses `value` with `schema`, throwing `ERR_VALIDATION` (never zod's own error). */
export function parseInput<S extends z.ZodType>(schema: S, value: unknown, where: string): z.output<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw validationError(where, result.error.issues);
  return result.data;
}
