import { ErrorCodes, GrantlineError, isGrantlineError } from '@grantline/core';

/**
 * SQLSTATE classes and codes after which the same operation may succeed if tried again:
 * connection exceptions (08), the server shutting down or starting up (57P01-57P03), too many
 * connections or out of resources (53), serialization failures and deadlocks (40), lock timeouts.
 */
const RETRYABLE_SQLSTATE = /^(08|53|40|57P0[1-3]|55P03|57014)/;

/** Node socket errors and node-postgres messages that mean the connection, not the query, failed. */
const RETRYABLE_NODE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTCONN',
  'EAI_AGAIN',
]);
const RETRYABLE_MESSAGE =
  /Connection terminated|connection error|not queryable|timeout exceeded when trying to connect|Client was closed|server closed the connection/i;

/** SQLSTATEs for text PostgreSQL cannot hold: NUL characters, lone surrogates. */
const UNSTORABLE_TEXT = new Set(['22021', '22P05', '22025']);

interface PgLikeError {
  code?: unknown;
  message?: unknown;
  constraint?: unknown;
}

/** True when a failure is about the connection or server availability, so retrying may help. */
export function isRetryablePgError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as PgLikeError;
  const code = typeof e.code === 'string' ? e.code : '';
  if (RETRYABLE_SQLSTATE.test(code) || RETRYABLE_NODE.has(code)) return true;
  return typeof e.message === 'string' && RETRYABLE_MESSAGE.test(e.message);
}

/**
 * Maps a driver error to a GrantlineError. Why here and not in callers: pg and PGlite report
 * failures differently (SQLSTATE on the error, socket codes, bare messages), and the service only
 * needs to know "which code" and "may I retry". The driver error is kept as `cause` but its text is
 * only quoted for non-connection errors, which never contain credentials.
 */
export function toStoreError(
  err: unknown,
  where: string,
  details: Record<string, unknown> = {},
): GrantlineError {
  if (isGrantlineError(err)) return err;
  const e = (typeof err === 'object' && err !== null ? err : {}) as PgLikeError;
  const code = typeof e.code === 'string' ? e.code : undefined;
  if (code && UNSTORABLE_TEXT.has(code)) {
    return new GrantlineError(
      ErrorCodes.VALIDATION,
      `${where}: a text value contains a character PostgreSQL cannot store (NUL \\u0000 or an unpaired surrogate)`,
      { details: { where, ...details, sqlstate: code }, cause: err },
    );
  }
  if (code?.startsWith('22')) {
    // Data exceptions (a malformed timestamp, a number out of range) are bad input, not a store fault.
    const message = typeof e.message === 'string' ? e.message : 'invalid value';
    return new GrantlineError(ErrorCodes.VALIDATION, `${where}: PostgreSQL rejected a value: ${message}`, {
      details: { where, ...details, sqlstate: code },
      cause: err,
    });
  }
  if (isRetryablePgError(err)) {
    return new GrantlineError(
      ErrorCodes.STORE,
      code?.startsWith('40')
        ? `${where}: PostgreSQL aborted the statement (${code}: ${code === '40P01' ? 'deadlock' : 'serialization failure'}); nothing was written; retry`
        : `${where}: PostgreSQL is unavailable (${code ?? 'connection lost'}); retry later`,
      {
        retryable: true,
        details: { where, ...details, ...(code ? { sqlstate: code } : {}) },
        cause: err,
      },
    );
  }
  const message = typeof e.message === 'string' ? e.message : String(err);
  return new GrantlineError(ErrorCodes.STORE, `${where}: ${message}`, {
    details: { where, ...details, ...(code ? { sqlstate: code } : {}) },
    cause: err,
  });
}
