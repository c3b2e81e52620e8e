import { type JsonWebKey, type KeyObject, createPublicKey, verify as nodeVerify } from 'node:crypto';
import {
  type CryptoKey,
  FlattenedSign,
  type JSONWebKeySet,
  type JWK,
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importJWK,
} from 'jose';
import { ErrorCodes, GrantlineError } from './errors.js';

/** Signature algorithms Grantline signs with: Ed25519 by default, P-256 ECDSA where FIPS curves are required. */
export type SigningAlgorithm = 'EdDSA' | 'ES256';

/** The algorithms a Grantline verifier accepts. Never `none`, never HMAC. */
export const SIGNING_ALGORITHMS: readonly SigningAlgorithm[] = ['EdDSA', 'ES256'];

/** A detached JWS signature (RFC 7515 flattened JSON serialization, RFC 7797 unencoded payload). */
export interface DetachedSignature {
  /** base64url of the protected header (`alg`, `kid`, `typ`, `b64: false`, `crit: ["b64"]`). */
  protected: string;
  /** base64url of the signature. */
  signature: string;
}

/**
 * Signs evidence and checkpoints. The private key never leaves the signer; verifiers need only
 * {@link Signer.publicJwk}, published in a JWKS.
 */
export interface Signer {
  /** Key id put in every signature's protected header; verifiers select the public key by it. */
  readonly kid: string;
  readonly alg: SigningAlgorithm;
  /** The public key as a JWK with `kid`, `alg` and `use: "sig"`. */
  readonly publicJwk: JWK;
  /**
   * Signs `payload` (its exact UTF-8 bytes, unencoded per RFC 7797) with `typ` in the protected header.
   * @throws GrantlineError `ERR_EVIDENCE` when the key cannot sign.
   */
  sign(payload: string, typ: string): Promise<DetachedSignature>;
}

/** A private and public JWK pair as produced by {@link generateSigningKey}. */
export interface SigningKeyPair {
  /** Keep secret: holds `d`. Load it into {@link createJoseSigner}. */
  privateJwk: JWK;
  /** Publish it: what auditors put in their JWKS. */
  publicJwk: JWK;
}

function algOf(jwk: JWK): SigningAlgorithm {
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'EdDSA';
  if (jwk.kty === 'EC' && jwk.crv === 'P-256') return 'ES256';
  throw new GrantlineError(
    ErrorCodes.VALIDATION,
    `signer: unsupported key type ${String(jwk.kty)}/${String(jwk.crv)}; use Ed25519 (OKP) or P-256 (EC)`,
    {
      details: { where: 'createJoseSigner', path: ['privateJwk', 'kty'] },
    },
  );
}

/** The public members of a JWK (drops `d` and every other private parameter). */
export function publicJwkOf(jwk: JWK): JWK {
  const {
    d: _d,
    p: _p,
    q: _q,
    dp: _dp,
    dq: _dq,
    qi: _qi,
    oth: _oth,
    k: _k,
    key_ops: _ops,
    ext: _ext,
    ...pub
  } = jwk as JWK & { oth?: unknown };
  return pub;
}

/**
 * Generates a fresh signing key pair (Ed25519 by default). The `kid` is the RFC 7638 thumbprint of the
 * public key, so it is stable and collision-free without coordination.
 */
export async function generateSigningKey(alg: SigningAlgorithm = 'EdDSA'): Promise<SigningKeyPair> {
  const pair = await generateKeyPair(
    alg,
    alg === 'EdDSA' ? { crv: 'Ed25519', extractable: true } : { extractable: true },
  );
  const privateJwk = await exportJWK(pair.privateKey);
  const kid = await calculateJwkThumbprint(publicJwkOf(privateJwk));
  const withMeta = { ...privateJwk, kid, alg, use: 'sig' };
  return { privateJwk: withMeta, publicJwk: publicJwkOf(withMeta) };
}

/** Order n of the P-256 group (ES256). */
const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
/** n / 2: an ES256 signature whose `s` is above it is "high-S". */
const P256_HALF_N = P256_N >> 1n;

/** `s` of a 64-byte ES256 (IEEE P1363, `r || s`) signature. */
function es256S(signature: Uint8Array): bigint {
  return BigInt(`0x${Buffer.from(signature.subarray(32, 64)).toString('hex')}`);
}

