import { ErrorCodes, GrantlineError, isGrantlineError } from '@grantline/core';

/**
 * AWS error codes (the SDK's `name`) after which trying the same call again later can succeed.
 * Why a list and not the SDK's own `$retryable`: the SDK marks only what it retries itself; the
 * sweeper retries on a much longer horizon (minutes), where e.g. IAM's
 * `ConcurrentModification` or Identity Center's `ConflictException` clear up too.
 */
const RETRYABLE_CODES = new Set([
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestLimitExceeded',
  'TooManyRequestsException',
  'RequestThrottled',
  'RequestThrottledException',
  'SlowDown',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'ServiceFailure',
  'InternalFailure',
  'InternalError',
  'InternalServerException',
  'RequestTimeout',
  'RequestTimeoutException',
  'TimeoutError',
  'IDPCommunicationError',
  'ConcurrentModification',
  'ConcurrentModificationException',
  'ConflictException',
  'PriorRequestNotComplete',
  'EC2ThrottledException',
]);

/** Network-level failures (Node error codes): the request may not even have reached AWS. */
const RETRYABLE_NODE_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ENOTFOUND',
  'ECONNABORTED',
  'UND_ERR_SOCKET',
]);

/** The AWS error code (`name` in SDK v3) of a thrown value, or `undefined`. */
export function awsCodeOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { name?: unknown; Code?: unknown; code?: unknown };
  if (typeof e.Code === 'string') return e.Code;
  if (typeof e.name === 'string' && e.name !== 'Error') return e.name;
  if (typeof e.code === 'string') return e.code;
  return undefined;
}

/** The HTTP status the SDK saw, if any. */
export function httpStatusOf(err: unknown): number | undefined {
  const m = (err as { $metadata?: { httpStatusCode?: unknown } } | null)?.$metadata;
  return typeof m?.httpStatusCode === 'number' ? m.httpStatusCode : undefined;
}

/** True when the AWS answer says the entity does not exist. */
export function isNotFound(err: unknown): boolean {
  const code = awsCodeOf(err);
  return code === 'NoSuchEntity' || code === 'NoSuchEntityException' || code === 'ResourceNotFoundException';
}

/** True for throttling, timeouts, 5xx and network failures. */
export function isRetryableAwsError(err: unknown): boolean {
  const code = awsCodeOf(err);
  if (code && (RETRYABLE_CODES.has(code) || RETRYABLE_NODE_CODES.has(code))) return true;
  const status = httpStatusOf(err);
  if (status === 429 || (status !== undefined && status >= 500)) return true;
  const r = (err as { $retryable?: unknown } | null)?.$retryable;
  return typeof r === 'object' && r !== null;
}

/**
 * Long base64-ish runs (secret access keys are 40 characters, session tokens hundreds) are cut from
 * any message we pass on. AWS messages do not normally carry secrets, but `SignatureDoesNotMatch`
 * may echo the string to sign, and a proxy in between may echo anything.
 */
const SECRET_LIKE = /[A-Za-z0-9/+=]{32,}/g;

/** Removes `secrets` and anything secret-shaped from a message. */
export function redact(message: string, secrets: readonly string[] = []): string {
  let out = message;
  for (const s of secrets) if (s && s.length >= 8) out = out.split(s).join('[redacted]');
  return out.replace(SECRET_LIKE, '[redacted]').slice(0, 500);
}

/**
 * Maps anything an AWS call threw to a `GrantlineError` (`ERR_EXECUTOR`): throttling, timeouts, 5xx
 * and network failures are `retryable`; access denied, validation, malformed policies, limits and
 * not-found are not. The message names the operation and the AWS code, never a secret.
 * A `GrantlineError` passes through unchanged.
 */
export function toExecutorError(
  err: unknown,
  operation: string,
  secrets: readonly string[] = [],
  details: Record<string, unknown> = {},
): GrantlineError {
  if (isGrantlineError(err)) return err;
  const code = awsCodeOf(err) ?? 'UnknownError';
  const status = httpStatusOf(err);
  const raw = err instanceof Error ? err.message : String(err);
  const requestId = (err as { $metadata?: { requestId?: unknown } } | null)?.$metadata?.requestId;
  return new GrantlineError(
    ErrorCodes.EXECUTOR,
    `aws ${operation} failed: ${code}: ${redact(raw, secrets)}`,
    {
      retryable: isRetryableAwsError(err),
      details: {
        ...details,
        operation,
        awsCode: code,
        ...(status !== undefined ? { httpStatus: status } : {}),
        ...(typeof requestId === 'string' ? { requestId } : {}),
      },
    },
  );
}

/** An `ERR_VALIDATION` raised before any AWS call, naming the field and the limit. */
export function invalid(where: string, path: (string | number)[], message: string): GrantlineError {
  return new GrantlineError(
    ErrorCodes.VALIDATION,
    `${where}: invalid input at ${path.join('.')}: ${message}`,
    {
      details: { where, issues: [{ path, code: 'custom', message }] },
    },
  );
}
