import { awsCodeOf, redact } from './errors.js';

/** How one probe call came out. */
export type ProbeOutcome =
  /** The call succeeded: the credentials still work. */
  | 'accepted'
  /** AccessDenied: an (explicit, per `explicitDeny`) deny applied. */
  | 'denied'
  /** STS says the token expired. */
  | 'expired'
  /** AWS does not know the access key (deleted, or never existed). */
  | 'invalid-credentials'
  /** The key exists but the signature did not match (used by the secret-free key probe). */
  | 'signature-mismatch';

/** One observed probe. */
export interface ProbeObservation {
  at: string;
  outcome: ProbeOutcome;
  awsCode?: string;
  explicitDeny?: boolean;
  /** AWS said no policy allows the action (an implicit deny): the Deny was not what refused it. */
  implicitDeny?: boolean;
  message?: string;
}

const DENIED = new Set([
  'AccessDenied',
  'AccessDeniedException',
  'UnauthorizedOperation',
  'AuthorizationError',
]);
const EXPIRED = new Set(['ExpiredToken', 'ExpiredTokenException', 'TokenRefreshRequired']);
const INVALID = new Set([
  'InvalidClientTokenId',
  'UnrecognizedClientException',
  'InvalidAccessKeyId',
  'InvalidToken',
  'AuthFailure',
]);
const SIGNATURE = new Set(['SignatureDoesNotMatch', 'IncompleteSignature', 'InvalidSignatureException']);

/**
 * Runs one probe call and classifies the answer. Throttling, timeouts and other failures that say
 * nothing about the credentials are thrown (the caller maps them to a retryable error).
 */
export async function probeOnce(call: () => Promise<unknown>, now: () => Date): Promise<ProbeObservation> {
  try {
    await call();
    return { at: now().toISOString(), outcome: 'accepted' };
  } catch (err) {
    const code = awsCodeOf(err);
    const message = err instanceof Error ? redact(err.message).slice(0, 200) : undefined;
    const base = {
      at: now().toISOString(),
      ...(code ? { awsCode: code } : {}),
      ...(message ? { message } : {}),
    };
    if (code && DENIED.has(code)) {
      const explicitDeny = /explicit deny/i.test(message ?? '');
      const implicitDeny =
        !explicitDeny &&
        /no (identity|resource|session)-based policy allows|implicit deny/i.test(message ?? '');
      return { ...base, outcome: 'denied', explicitDeny, ...(implicitDeny ? { implicitDeny } : {}) };
    }
    if (code && EXPIRED.has(code)) return { ...base, outcome: 'expired' };
    if (code && INVALID.has(code)) return { ...base, outcome: 'invalid-credentials' };
    if (code && SIGNATURE.has(code)) return { ...base, outcome: 'signature-mismatch' };
    // Throttling, timeouts and anything else say nothing about the credentials: the caller maps them.
    throw err;
  }
}

/** Schedule of the consecutive-rejection probe. */
export interface ProbePolicy {
  /** Rejections in a row needed before access counts as gone (IAM is eventually consistent). Default 3. */
  consecutiveRejections: number;
  /** Delay before the second probe in ms, doubled each time (default 1,000). */
  backoffMs: number;
  /** Cap of the delay in ms (default 8,000). */
  maxBackoffMs: number;
}

/** Result of {@link probeUntilRejected}. */
export interface ProbeRun {
  /** True after `consecutiveRejections` rejections in a row; false at the first acceptance. */
  rejected: boolean;
  observations: ProbeObservation[];
}

/**
 * Probes until `consecutiveRejections` rejections in a row (absent) or the first acceptance
 * (present: the service retries verification later with its own backoff, which also covers IAM's
 * propagation delay). `isRejection` decides which outcomes count as rejections for this probe.
 */
export async function probeUntilRejected(
  call: () => Promise<unknown>,
  isRejection: (o: ProbeObservation) => boolean,
  policy: ProbePolicy,
  now: () => Date,
  sleep: (ms: number) => Promise<void>,
): Promise<ProbeRun> {
  const observations: ProbeObservation[] = [];
  let delay = policy.backoffMs;
  for (let i = 0; i < policy.consecutiveRejections; i++) {
    if (i > 0) {
      await sleep(delay);
      delay = Math.min(policy.maxBackoffMs, delay * 2);
    }
    const o = await probeOnce(call, now);
    observations.push(o);
    if (!isRejection(o)) return { rejected: false, observations };
  }
  return { rejected: true, observations };
}
