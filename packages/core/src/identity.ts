import {
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
} from 'jose';
import { ErrorCodes, GrantlineError } from './errors.js';
import { type Clock, type IdentityVerifier, type VerifiedIdentity, systemClock } from './ports.js';

/** Asymmetric JWS algorithms accepted for identity assertions by default. HMAC and `none` are never accepted. */
export const IDENTITY_ALGORITHMS = [
  'EdDSA',
  'ES256',
  'ES384',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
] as const;

/** One trusted issuer of signed assertions. */
export interface JwtIssuerOptions {
  /** Expected `iss` (exact match; several allowed). */
  issuer: string | string[];
  /** Expected `aud`: the audience the IdP or CI system minted the token for (this service). */
  audience: string | string[];
  /**
   * The issuer's public keys: a JWKS object, or its URL (fetched and cached by jose's
   * `createRemoteJWKSet`; HTTPS in production).
   */
  jwks: JSONWebKeySet | URL;
  /** Narrow the accepted algorithms (default {@link IDENTITY_ALGORITHMS}); symmetric ones are refused anyway. */
  algorithms?: string[];
  /** Claim naming the principal (default `sub`). */
  subjectClaim?: string;
  /** Claims that must hold exactly these values (one of a list), e.g. `{ repository: 'acme/payments' }`. */
  requiredClaims?: Record<string, string | string[]>;
}

/** The approvers' identity provider. */
export interface ApproverIssuerOptions extends JwtIssuerOptions {
  /** Claim holding the roles, as a string array or a space-separated string; dotted paths reach nested claims (`realm_access.roles`). Default `roles`. */
  rolesClaim?: string;
  /**
   * Claim holding the approver's teams, read like `rolesClaim` (e.g. `groups`). A proven approver's
   * teams are these together with any the caller names: the operator team's exclusion from approval
   * does not rest on what the caller declares. Without it, only the caller's teams count.
   */
  teamsClaim?: string;
}

/** The workloads' OIDC issuer (a CI system such as GitHub Actions or GitLab, or a cloud workload identity). */
export type WorkloadIssuerOptions = JwtIssuerOptions;

/** Options for {@link createJwtIdentityVerifier}. */
export interface JwtIdentityVerifierOptions {
  approvers?: ApproverIssuerOptions;
  workloads?: WorkloadIssuerOptions;
  /** Allowed clock skew for `exp`, `nbf` and `iat`, in seconds (default 30). */
  clockToleranceSeconds?: number;
  /** Refuse tokens whose `iat` is older than this many seconds (default: no limit beyond `exp`). */
  maxTokenAgeSeconds?: number;
  clock?: Clock;
}

/** Why an assertion was refused; in `details.reason` of the `ERR_IDENTITY` error. */
export type IdentityRejection =
  | 'malformed'
  | 'unsigned'
  | 'algorithm'
  | 'not-configured'
  | 'expired'
  | 'not-yet-valid'
  | 'too-old'
  | 'issuer'
  | 'audience'
  | 'key'
  | 'signature'
  | 'claims';

function reject(purpose: string, reason: IdentityRejection, message: string): GrantlineError {
  // The assertion itself is a bearer credential: it never goes into the error.
  return new GrantlineError(ErrorCodes.IDENTITY, `${purpose} identity assertion rejected: ${message}`, {
    details: { reason, purpose, path: [purpose === 'approver' ? 'assertion' : 'subjectAssertion'] },
  });
}