/**
 * The low-S form of an ES256 signature (base64url): `(r, n − s)` when `s > n/2`, else as it is. Both
 * verify for the same content, so without one chosen form anyone could change the bytes of a signed
 * document; verifiers refuse the high-S one. WebCrypto and OpenSSL produce either, at random.
 */
function lowS(signature: string): string {
  const bytes = Buffer.from(signature, 'base64url');
  if (bytes.length !== 64) return signature;
  const sv = es256S(bytes);
  if (sv <= P256_HALF_N) return signature;
  const low = Buffer.from((P256_N - sv).toString(16).padStart(64, '0'), 'hex');
  return Buffer.concat([bytes.subarray(0, 32), low]).toString('base64url');
}

/** Options for {@link createJoseSigner}. */
export interface JoseSignerOptions {
  /** The private key as a JWK (`OKP`/`Ed25519` or `EC`/`P-256`), with `d`. */
  privateJwk: JWK;
  /** Overrides the key id (default: the JWK's `kid`, else its RFC 7638 thumbprint). */
  kid?: string;
}

/**
 * A {@link Signer} backed by jose. The algorithm follows the key: Ed25519 → EdDSA, P-256 → ES256
 * (ES256 signatures are normalised to low S, the only form {@link verifyDetached} accepts).
 * @throws GrantlineError `ERR_VALIDATION` for a public-only key or an unsupported key type.
 */
export async function createJoseSigner(options: JoseSignerOptions): Promise<Signer> {
  const jwk = options?.privateJwk;
  if (!jwk || typeof jwk !== 'object' || typeof jwk.d !== 'string') {
    throw new GrantlineError(ErrorCodes.VALIDATION, 'signer: privateJwk must be a private JWK (with d)', {
      details: { where: 'createJoseSigner', path: ['privateJwk', 'd'] },
    });
  }
  const alg = algOf(jwk);
  const pub = publicJwkOf(jwk);
  const kid = options.kid ?? jwk.kid ?? (await calculateJwkThumbprint(pub));
  let key: CryptoKey | Uint8Array;
  try {
    key = await importJWK({ ...jwk, alg }, alg);
  } catch (err) {
    // The import error may quote key material; report only its class.
    throw new GrantlineError(
      ErrorCodes.VALIDATION,
      `signer: the private key could not be imported (${err instanceof Error ? err.name : 'error'})`,
      {
        details: { where: 'createJoseSigner', path: ['privateJwk'] },
      },
    );
  }
  const publicJwk: JWK = { ...pub, kid, alg, use: 'sig' };
  const encoder = new TextEncoder();
  return {
    kid,
    alg,
    publicJwk,
    async sign(payload, typ) {
      try {
        const jws = await new FlattenedSign(encoder.encode(payload))
          .setProtectedHeader({ alg, kid, typ, b64: false, crit: ['b64'] })
          .sign(key);
        return {
          protected: jws.protected!,
          signature: alg === 'ES256' ? lowS(jws.signature) : jws.signature,
        };
      } catch (err) {
        throw new GrantlineError(
          ErrorCodes.EVIDENCE,
          `signer ${kid}: signing failed (${err instanceof Error ? err.name : 'error'})`,
          {
            details: { kid },
          },
        );
      }
    },
  };
}

/**
 * Builds the public JWKS auditors verify with. Key rotation: keep every retired public key in it, so
 * bundles and checkpoints signed before the rotation still verify. Private members are stripped.
 */
export function createJwks(...keys: (JWK | Signer)[]): JSONWebKeySet {
  return {
    keys: keys.map((k) =>
      publicJwkOf('publicJwk' in k && typeof k.sign === 'function' ? (k as Signer).publicJwk : (k as JWK)),
    ),
  };
}

/** Why a detached signature did not verify. */
export type SignatureFailure =
  | 'SIGNATURE_MALFORMED'
  | 'SIGNATURE_ALG_REFUSED'
  | 'SIGNATURE_TYPE_MISMATCH'
  | 'KEY_UNKNOWN'
  | 'SIGNATURE_INVALID';

/** Result of {@link verifyDetached}. */
export type DetachedVerification =
  | { ok: true; kid: string; alg: SigningAlgorithm }
  | { ok: false; code: SignatureFailure; message: string; kid?: string; alg?: string };

