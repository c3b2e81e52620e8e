import { type ErrorCode, ErrorCodes, isGrantlineError } from '@grantline/core';

/** HTTP status for every Grantline error code: the body always carries the `ERR_*` code itself. */
export const STATUS: Record<ErrorCode, number> = {
  [ErrorCodes.VALIDATION]: 400,
  [ErrorCodes.NOT_FOUND]: 404,
  [ErrorCodes.CONFLICT]: 409,
  [ErrorCodes.INVALID_TRANSITION]: 409,
  [ErrorCodes.POLICY_DENIED]: 403,
  [ErrorCodes.APPROVAL_REFUSED]: 403,
  [ErrorCodes.BREAK_GLASS_REFUSED]: 403,
  [ErrorCodes.IDEMPOTENCY_MISMATCH]: 409,
  [ErrorCodes.NO_EXECUTOR]: 400,
  [ErrorCodes.EXECUTOR]: 502,
  [ErrorCodes.ISSUANCE_FAILED]: 502,
  [ErrorCodes.STORE]: 503,
  [ErrorCodes.IDENTITY]: 401,
  [ErrorCodes.EVIDENCE]: 500,
  [ErrorCodes.TOKEN_REJECTED]: 401,
  [ErrorCodes.CLOSED]: 503,
};

/** Maps any thrown value to `[status, body]`; unknown errors are 500 without internals. */
export function toHttp(
  err: unknown,
): [number, { error: { code: string; message: string; retryable?: boolean; details?: unknown } }] {
  if (isGrantlineError(err)) {
    return [
      STATUS[err.code] ?? 500,
      { error: { code: err.code, message: err.message, retryable: err.retryable, details: err.details } },
    ];
  }
  return [500, { error: { code: 'ERR_INTERNAL', message: 'internal error' } }];
}