function claimAt(payload: JWTPayload, path: string): unknown {
  if (path in payload) return payload[path];
  let cur: unknown = payload;
  for (const part of path.split('.')) {
    if (!cur || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

function rolesOf(value: unknown): string[] {
  if (typeof value === 'string') return value.split(/\s+/).filter(Boolean);
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === 'string' && v.length > 0);
  return [];
}

interface Compiled {
  opts: JwtIssuerOptions & { rolesClaim?: string; teamsClaim?: string };
  getKey: JWTVerifyGetKey;
  algorithms: string[];
}

function compile(o: JwtIssuerOptions & { rolesClaim?: string; teamsClaim?: string }): Compiled {
  const getKey = o.jwks instanceof URL ? createRemoteJWKSet(o.jwks) : createLocalJWKSet(o.jwks);
  const algorithms = (o.algorithms ?? [...IDENTITY_ALGORITHMS]).filter((a) => !/^HS|^none$/i.test(a));
  return { opts: o, getKey, algorithms };
}

/**
 * An {@link IdentityVerifier} for signed JWT assertions, with jose: an IdP token proves an approver
 * (roles from a configurable claim) and a workload OIDC token proves an NHI requester (e.g. GitHub
 * Actions' `repository`, `ref`, `run_id`). Checks signature against the issuer's JWKS, issuer,
 * audience, expiry and not-before with bounded clock skew; refuses unsigned (`alg: none`) and HMAC
 * tokens before any key lookup, so a public key can never be used as an HMAC secret.
 */
export function createJwtIdentityVerifier(options: JwtIdentityVerifierOptions): IdentityVerifier {
  const clock = options.clock ?? systemClock;
  const tolerance = options.clockToleranceSeconds ?? 30;
  const issuers: Partial<Record<'approver' | 'workload', Compiled>> = {
    ...(options.approvers ? { approver: compile(options.approvers) } : {}),
    ...(options.workloads ? { workload: compile(options.workloads) } : {}),
  };

  return {
    async verify(assertion, purpose) {
      if (typeof assertion !== 'string' || assertion.split('.').length !== 3)
        throw reject(purpose, 'malformed', 'not a compact JWS (header.payload.signature)');
      let header: ReturnType<typeof decodeProtectedHeader>;
      try {
        header = decodeProtectedHeader(assertion);
      } catch {
        throw reject(purpose, 'malformed', 'the protected header cannot be decoded');
      }
      const alg = typeof header.alg === 'string' ? header.alg : '';
      if (!alg || alg.toLowerCase() === 'none' || assertion.endsWith('.'))
        throw reject(purpose, 'unsigned', 'unsigned tokens (alg none) are never accepted');
      if (/^HS/i.test(alg))
        throw reject(
          purpose,
          'algorithm',
          `symmetric algorithm ${alg} is refused; assertions must be signed with the issuer's private key`,
        );
      const cfg = issuers[purpose];
      if (!cfg)
        throw reject(purpose, 'not-configured', `no trusted issuer is configured for ${purpose} assertions`);
      if (!cfg.algorithms.includes(alg))
        throw reject(purpose, 'algorithm', `algorithm ${alg} is not accepted (${cfg.algorithms.join(', ')})`);
      const subjectClaim = cfg.opts.subjectClaim ?? 'sub';
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(assertion, cfg.getKey, {
          issuer: cfg.opts.issuer,
          audience: cfg.opts.audience,
          algorithms: cfg.algorithms,
          clockTolerance: tolerance,
          currentDate: clock.now(),
          requiredClaims: ['exp', 'iss', 'aud'],
          ...(options.maxTokenAgeSeconds ? { maxTokenAge: options.maxTokenAgeSeconds } : {}),
        }));
      } catch (err) {
        if (err instanceof joseErrors.JWTExpired) {
          if (err.claim === 'iat')
            throw reject(purpose, 'too-old', `issued more than ${options.maxTokenAgeSeconds}s ago`);
          throw reject(
            purpose,
            'expired',
            `expired at ${new Date(Number(err.payload.exp) * 1000).toISOString()}`,
          );
        }
        if (err instanceof joseErrors.JWTClaimValidationFailed) {
          if (err.claim === 'iss')
            throw reject(
              purpose,
              'issuer',
              `issuer ${String(err.payload.iss)} is not trusted for ${purpose}s`,
            );
          if (err.claim === 'aud')
            throw reject(
              purpose,
              'audience',
              `audience ${JSON.stringify(err.payload.aud)} is not this service's`,
            );
          if (err.claim === 'nbf')
            throw reject(purpose, 'not-yet-valid', 'not valid yet (nbf in the future)');
          throw reject(purpose, 'claims', `claim ${err.claim} is invalid (${err.reason})`);
        }
        if (err instanceof joseErrors.JWKSNoMatchingKey)
          throw reject(purpose, 'key', `no trusted key matches kid ${String(header.kid)}`);
        if (err instanceof joseErrors.JWSSignatureVerificationFailed)
          throw reject(purpose, 'signature', 'the signature does not verify');
        if (err instanceof joseErrors.JOSEAlgNotAllowed)
          throw reject(purpose, 'algorithm', `algorithm ${alg} is not accepted`);
        if (err instanceof joseErrors.JWKSTimeout || err instanceof joseErrors.JWKSInvalid) {
          throw new GrantlineError(
            ErrorCodes.IDENTITY,
            `${purpose} identity assertion could not be checked: the issuer's JWKS is unavailable`,
            {
              retryable: true,
              details: { reason: 'key', purpose },
            },
          );
        }
        throw reject(
          purpose,
          'malformed',
          `the token is not valid (${err instanceof Error ? err.name : 'error'})`,
        );
      }
      const subject = claimAt(payload, subjectClaim);
      if (typeof subject !== 'string' || subject.length === 0)
        throw reject(purpose, 'claims', `claim ${subjectClaim} (the subject) is missing`);
      for (const [name, expected] of Object.entries(cfg.opts.requiredClaims ?? {})) {
        const actual = claimAt(payload, name);
        const allowed = Array.isArray(expected) ? expected : [expected];
        if (typeof actual !== 'string' || !allowed.includes(actual)) {
          throw reject(
            purpose,
            'claims',
            `claim ${name} is ${JSON.stringify(actual)}, expected ${allowed.join(' or ')}`,
          );
        }
      }
      const roles = purpose === 'approver' ? rolesOf(claimAt(payload, cfg.opts.rolesClaim ?? 'roles')) : [];
      const teams =
        purpose === 'approver' && cfg.opts.teamsClaim
          ? rolesOf(claimAt(payload, cfg.opts.teamsClaim))
          : undefined;
      return {
        subject,
        issuer: String(payload.iss),
        ...(typeof header.kid === 'string' ? { kid: header.kid } : {}),
        roles,
        ...(teams ? { teams } : {}),
        claims: { ...payload },
      } satisfies VerifiedIdentity;
    },
  };
}