const B64URL = /^[A-Za-z0-9_-]*$/;
/**
 * Signing inputs from this size on are verified off the main thread, while verifyEvidence parses the
 * payload. The hop costs more than it saves on smaller bundles (measured on 2 cores: synchronous was
 * as fast or faster from 7 KiB up to about 1 MiB, 2,000 events, once the event hashes were confirmed
 * after the signature rather than meanwhile).
 */
const ASYNC_VERIFY_BYTES = 1024 * 1024;
const keyCache = new WeakMap<JWK, KeyObject>();
/**
 * Protected headers already decoded, by their base64url text (a signer puts the same header on every
 * signature: alg, kid, typ, b64, crit). Only headers that were canonical base64url of a JSON object.
 */
const headerCache = new Map<string, Readonly<Record<string, unknown>>>();

function keyFits(k: JWK, alg: SigningAlgorithm): boolean {
  if (k.alg !== undefined && k.alg !== alg) return false;
  if (k.use !== undefined && k.use !== 'sig') return false;
  return alg === 'EdDSA' ? k.kty === 'OKP' && k.crv === 'Ed25519' : k.kty === 'EC' && k.crv === 'P-256';
}

function publicKeyObject(k: JWK): KeyObject {
  let key = keyCache.get(k);
  if (!key) {
    key = createPublicKey({ key: publicJwkOf(k) as JsonWebKey, format: 'jwk' });
    keyCache.set(k, key);
  }
  return key;
}

/** True when `s` is the one canonical unpadded base64url spelling of its bytes. */
function canonicalB64url(s: unknown): s is string {
  if (typeof s !== 'string' || !B64URL.test(s) || s.length % 4 === 1) return false;
  // Trailing bits of the last character are ignored by decoders; refuse any spelling but the canonical one,
  // so that no byte of a signed document can change without the verification failing.
  return Buffer.from(s, 'base64url').toString('base64url') === s;
}

const utf8 = new TextEncoder();

/**
 * ASCII(protected) "." UTF-8(payload). Encoded first as if the payload were ASCII, the usual case
 * (one pass, no length count); when it is not (a character takes several bytes, so not all of it
 * fits), encoded again at its exact UTF-8 length.
 */
function signingInput(protectedHeader: string, payload: string): Buffer {
  const prefix = protectedHeader.length + 1;
  let input = Buffer.allocUnsafe(prefix + payload.length);
  const ascii = utf8.encodeInto(payload, input.subarray(prefix));
  if (ascii.read !== payload.length || ascii.written !== payload.length) {
    input = Buffer.allocUnsafe(prefix + Buffer.byteLength(payload, 'utf8'));
    input.write(payload, prefix, 'utf8');
  }
  input.write(protectedHeader, 0, 'latin1');
  input[prefix - 1] = 0x2e; // "."
  return input;
}

/**
 * Verifies a detached, unencoded-payload JWS over `payload` against a public JWKS. Only EdDSA and ES256
 * are accepted; the key is selected by `kid` and must be in `keys`. An ES256 signature must be in
 * low-S form (`s <= n/2`), else it is `SIGNATURE_MALFORMED`: `(r, n − s)` would verify as well.
 * @param bytes when given, `bytes.input` is set to the signing input (ASCII of the protected header,
 * `.`, then the payload's UTF-8 bytes) when it is built (not when the header or key is refused). The
 * caller may read it meanwhile, and do what it likes with it once the returned promise settles:
 * nothing here touches it after that.
 */
