import { createHash } from 'node:crypto';
import {
  type CryptoKey,
  type JWK,
  SignJWT,
  errors as joseErrors,
  exportJWK,
  generateKeyPair,
  importJWK,
  jwtVerify,
} from 'jose';
import { z } from 'zod';
import { ErrorCodes, GrantlineError } from './errors.js';
import type { Executor, RevokeContext } from './ports.js';

/**
 * Where issued and revoked token ids (never the tokens) are kept; share one between the executor and
 * every verifier. Implement it over the host's database or cache for several instances.
 */
export interface TokenRevocationList {
  /** Records that `jti` is about to be issued and lives until `until` (called before signing). */
  issued(jti: string, until: Date): Promise<void>;
  /** Marks `jti` revoked until `until`; returns false when it was revoked already or never issued. */
  add(jti: string, until: Date): Promise<boolean>;
  has(jti: string): Promise<boolean>;
}

/** An in-process revocation list; entries are dropped once the token would have expired anyway. */
export function createMemoryRevocationList(
  clock: { now(): Date } = { now: () => new Date() },
): TokenRevocationList {
  const revoked = new Map<string, number>();
  const live = new Map<string, number>();
  const prune = () => {
    const t = clock.now().getTime() - 60_000;
    for (const [k, until] of revoked) if (until < t) revoked.delete(k);
    for (const [k, until] of live) if (until < t) live.delete(k);
  };
  return {
    async issued(jti, until) {
      prune();
      live.set(jti, Math.max(until.getTime(), live.get(jti) ?? 0));
    },
    async add(jti, until) {
      prune();
      // Deny-list even a jti never seen: cheap, and safe if a crash lost the record of issuance.
      // Kept until the last token ever signed for this jti (a renewal signs a later one) has expired.
      const lastExpiry = live.get(jti) ?? 0;
      const wasLive = live.delete(jti);
      const known = revoked.get(jti);
      revoked.set(jti, Math.max(until.getTime(), lastExpiry, known ?? 0));
      return wasLive && known === undefined;
    },
    async has(jti) {
      return revoked.has(jti);
    },
  };
}

/** Claims of an accepted Grantline access token. */
export interface AcceptedToken {
  caseId: string;
  targetId: string;
  subject: string;
  audience: string;
  scope: string[];
  expiresAt: Date;
  jti: string;
}

/** Accepts or rejects tokens issued by {@link createTokenExecutor}; the service that receives them uses it. */
export interface TokenVerifier {
  /**
   * Accepts `token` for `expected.audience`, the resource of the service that calls it: required,
   * so that a token issued for another resource (a pre-approved low-risk one, say) is never accepted
   * by a service that forgot to say which resource it is.
   * @throws GrantlineError `ERR_TOKEN_REJECTED` with `details.reason` one of `revoked`, `expired`,
   * `audience`, `invalid`; `ERR_VALIDATION` when `expected.audience` is not a non-empty string.
   */
  verify(token: string, expected: { audience: string }): Promise<AcceptedToken>;
}

export interface TokenAuthorityOptions {
  /** `iss` of issued tokens. */
  issuer: string;
  /** Executor system name (default `token`). */
  system?: string;
  /** Private signing key as JWK (Ed25519 `OKP` or P-256 `EC`); generated when omitted. */
  privateJwk?: JWK;
  revocations?: TokenRevocationList;
  clock?: { now(): Date };
}

/** The token executor, its verifier and the public key to hand to relying services. */
export interface TokenAuthority {
  executor: Executor<TokenParams>;
  verifier: TokenVerifier;
  revocations: TokenRevocationList;
  publicJwk: JWK;
}

const tokenParamsSchema = z.strictObject({
  /** Cap on the token lifetime in seconds, below the case window (optional). */
  maxTtlSeconds: z.number().int().positive().optional(),
});
export type TokenParams = z.output<typeof tokenParamsSchema>;

const jtiOf = (caseId: string, targetId: string) => `${caseId}:${targetId}`;

