import { ErrorCodes, GrantlineError } from './errors.js';
import { isStorableText, jsonDataProblem } from './json-data.js';

/** The executor calls whose answers core records. */
export type ExecutorOp = 'issue' | 'revoke' | 'verify' | 'renew';

type Problem = { path: (string | number)[]; message: string };

const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

/** A record of storable strings (refs, secrets), or the first reason it is not one. */
function stringRecordProblem(v: unknown, path: string[]): Problem | undefined {
  if (!isObject(v)) return { path, message: 'must be an object of strings' };
  const p = jsonDataProblem(v, path);
  if (p) return p;
  for (const key of Object.keys(v)) {
    if (typeof v[key] !== 'string') return { path: [...path, key], message: 'must be a string' };
  }
  return undefined;
}

const validDate = (v: unknown) => v instanceof Date && Number.isFinite(v.getTime());

/**
 * The first reason an executor's answer to `op` cannot be recorded as the port's types describe it
 * (see `IssueResult`, `RevokeResult`, `VerifyResult`), or undefined. Everything core keeps of an
 * answer (refs, details, observations, methods) goes into the record and its hashed audit events,
 * so it must be JSON data that every store keeps exactly (`jsonDataProblem`); secrets are only
 * fingerprinted, which hashes them too.
 */
export function executorResultProblem(op: ExecutorOp, res: unknown): Problem | undefined {
  if (!isObject(res)) return { path: [], message: 'must be an object' };
  switch (op) {
    case 'issue':
      return (
        stringRecordProblem(res.ref, ['ref']) ??
        (res.secret === undefined ? undefined : stringRecordProblem(res.secret, ['secret'])) ??
        (res.fingerprint === undefined ||
        (typeof res.fingerprint === 'string' && isStorableText(res.fingerprint))
          ? undefined
          : { path: ['fingerprint'], message: 'must be storable text' }) ??
        (validDate(res.expiresAt) ? undefined : { path: ['expiresAt'], message: 'must be a valid Date' })
      );
    case 'revoke':
      return (
        (res.alreadyGone === undefined || typeof res.alreadyGone === 'boolean'
          ? undefined
          : { path: ['alreadyGone'], message: 'must be a boolean' }) ??
        (res.detail === undefined
          ? undefined
          : isObject(res.detail)
            ? jsonDataProblem(res.detail, ['detail'])
            : { path: ['detail'], message: 'must be an object' })
      );
    case 'verify':
      return (
        (res.status === 'absent' || res.status === 'present'
          ? undefined
          : { path: ['status'], message: "must be 'absent' or 'present'" }) ??
        (typeof res.method === 'string' && res.method.length > 0 && isStorableText(res.method)
          ? undefined
          : { path: ['method'], message: 'must be non-empty storable text' }) ??
        (isObject(res.observation)
          ? jsonDataProblem(res.observation, ['observation'])
          : { path: ['observation'], message: 'must be an object' })
      );
    case 'renew':
      return (
        (validDate(res.expiresAt) ? undefined : { path: ['expiresAt'], message: 'must be a valid Date' }) ??
        (res.secret === undefined ? undefined : stringRecordProblem(res.secret, ['secret']))
      );
  }
}

/**
 * The answer itself when it can be recorded; else `ERR_EXECUTOR`, not retryable (the same code
 * would answer the same way), which the caller records like any failure of the call: the case stays
 * where the sweeper can finish it. The message names the path, never a string value (it may be a secret).
 */
export function checkExecutorResult<T>(system: string, op: ExecutorOp, res: T): T {
  const problem = executorResultProblem(op, res);
  if (!problem) return res;
  const where = problem.path.length > 0 ? problem.path.join('.') : 'the result';
  // An issue answer whose refs are sound names what was made: kept, so the rollback can remove it.
  const ref =
    op === 'issue' && isObject(res) && !stringRecordProblem(res.ref, ['ref'])
      ? (res.ref as Record<string, string>)
      : undefined;
  throw new GrantlineError(
    ErrorCodes.EXECUTOR,
    `executor ${system}: ${op} returned an answer Grantline cannot record: ${where} ${problem.message}`,
    { retryable: false, details: { system, op, path: problem.path, ...(ref ? { ref } : {}) } },
  );
}

/** The refs of what an issue call made, from the error of an answer that could not be recorded. */
export function salvagedRef(err: unknown): Record<string, string> | undefined {
  if (!(err instanceof GrantlineError) || err.details?.op !== 'issue') return undefined;
  const ref = err.details.ref;
  return isObject(ref) && !stringRecordProblem(ref, ['ref']) ? (ref as Record<string, string>) : undefined;
}