export async function verifyDetached(
  payload: string,
  sig: unknown,
  keys: JSONWebKeySet,
  typ: string,
  bytes?: { input?: Buffer },
): Promise<DetachedVerification> {
  const s = sig as Partial<DetachedSignature> | null;
  // A header seen before was canonical base64url of a JSON object: only its members are left to check.
  let header = typeof s?.protected === 'string' ? headerCache.get(s.protected) : undefined;
  if (
    !s ||
    typeof s !== 'object' ||
    (header === undefined && !canonicalB64url(s.protected)) ||
    !canonicalB64url(s.signature) ||
    s.signature.length === 0
  ) {
    return {
      ok: false,
      code: 'SIGNATURE_MALFORMED',
      message: 'protected header or signature is missing or not canonical base64url',
    };
  }
  const protectedHeader = s.protected as string; // a string: cached, or checked just above
  if (header === undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.from(protectedHeader, 'base64url').toString('utf8'));
    } catch {
      return { ok: false, code: 'SIGNATURE_MALFORMED', message: 'protected header is not JSON' };
    }
    if (!parsed || typeof parsed !== 'object')
      return { ok: false, code: 'SIGNATURE_MALFORMED', message: 'protected header is not an object' };
    header = Object.freeze(parsed as Record<string, unknown>);
    if (headerCache.size >= 64) headerCache.clear();
    headerCache.set(protectedHeader, header);
  }
  const alg = header.alg;
  const kid = typeof header.kid === 'string' ? header.kid : undefined;
  if (typeof alg !== 'string' || !SIGNING_ALGORITHMS.includes(alg as SigningAlgorithm)) {
    return {
      ok: false,
      code: 'SIGNATURE_ALG_REFUSED',
      message: `algorithm ${String(alg)} is not accepted (EdDSA or ES256 only)`,
      alg: String(alg),
    };
  }
  if (!kid) return { ok: false, code: 'SIGNATURE_MALFORMED', message: 'protected header has no kid' };
  if (header.typ !== typ) {
    return {
      ok: false,
      code: 'SIGNATURE_TYPE_MISMATCH',
      message: `signature type is ${String(header.typ)}, expected ${typ}`,
      kid,
    };
  }
  if (header.b64 !== false)
    return {
      ok: false,
      code: 'SIGNATURE_MALFORMED',
      message: 'expected an unencoded payload (b64: false)',
      kid,
    };
  if (!keys || !Array.isArray(keys.keys) || !keys.keys.some((k) => k.kid === kid)) {
    return { ok: false, code: 'KEY_UNKNOWN', message: `no key with kid ${kid} in the JWKS`, kid, alg };
  }
  if (!Array.isArray(header.crit) || header.crit.length !== 1 || header.crit[0] !== 'b64') {
    return { ok: false, code: 'SIGNATURE_MALFORMED', message: 'crit must be exactly ["b64"]', kid };
  }
  const candidates = keys.keys.filter((k) => k.kid === kid && keyFits(k, alg as SigningAlgorithm));
  if (candidates.length !== 1) {
    return {
      ok: false,
      code: 'KEY_UNKNOWN',
      message:
        candidates.length === 0
          ? `no ${alg} key with kid ${kid} in the JWKS`
          : `several ${alg} keys share kid ${kid} in the JWKS`,
      kid,
      alg,
    };
  }
  let key: KeyObject;
  try {
    key = publicKeyObject(candidates[0]!);
  } catch {
    return { ok: false, code: 'KEY_UNKNOWN', message: `key ${kid} in the JWKS cannot be imported`, kid, alg };
  }
  // RFC 7515 §5.2 with RFC 7797: the signing input is ASCII(protected) "." payload bytes, built with one
  // UTF-8 encoding of the payload and no intermediate copy. node:crypto (OpenSSL) is about 5x faster
  // per bundle than the WebCrypto path jose takes.
  const input = signingInput(protectedHeader, payload);
  if (bytes) bytes.input = input;
  const signature = Buffer.from(s.signature, 'base64url');
  if (alg === 'ES256' && signature.length === 64 && es256S(signature) > P256_HALF_N) {
    // (r, n − s) verifies too: only the low-S form is accepted, so no byte of a signed document can change.
    return {
      ok: false,
      code: 'SIGNATURE_MALFORMED',
      message: `ES256 signature by ${kid} is not in low-S form (s > n/2)`,
      kid,
      alg,
    };
  }
  let ok = false;
  if (signature.length === 64) {
    const how = alg === 'EdDSA' ? key : { key, dsaEncoding: 'ieee-p1363' as const };
    const digest = alg === 'EdDSA' ? null : 'sha256';
    // A large payload is verified on the libuv threadpool, so a caller that does not await at once
    // (verifyEvidence) parses meanwhile; a small one synchronously, where the hop would cost more.
    ok =
      input.length >= ASYNC_VERIFY_BYTES
        ? await new Promise<boolean>((resolve) => {
            try {
              nodeVerify(digest, input, how, signature, (error, valid) => resolve(!error && valid));
            } catch {
              resolve(false);
            }
          })
        : nodeVerify(digest, input, how, signature);
  }
  return ok
    ? { ok: true, kid, alg: alg as SigningAlgorithm }
    : {
        ok: false,
        code: 'SIGNATURE_INVALID',
        message: `signature by ${kid} does not match the content`,
        kid,
        alg,
      };
}