function reject(reason: 'revoked' | 'expired' | 'audience' | 'invalid', message: string): GrantlineError {
  return new GrantlineError(ErrorCodes.TOKEN_REJECTED, `token rejected: ${message}`, { details: { reason } });
}

/**
 * A real credential system for the quickstart and for hosts that guard their own APIs: the executor
 * issues short-lived signed access tokens (JWT, `exp` = case expiry, `jti` = case:target), revoke
 * puts the `jti` on a revocation list the verifier consults, and verify presents a freshly signed
 * probe with the same `jti` to the verifier and expects it to be refused.
 */
export async function createTokenAuthority(options: TokenAuthorityOptions): Promise<TokenAuthority> {
  const clock = options.clock ?? { now: () => new Date() };
  const revocations = options.revocations ?? createMemoryRevocationList(clock);
  const system = options.system ?? 'token';
  let privateKey: CryptoKey | Uint8Array;
  let publicKey: CryptoKey | Uint8Array;
  let alg: string;
  let publicJwk: JWK;
  if (options.privateJwk) {
    alg = options.privateJwk.kty === 'EC' ? 'ES256' : 'EdDSA';
    privateKey = await importJWK(options.privateJwk, alg);
    const { d: _d, ...pub } = options.privateJwk;
    publicJwk = pub;
    publicKey = await importJWK(pub, alg);
  } else {
    alg = 'EdDSA';
    const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    privateKey = pair.privateKey;
    publicKey = pair.publicKey;
    publicJwk = await exportJWK(pair.publicKey);
  }
  const kid = createHash('sha256').update(JSON.stringify(publicJwk)).digest('base64url').slice(0, 16);
  publicJwk = { ...publicJwk, kid, alg, use: 'sig' };

  const sign = (claims: Record<string, unknown>, sub: string, aud: string, jti: string, exp: Date) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg, kid, typ: 'JWT' })
      .setIssuer(options.issuer)
      .setSubject(sub)
      .setAudience(aud)
      .setJti(jti)
      .setIssuedAt(Math.floor(clock.now().getTime() / 1000))
      .setExpirationTime(Math.floor(exp.getTime() / 1000))
      .sign(privateKey);

  const verifier: TokenVerifier = {
    async verify(token, expected) {
      const audience: unknown = (expected as { audience?: unknown } | undefined)?.audience;
      if (typeof audience !== 'string' || audience.length === 0) {
        throw new GrantlineError(
          ErrorCodes.VALIDATION,
          'verify: expected.audience is required: the resource this service is, so that a token for another resource is refused',
          { details: { where: 'verify', path: ['expected', 'audience'] } },
        );
      }
      if (typeof token !== 'string' || token.split('.').length !== 3)
        throw reject('invalid', 'not a compact JWT');
      let payload: Record<string, unknown>;
      try {
        ({ payload } = await jwtVerify(token, publicKey, {
          issuer: options.issuer,
          algorithms: [alg],
          currentDate: clock.now(),
          audience,
        }));
      } catch (err) {
        if (err instanceof joseErrors.JWTExpired) throw reject('expired', 'expired');
        if (err instanceof joseErrors.JWTClaimValidationFailed && err.claim === 'aud')
          throw reject('audience', 'wrong audience');
        throw reject('invalid', err instanceof Error ? err.constructor.name : 'verification failed');
      }
      const jti = String(payload.jti ?? '');
      if (!jti || (await revocations.has(jti))) throw reject('revoked', `token ${jti} was revoked`);
      return {
        caseId: String(payload.gl_case),
        targetId: String(payload.gl_target),
        subject: String(payload.sub),
        audience: String(payload.aud),
        scope: typeof payload.scope === 'string' && payload.scope ? payload.scope.split(' ') : [],
        expiresAt: new Date(Number(payload.exp) * 1000),
        jti,
      };
    },
  };

  const probe = async (ctx: RevokeContext<TokenParams>) => {
    const jti = jtiOf(ctx.grant.id, ctx.target.id);
    const token = await sign(
      { gl_case: ctx.grant.id, gl_target: ctx.target.id, gl_probe: true },
      ctx.grant.subject.id,
      ctx.target.resource,
      jti,
      // Same lifetime as the real token: once that has run out, "expired" is proof of absence too.
      ctx.issuance ? new Date(ctx.issuance.expiresAt) : new Date(clock.now().getTime() + 60_000),
    );
    try {
      await verifier.verify(token, { audience: ctx.target.resource });
      return {
        status: 'present' as const,
        method: 'signed-probe',
        observation: { jti, accepted: true, at: clock.now().toISOString() },
      };
    } catch (err) {
      const reason = err instanceof GrantlineError ? String(err.details.reason) : 'error';
      if (reason !== 'revoked' && reason !== 'expired') throw err;
      return {
        status: 'absent' as const,
        method: 'signed-probe',
        observation: { jti, rejected: reason, kid, at: clock.now().toISOString() },
      };
    }
  };

  const executor: Executor<TokenParams> = {
    system,
    paramsSchema: tokenParamsSchema,
    async issue(ctx) {
      const end = ctx.grant.window.expiresAt
        ? new Date(ctx.grant.window.expiresAt)
        : new Date(ctx.now.getTime() + ctx.grant.window.durationSeconds * 1000);
      const cap = ctx.target.params.maxTtlSeconds
        ? new Date(ctx.now.getTime() + ctx.target.params.maxTtlSeconds * 1000)
        : end;
      const expiresAt = new Date(Math.min(cap.getTime(), end.getTime()));
      const jti = jtiOf(ctx.grant.id, ctx.target.id);
      await revocations.issued(jti, expiresAt);
      const token = await sign(
        { gl_case: ctx.grant.id, gl_target: ctx.target.id, scope: (ctx.target.permissions ?? []).join(' ') },
        ctx.grant.subject.id,
        ctx.target.resource,
        jti,
        expiresAt,
      );
      // The reference is the jti: re-issuing for the same case and target yields the same jti, so one
      // revocation rejects every copy; no second live credential can escape it.
      return { ref: { jti, kid }, expiresAt, secret: { token } };
    },
    async revoke(ctx) {
      const jti = jtiOf(ctx.grant.id, ctx.target.id);
      // Until no token of this case can still be valid: an extension's renewal that raced this
      // revocation may have signed one past the recorded expiry, never past the hard limit.
      const recorded = ctx.issuance ? Date.parse(ctx.issuance.expiresAt) : Number.NaN;
      const hardLimit = ctx.grant.window.hardLimitAt ? Date.parse(ctx.grant.window.hardLimitAt) : Number.NaN;
      const until = Number.isFinite(recorded)
        ? new Date(Math.max(recorded, Number.isFinite(hardLimit) ? hardLimit : recorded))
        : new Date(clock.now().getTime() + 31 * 24 * 3600 * 1000);
      const added = await revocations.add(jti, until);
      return { alreadyGone: !added, detail: { jti } };
    },
    verify: probe,
    async renew(ctx) {
      // A JWT's expiry cannot change: sign a replacement with the same jti, so revoking the case
      // still rejects the old and the new token alike.
      const jti = jtiOf(ctx.grant.id, ctx.target.id);
      if (await revocations.has(jti)) {
        throw new GrantlineError(ErrorCodes.EXECUTOR, `token ${jti} is revoked and cannot be renewed`, {
          retryable: false,
        });
      }
      await revocations.issued(jti, ctx.expiresAt);
      const token = await sign(
        { gl_case: ctx.grant.id, gl_target: ctx.target.id, scope: (ctx.target.permissions ?? []).join(' ') },
        ctx.grant.subject.id,
        ctx.target.resource,
        jti,
        ctx.expiresAt,
      );
      return { expiresAt: ctx.expiresAt, secret: { token } };
    },
  };
  return { executor, verifier, revocations, publicJwk };
}
