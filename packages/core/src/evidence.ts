import type { JSONWebKeySet } from 'jose';
import { z } from 'zod';
import { GENESIS_HASH, canonicalJson } from './audit.js';
import { canonicalHashMatches, checkChain, sha256Bytes, sha256Text } from './chain-check.js';
import { type SignedCheckpoint, verifyCheckpoint } from './checkpoint.js';
import { ErrorCodes, GrantlineError } from './errors.js';
import { isoAt } from './iso.js';
import {
  type AuditEvent,
  type Grant,
  type GrantState,
  type Issuance,
  type PolicySnapshot,
  type Principal,
  type TargetRevocation,
  type TargetVerification,
  GRANT_STATES,
  sameIdentity,
} from './model.js';
import { type CommandType, TRANSITIONS } from './lifecycle.js';
import {
  type CompiledPolicy,
  type Policy,
  policySnapshotHash,
  quorumMet,
  snapshotOfBreakGlass,
  snapshotOfRule,
} from './policy.js';
import { type Signer, type SigningAlgorithm, verifyDetached } from './signer.js';

/** Format tag of the signed payload; a verifier refuses formats it does not know. */
export const EVIDENCE_FORMAT = 'grantline.evidence/v1';
/** `typ` of the evidence signature's protected header. */
export const EVIDENCE_TYP = 'grantline-evidence+jws';

/** What an evidence bundle's signature covers. Every field is part of the signed bytes. */
export interface EvidencePayload {
  format: typeof EVIDENCE_FORMAT;
  caseId: string;
  generatedAt: string;
  signer: { kid: string; alg: SigningAlgorithm };
  /** The case record as stored. */
  record: Grant;
  /** Every audit event of the case, in `seq` order. */
  events: AuditEvent[];
  /** Head of the chain: the last event's `seq` and `hash`. */
  chain: { seq: number; head: string };
  policy: {
    /** SHA-256 of the canonical policy document the case was decided under. */
    hash: string;
    snapshot: PolicySnapshot;
    /** SHA-256 of the canonical snapshot. */
    snapshotHash: string;
    /** The whole policy document, when the producer still had the version the case was decided under. */
    document?: Policy;
  };
}

/**
 * A signed evidence bundle: a JWS in flattened JSON serialization whose payload is the canonical JSON
 * (RFC 8785) of an {@link EvidencePayload}, carried unencoded (RFC 7797) so an auditor can read it.
 * Exactly these three members; anything else makes the bundle malformed.
 */
export interface EvidenceBundle {
  payload: string;
  protected: string;
  signature: string;
}

/** Stable codes of what {@link verifyEvidence} can find. */
export type EvidenceProblemCode =
  | 'BUNDLE_MALFORMED'
  | 'FORMAT_UNSUPPORTED'
  | 'SIGNATURE_MALFORMED'
  | 'SIGNATURE_ALG_REFUSED'
  | 'SIGNATURE_TYPE_MISMATCH'
  | 'KEY_UNKNOWN'
  | 'SIGNATURE_INVALID'
  | 'SIGNER_MISMATCH'
  | 'CHAIN_EMPTY'
  | 'CHAIN_SEQ_GAP'
  | 'CHAIN_PREV_MISMATCH'
  | 'CHAIN_HASH_MISMATCH'
  | 'CHAIN_CASE_MISMATCH'
  | 'CHAIN_HEAD_MISMATCH'
  | 'RECORD_CASE_MISMATCH'
  | 'RECORD_HEAD_MISMATCH'
  | 'RECORD_STATE_MISMATCH'
  | 'RECORD_APPROVALS_MISMATCH'
  | 'RECORD_PARTIES_MISMATCH'
  | 'RECORD_CREATED_MISMATCH'
  | 'RECORD_JUSTIFICATION_MISMATCH'
  | 'RECORD_TARGETS_MISMATCH'
  | 'RECORD_WINDOW_MISMATCH'
  | 'RECORD_DECISION_MISMATCH'
  | 'RECORD_REVOCATION_MISMATCH'
  | 'RECORD_USAGE_MISMATCH'
  | 'RECORD_BREAKGLASS_MISMATCH'
  | 'POLICY_SNAPSHOT_MISMATCH'
  | 'POLICY_DOCUMENT_MISMATCH'
  | 'EVENT_TIME_ORDER'
  | 'EVENT_OUT_OF_ORDER'
  | 'ISSUED_WITHOUT_APPROVAL'
  | 'QUORUM_NOT_MET'
  | 'EXTENSION_NOT_ALLOWED'
  | 'WINDOW_EXCEEDS_MAX'
  | 'ROLE_NOT_QUALIFIED'
  | 'SELF_APPROVAL'
  | 'OPERATOR_APPROVAL'
  | 'APPROVER_NOT_HUMAN'
  | 'DUPLICATE_APPROVER'
  | 'APPROVER_NOT_PROVEN'
  | 'WORKLOAD_NOT_PROVEN'
  | 'REVOKED_BEFORE_ISSUANCE'
  | 'REVOCATION_INCOMPLETE'
  | 'VERIFIED_BEFORE_REVOCATION'
  | 'VERIFICATION_INCOMPLETE'
  | 'BREAKGLASS_RULE_MISMATCH'
  | 'SELF_REVIEW'
  | 'REVIEWER_NOT_HUMAN'
  | 'OPERATOR_TEAM_REVIEW'
  | 'BREAKGLASS_REJECTED_NOT_ENDED'
  | 'BREAKGLASS_REVIEW_UNREPORTED'
  | 'BREAKGLASS_REVIEW_OVERDUE'
  | 'BREAKGLASS_REVIEW_PENDING'
  | 'CHECKPOINT_INVALID'
  | 'CHECKPOINT_TRUNCATED'
  | 'CHECKPOINT_MISMATCH'
  | 'CHECKPOINT_CASE_UNKNOWN';

/** One finding. `error` makes the bundle invalid; `warning` is reported but does not. */
export interface EvidenceProblem {
  code: EvidenceProblemCode;
  severity: 'error' | 'warning';
  message: string;
  /** The event concerned, when there is one. */
  seq?: number;
  /** Where in the payload, when it is one field. */
  path?: (string | number)[];
}

/** Result of {@link verifyEvidence}. */
export interface EvidenceVerification {
  /** True only when the signature verifies and no `error` problem was found. */
  valid: boolean;
  problems: EvidenceProblem[];
  /** The key that signed, when the signature verified. */
  kid?: string;
  /** The parsed payload, when it could be parsed (trust it only when `valid`). */
  payload?: EvidencePayload;
}

/** Options for {@link verifyEvidence}. */
export interface VerifyEvidenceOptions {
  /** The public keys to trust (a JWKS). Keep retired keys in it to verify older bundles. */
  keys: JSONWebKeySet;
  /** A signed store checkpoint: the bundle must contain the case's chain up to the head it recorded. */
  checkpoint?: SignedCheckpoint;
  /** Keys for the checkpoint, when they differ from `keys`. */
  checkpointKeys?: JSONWebKeySet;
  /** "Now" for overdue checks (default: the bundle's `generatedAt`). */
  now?: Date;
}

/** Input of {@link createEvidence}. */
export interface CreateEvidenceInput {
  grant: Grant;
  events: readonly AuditEvent[];
  signer: Signer;
  now: Date;
  /** The compiled policy; embedded when its hash is the one the case was decided under. */
  policy?: CompiledPolicy;
}

/**
 * Builds and signs the evidence bundle of one case. Its size grows linearly with the events. No
 * secret is added: the record and events never hold one (only references and fingerprints).
 * Produced even when the stored chain is broken, so the break itself is evidence.
 * @throws GrantlineError `ERR_EVIDENCE` when `events` do not belong to `grant` or signing fails.
 */
export async function createEvidence(input: CreateEvidenceInput): Promise<EvidenceBundle> {
  const { grant, events, signer, now } = input;
  if (events.some((e) => e.caseId !== grant.id)) {
    throw new GrantlineError(
      ErrorCodes.EVIDENCE,
      `evidence: events of another case were passed for case ${grant.id}`,
      {
        details: { caseId: grant.id },
      },
    );
  }
  const last = events[events.length - 1];
  const payload: EvidencePayload = {
    format: EVIDENCE_FORMAT,
    caseId: grant.id,
    generatedAt: now.toISOString(),
    signer: { kid: signer.kid, alg: signer.alg },
    record: grant,
    events: [...events],
    chain: { seq: last?.seq ?? 0, head: last?.hash ?? '' },
    policy: {
      hash: grant.policy.policyHash,
      snapshot: grant.policy,
      snapshotHash: policySnapshotHash(grant.policy),
      ...(input.policy && input.policy.hash === grant.policy.policyHash
        ? { document: input.policy.policy }
        : {}),
    },
  };
  const text = canonicalJson(payload);
  const sig = await signer.sign(text, EVIDENCE_TYP);
  return { payload: text, protected: sig.protected, signature: sig.signature };
}

const bundleShape = z.strictObject({ payload: z.string(), protected: z.string(), signature: z.string() });
/** A plain object whose own members are exactly payload, protected and signature, all strings. */
function isBundleShape(v: unknown): v is EvidenceBundle {
  if (!isObj(v) || typeof v.payload !== 'string' || typeof v.protected !== 'string') return false;
  if (typeof v.signature !== 'string' || Object.getPrototypeOf(v) !== Object.prototype) return false;
  let n = 0;
  for (const k of Object.keys(v)) {
    if (k !== 'payload' && k !== 'protected' && k !== 'signature') return false;
    n += 1;
  }
  return (
    n === 3 && Object.hasOwn(v, 'payload') && Object.hasOwn(v, 'protected') && Object.hasOwn(v, 'signature')
  );
}
const PAYLOAD_KEYS = ['caseId', 'chain', 'events', 'format', 'generatedAt', 'policy', 'record', 'signer'];

/**
 * The payload's shape, checked by hand (zod costs more than the signature for small bundles). Only
 * what the checks rely on is required; the record's remaining fields are covered by the signature and
 * compared with the events. Returns the first issue, or undefined.
 */
function payloadShapeIssue(v: unknown): { path: (string | number)[]; message: string } | undefined {
  const bad = (path: (string | number)[], message: string) => ({ path, message });
  if (!isObj(v)) return bad([], 'not an object');
  const keys = Object.keys(v);
  const extra = keys.find((k) => !PAYLOAD_KEYS.includes(k));
  if (extra) return bad([extra], 'unknown member');
  const missing = PAYLOAD_KEYS.find((k) => !(k in v) && k !== 'policy');
  if (missing) return bad([missing], 'missing');
  if (typeof v.format !== 'string' || typeof v.caseId !== 'string')
    return bad(['format'], 'format and caseId must be strings');
  if (typeof v.generatedAt !== 'string' || !ISO.test(v.generatedAt))
    return bad(['generatedAt'], 'must be an ISO-8601 UTC time');
  if (!isObj(v.signer) || typeof v.signer.kid !== 'string' || typeof v.signer.alg !== 'string')
    return bad(['signer'], 'must be { kid, alg }');
  if (!isObj(v.chain) || typeof v.chain.seq !== 'number' || typeof v.chain.head !== 'string')
    return bad(['chain'], 'must be { seq, head }');
  if (!Array.isArray(v.events)) return bad(['events'], 'must be an array');
  const pol = v.policy;
  if (
    !isObj(pol) ||
    typeof pol.hash !== 'string' ||
    typeof pol.snapshotHash !== 'string' ||
    !isObj(pol.snapshot)
  ) {
    return bad(['policy'], 'must be { hash, snapshot, snapshotHash, document? }');
  }
  const snap = pol.snapshot;
  const req = snap.approvals;
  if (
    typeof snap.ruleId !== 'string' ||
    typeof snap.operator !== 'string' ||
    !isObj(req) ||
    typeof req.count !== 'number' ||
    !Array.isArray(req.roles)
  ) {
    return bad(['policy', 'snapshot'], 'must be a policy snapshot');
  }
  const r = v.record;
  if (!isObj(r)) return bad(['record'], 'must be an object');
  if (typeof r.id !== 'string' || !(GRANT_STATES as readonly unknown[]).includes(r.state))
    return bad(['record', 'state'], 'must be a case record');
  for (const k of ['requester', 'subject'] as const) {
    const x = r[k];
    if (!isObj(x) || typeof x.id !== 'string' || !Array.isArray(x.roles))
      return bad(['record', k], 'must be a principal');
  }
  if (!Array.isArray(r.targets) || !r.targets.every((t) => isObj(t) && typeof t.id === 'string'))
    return bad(['record', 'targets'], 'must be targets');
  if (
    !Array.isArray(r.approvals) ||
    !r.approvals.every((a) => isObj(a) && isObj(a.approver) && typeof a.role === 'string')
  ) {
    return bad(['record', 'approvals'], 'must be approvals');
  }
  if (!isObj(r.audit) || typeof r.audit.seq !== 'number' || typeof r.audit.head !== 'string')
    return bad(['record', 'audit'], 'must be { seq, head }');
  if (!isObj(r.policy)) return bad(['record', 'policy'], 'must be the policy snapshot');
  if (r.breakGlass !== undefined && (!isObj(r.breakGlass) || typeof r.breakGlass.reviewDueAt !== 'string'))
    return bad(['record', 'breakGlass'], 'malformed');
  return undefined;
}

/** Lifecycle state each event type leads to (events not listed leave the state as it is). */
const STATE_OF: Partial<Record<string, GrantState>> = {
  requested: 'requested',
  approved: 'approved',
  'breakglass.used': 'approved',
  denied: 'denied',
  cancelled: 'cancelled',
  expired: 'expired',
  'issue.started': 'issuing',
  issued: 'issued',
  'revoke.requested': 'revoking',
  revoked: 'revoked',
  verified: 'verified',
  failed: 'failed',
};

/**
 * The lifecycle commands whose step records each event type (lifecycle.ts `transition`). Not a
 * transition table: which states an event may come from, and lead to, is read from
 * {@link TRANSITIONS} through it ({@link EVENT_EDGES}). `requested` and `breakglass.used` open a case
 * (no command) and are checked on their own; event types not listed change nothing and are not checked.
 */
const EVENT_COMMANDS: Readonly<Record<string, readonly CommandType[]>> = {
  approval: ['approve'],
  approved: ['approve'],
  denied: ['deny'],
  // A rejected break-glass review cancels an approved case.
  cancelled: ['cancel', 'review'],
  expired: ['expire'],
  'issue.started': ['beginIssue'],
  'target.issued': ['issued', 'issueFailed'],
  issued: ['issued'],
  'issue.failed': ['issueFailed'],
  usage: ['recordUsage'],
  violation: ['recordUsage'],
  // A revocation starts on request, on a rollback, on a violating use or on a rejected review.
  'revoke.requested': ['requestRevoke', 'issued', 'issueFailed', 'recordUsage', 'review'],
  'target.revoked': ['targetRevoked'],
  revoked: ['targetRevoked'],
  'target.revoke-failed': ['targetRevokeFailed'],
  'target.verified': ['targetVerified'],
  verified: ['targetVerified'],
  failed: ['targetVerified'],
  'target.verify-failed': ['targetVerifyFailed'],
  review: ['review'],
  'review.overdue': ['reviewOverdue'],
  'target.issued-late': ['lateIssuance'],
  extended: ['extend'],
};

/**
 * For each event type of {@link EVENT_COMMANDS}: the states it may be recorded in and, from each, the
 * states it may lead to, as the union of its commands' rows of {@link TRANSITIONS}.
 */
const EVENT_EDGES: ReadonlyMap<string, ReadonlyMap<GrantState, ReadonlySet<GrantState>>> = new Map(
  Object.entries(EVENT_COMMANDS).map(([type, commands]) => {
    const edges = new Map<GrantState, Set<GrantState>>();
    for (const c of commands) {
      for (const [from, tos] of Object.entries(TRANSITIONS[c]) as [GrantState, readonly GrantState[]][]) {
        const set = edges.get(from) ?? new Set<GrantState>();
        for (const to of tos) set.add(to);
        edges.set(from, set);
      }
    }
    return [type, edges];
  }),
);

/**
 * Whether the lifecycle can record an event of `type` while the case is `from` and, when the event
 * changes the state (`changes`), leave it `to`. Events recorded midway through a step (an approval,
 * a target issued) only need a command allowed from `from`. True for types not in {@link EVENT_COMMANDS}.
 */
function transitionAllowed(type: string, from: GrantState, to: GrantState, changes: boolean): boolean {
  const edges = EVENT_EDGES.get(type);
  if (!edges) return true;
  const tos = edges.get(from);
  return tos !== undefined && (!changes || tos.has(to));
}

/**
 * Deep equality of JSON data (what a parsed payload holds): the same as `isDeepStrictEqual` there,
 * primitives by `Object.is`, objects by their own keys in any order; several times faster.
 */
function same(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!same(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) {
    if (!Object.hasOwn(b, k) || !same((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
      return false;
  }
  return true;
}

/**
 * Verifies an evidence bundle offline with nothing but a public JWKS (and optionally a checkpoint):
 * the signature, the hash chain (gap, reorder, insertion, deletion, edit), the record's agreement with
 * its events, and the lifecycle invariants under the embedded policy snapshot (approval before
 * issuance, quorum and qualifying roles, no self-approval, revocation and verification after
 * issuance, break-glass review). Never throws on bad input: a malformed bundle is a problem.
 * @param bundle the bundle object, or its JSON text.
 */
export async function verifyEvidence(
  bundle: unknown,
  options: VerifyEvidenceOptions,
): Promise<EvidenceVerification> {
  const problems: EvidenceProblem[] = [];
  const err = (code: EvidenceProblemCode, message: string, extra: Partial<EvidenceProblem> = {}) =>
    problems.push({ code, severity: 'error', message, ...extra });
  const done = (extra: Partial<EvidenceVerification> = {}): EvidenceVerification => ({
    valid: !problems.some((p) => p.severity === 'error'),
    problems,
    ...extra,
  });

  let raw = bundle;
  if (typeof raw === 'string') {
    try {
      raw = JSON.parse(raw);
    } catch {
      err('BUNDLE_MALFORMED', 'bundle is not valid JSON');
      return done();
    }
  }
  // The common case by hand (exactly three own string members, which zod accepts too); zod decides
  // and words the problem otherwise.
  const shaped = isBundleShape(raw)
    ? ({
        success: true,
        data: { payload: raw.payload, protected: raw.protected, signature: raw.signature },
      } as const)
    : bundleShape.safeParse(raw);
  if (!shaped.success) {
    err(
      'BUNDLE_MALFORMED',
      `bundle must be exactly { payload, protected, signature }: ${shaped.error.issues[0]?.message ?? ''}`,
      {
        path: (shaped.error.issues[0]?.path ?? []).map(String),
      },
    );
    return done();
  }
  const b = shaped.data;
  // The signature check of a large payload runs on the threadpool (signer.ts) while this thread parses
  // the payload and checks its shape; problems are reported in the same order either way.
  const signingInput: { input?: Buffer } = {};
  const pendingSig = verifyDetached(b.payload, b, options?.keys, EVIDENCE_TYP, signingInput);
  let parsed: unknown;
  let parseFailed = false;
  try {
    parsed = JSON.parse(b.payload);
  } catch {
    parseFailed = true;
  }
  const shapeIssue = parseFailed ? undefined : payloadShapeIssue(parsed);
  const sig = await pendingSig;
  let eventIssue: { index: number; issue: string } | undefined;
  // Event hashes are confirmed on the signed text (see TextHashes) when the signature holds, in the
  // same pass as each event's shape check; else every hash is recomputed canonically, so a tampered
  // bundle reports exactly what the serialiser finds. verifyDetached is done with the signing input
  // once settled: its payload bytes are TextHashes' to rewrite.
  let hashed: true[] | undefined;
  if (!parseFailed && !shapeIssue) {
    const events = (parsed as { events: unknown[] }).events;
    const input = signingInput.input;
    let onText =
      sig.ok && input
        ? TextHashes.start(b.payload, parsed as EvidencePayload, input, b.protected.length + 1)
        : undefined;
    for (let i = 0; i < events.length; i++) {
      const issue = eventShapeIssue(events[i]);
      if (issue) {
        eventIssue = { index: i, issue };
        break;
      }
      if (onText && !onText.next(events[i] as AuditEvent, i === events.length - 1)) onText = undefined;
    }
    if (!eventIssue && onText?.end()) hashed = new Array<true>(events.length).fill(true);
  }
  if (!sig.ok) err(sig.code, sig.message);
  if (parseFailed) {
    err('BUNDLE_MALFORMED', 'payload is not valid JSON');
    return done();
  }
  if (shapeIssue) {
    err(
      'BUNDLE_MALFORMED',
      `payload does not have the evidence shape at ${shapeIssue.path.join('.') || '(root)'}: ${shapeIssue.message}`,
      {
        path: shapeIssue.path,
      },
    );
    return done();
  }
  if (eventIssue) {
    err('BUNDLE_MALFORMED', `payload event ${eventIssue.index + 1} is malformed: ${eventIssue.issue}`, {
      path: ['events', eventIssue.index],
    });
    return done();
  }
  const p = parsed as EvidencePayload;
  if (p.format !== EVIDENCE_FORMAT)
    err('FORMAT_UNSUPPORTED', `format ${p.format} is not ${EVIDENCE_FORMAT}`, { path: ['format'] });
  if (sig.ok && (p.signer.kid !== sig.kid || p.signer.alg !== sig.alg)) {
    err(
      'SIGNER_MISMATCH',
      `payload names signer ${p.signer.kid}/${p.signer.alg}, signature is by ${sig.kid}/${sig.alg}`,
      { path: ['signer'] },
    );
  }

  try {
    checkStructure(p, err, hashed);
    checkLifecycle(p, problems, options?.now ?? new Date(p.generatedAt));
  } catch (e) {
    // A field of an unexpected type deep inside the record or an event's data: never throw, report.
    err('BUNDLE_MALFORMED', `payload content is malformed (${e instanceof Error ? e.message : String(e)})`);
  }
  if (options?.checkpoint)
    await checkAgainstCheckpoint(p, options.checkpoint, options.checkpointKeys ?? options.keys, err);
  return done({ payload: p, ...(sig.ok ? { kid: sig.kid } : {}) });
}

const EVENTS_OPEN = ',"events":[';

/**
 * Confirms every event's hash on the payload text itself, without re-serialising: the events of a
 * payload made by a Grantline signer are canonical JSON (RFC 8785), so event i's text is its canonical
 * form, and that text without its `globalSeq` and `hash` members is exactly what its hash was made
 * over (audit.ts `hashedPart`; members sort … `data`, `globalSeq`, `hash`, `prevHash`, `seq`, `type`).
 * Fed the events in order ({@link TextHashes.next}, then {@link TextHashes.end}), it confirms all of
 * them or none (the caller then recomputes every hash canonically): never a mismatch, so a reported
 * mismatch always comes from the canonical serialiser.
 *
 * How the texts are found, and why a confirmation is the canonical verdict:
 * - the payload must start with the canonical `{"caseId":…,"chain":…,"events":[` rebuilt from the
 *   parsed values, and no `caseId`, `chain` or `events` key follows the events (nor a `\u` escape
 *   that could spell one): so the array there is the one `JSON.parse` returned.
 * - event i's text runs from the end of event i-1 (`,`) to an occurrence (any one) of exactly
 *   `,"globalSeq":G,"hash":H,"prevHash":P,"seq":N,"type":T}` as the parsed event i spells it
 *   canonically (H and P are hex digests, so their JSON text is the digest in quotes); after the last
 *   event comes `]`. Its hash is taken over that text with `,"globalSeq":G,"hash":H` cut out.
 * - when that hash equals the stored one, the hashed text is (barring a SHA-256 collision) the
 *   canonical JSON the hash was made from: a complete object ending with those prevHash, seq, type
 *   members. Then event i's text is a complete object starting where element i starts, so it is
 *   element i (by induction from the array's start, since every earlier event was confirmed the same
 *   way), it parses to the parsed event i, and its hashed part's canonical text is the hashed text.
 *   A hash not made over canonical JSON (no Grantline producer makes one) is the only way for this
 *   to confirm what the canonical serialiser would not; a checkpoint's head, or any canonical hash
 *   after it in the chain, excludes that.
 */
class TextHashes {
  private pos: number;
  private prev = GENESIS_HASH;
  /** Where event i's hash sits after its start: event i+1's is searched from about as far on. */
  private lead = 0;

  /**
   * @param bytes the payload's UTF-8 bytes when it is ASCII (as many bytes as characters, each at the
   * same offset as in `text`): then the comparisons below read bytes, which is cheaper than
   * startsWith, and each event's hashed text is made and hashed in place (see hashCut).
   */
  private constructor(
    private readonly text: string,
    private readonly bytes: Uint8Array | undefined,
    start: number,
  ) {
    this.pos = start;
  }

  /**
   * Undefined when the payload does not start as the canonical text of `p` would.
   * @param input the signing input, the payload's UTF-8 bytes from `offset` on, no longer used by its
   * signature check: rewritten in place by {@link TextHashes.hashCut}.
   */
  static start(text: string, p: EvidencePayload, input: Buffer, offset: number): TextHashes | undefined {
    const { seq, head } = p.chain;
    // The canonical text of p.chain when it is exactly { head, seq } (an integer prints as canonical
    // JSON); any other chain does not match the text, and every hash is recomputed.
    const prefix = `{"caseId":${JSON.stringify(p.caseId)},"chain":{"head":${JSON.stringify(head)},"seq":${seq}}${EVENTS_OPEN}`;
    if (p.events.length === 0 || !Number.isSafeInteger(seq) || !text.startsWith(prefix)) return undefined;
    const ascii = input.length - offset === text.length;
    const bytes = ascii ? new Uint8Array(input.buffer, input.byteOffset + offset, text.length) : undefined;
    return new TextHashes(text, bytes, prefix.length);
  }

  /**
   * Confirms the hash of the next event (shape-checked already), whose text must come next.
   * @returns false when it cannot be confirmed on the text (then no later event can).
   */
  next(e: AuditEvent, last: boolean): boolean {
    try {
      return this.step(e, last);
    } catch {
      return false; // content of an unexpected type: the general path reports it
    }
  }

  /** Code unit at `k` (NaN or undefined past the end, which equals nothing). */
  private code(k: number): number {
    return this.bytes === undefined ? this.text.charCodeAt(k) : (this.bytes[k] as number);
  }

  /** True when the text at `k` is `lit` (ASCII). */
  private has(k: number, lit: string): boolean {
    const b = this.bytes;
    if (b === undefined) return this.text.startsWith(lit, k);
    if (k < 0 || k + lit.length > b.length) return false;
    for (let i = 0; i < lit.length; i++) if (b[k + i] !== lit.charCodeAt(i)) return false;
    return true;
  }

  /**
   * Where the decimal digits at `k` end when they spell exactly `n` (a positive integer, so with no
   * leading zero), as `String(n)` would: else -1. More than 15 digits are refused (-1).
   */
  private uintEnd(k: number, n: number): number {
    let v = 0;
    let i = k;
    for (let c = this.code(i); c >= 0x30 && c <= 0x39; c = this.code(++i)) {
      if (i === k ? c === 0x30 : i - k >= 15) return -1;
      v = v * 10 + (c - 0x30);
    }
    return i > k && v === n ? i : -1;
  }

  /** True when `,"hash":"` and then `hash` (64 characters) are at `k - 9`: a guess checked in place. */
  private hashAt(k: number, hash: string): boolean {
    return this.has(k - 9, ',"hash":"') && this.text.slice(k, k + 64) === hash;
  }

  /** True when the 64 characters at `k` are the previous event's hash (a slice compares as memory). */
  private prevAtIs(k: number): boolean {
    return this.text.slice(k, k + 64) === this.prev;
  }

  private step(e: AuditEvent, last: boolean): boolean {
    const { text, pos } = this;
    // prevHash is the previous event's hash, confirmed below (so hex), or the genesis hash: its JSON
    // text is itself in quotes. Same for hash, which must equal a hex digest to be confirmed.
    if (e.prevHash !== this.prev || e.hash.length !== 64) return false;
    // The hash may be taken from anywhere in the event: the checks below and the hash decide, not
    // where it was found. First guess: as far from the event's start as the previous event's was
    // (events of a case are much alike); then a search from a little before that; then from the start.
    let h = this.lead > 0 ? pos + this.lead : -1;
    if (h < 0 || !this.hashAt(h, e.hash))
      h = this.lead > 64 ? text.indexOf(e.hash, pos + this.lead - 64) : -1;
    if (h < 0 || !this.has(h - 9, ',"hash":"')) {
      h = text.indexOf(e.hash, pos);
      if (h < 0 || !this.has(h - 9, ',"hash":"')) return false;
    }
    // `,"globalSeq":G` before it when the event has one.
    let cutFrom = h - 9;
    if (e.globalSeq !== undefined) {
      let digits = 1;
      for (let x = e.globalSeq; x >= 10; x = Math.floor(x / 10)) digits += 1;
      cutFrom -= 13 + digits;
      if (!this.has(cutFrom, ',"globalSeq":') || this.uintEnd(cutFrom + 13, e.globalSeq) !== h - 9)
        return false;
    }
    if (cutFrom <= pos) return false;
    const cutTo = h + 65; // after the closing quote of hash
    // From that closing quote on, exactly `","prevHash":"P","seq":N,"type":T}`, with P the previous
    // hash, N and T as the parsed event spells them canonically.
    if (!this.has(h + 64, '","prevHash":"') || !this.prevAtIs(h + 78) || !this.has(h + 142, '","seq":'))
      return false;
    let k = this.uintEnd(h + 150, e.seq);
    const type = typeText(e.type);
    if (k < 0 || !this.has(k, ',"type":') || !text.startsWith(type, k + 8)) return false;
    k += 8 + type.length;
    if (this.code(k) !== 0x7d /* } */) return false;
    k += 1;
    if (this.code(k) !== (last ? 0x5d /* ] */ : 0x2c) /* , */) return false;
    if (this.hashCut(pos, cutFrom, cutTo, k) !== e.hash) return false;
    this.prev = e.hash;
    this.lead = h - pos;
    this.pos = k + 1;
    return true;
  }

  /**
   * Hex SHA-256 of the text from `from` to `to` without the part from `cutFrom` to `cutTo`. On bytes,
   * the part after the cut is moved over it (`copyWithin`, no copy elsewhere) and the result hashed
   * through a view: that rewrites only bytes of the current event, which no later step reads (they
   * read the text from `to` on, and compare with the parsed values, not with earlier bytes).
   */
  private hashCut(from: number, cutFrom: number, cutTo: number, to: number): string {
    const b = this.bytes;
    if (b === undefined) return sha256Text(this.text.slice(from, cutFrom) + this.text.slice(cutTo, to));
    b.copyWithin(cutFrom, cutTo, to);
    return sha256Bytes(b.subarray(from, to - (cutTo - cutFrom)));
  }

  /**
   * After the last event: no second `caseId`, `chain` or `events` member follows (JSON.parse keeps the
   * last one). Checked on the text, conservatively: no such key anywhere after the events, nor any
   * `\u` escape that could spell one.
   */
  end(): boolean {
    if (this.code(this.pos) !== 0x2c /* , */) return false;
    LATER_KEY.lastIndex = this.pos;
    return !LATER_KEY.test(this.text);
  }
}

/** JSON text of event types, which are few: kept between calls (bounded). */
const typeTexts = new Map<string, string>();
function typeText(type: string): string {
  let t = typeTexts.get(type);
  if (t === undefined) {
    if (typeTexts.size >= 256) typeTexts.clear();
    t = JSON.stringify(type);
    typeTexts.set(type, t);
  }
  return t;
}

/** A `caseId`, `chain` or `events` key, or a `\u` escape that could spell one. */
const LATER_KEY = /"(?:events|caseId|chain)"|\\u/g;

/** The members of an audit event (a switch: cheaper than a Set for the keys of 10,000 events). */
function isEventKey(k: string): boolean {
  switch (k) {
    case 'seq':
    case 'caseId':
    case 'type':
    case 'at':
    case 'actor':
    case 'actingRole':
    case 'data':
    case 'prevHash':
    case 'hash':
    case 'globalSeq':
      return true;
    default:
      return false;
  }
}
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0;
const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const ACTOR_KINDS: ReadonlySet<unknown> = new Set(['human', 'workload', 'system']);
/** Number of own enumerable keys, as `Object.keys(o).length` without the array. */
function ownKeyCount(o: object): number {
  let n = 0;
  for (const k in o) if (Object.hasOwn(o, k)) n += 1;
  return n;
}

/** The audit event schema (model.ts `auditEventSchema`) checked by hand; undefined when the shape is right. */
function eventShapeIssue(e: unknown): string | undefined {
  if (!isObj(e)) return 'not an object';
  for (const k in e) if (!isEventKey(k)) return `unknown member ${k}`;
  if (!isInt(e.seq)) return 'seq must be a positive integer';
  if (typeof e.caseId !== 'string' || typeof e.type !== 'string') return 'caseId and type must be strings';
  if (typeof e.at !== 'string' || !ISO.test(e.at)) return 'at must be an ISO-8601 UTC time';
  const a = e.actor;
  if (!isObj(a) || typeof a.id !== 'string' || !ACTOR_KINDS.has(a.kind) || ownKeyCount(a) !== 2) {
    return 'actor must be { id, kind }';
  }
  if (e.actingRole !== undefined && typeof e.actingRole !== 'string') return 'actingRole must be a string';
  if (!isObj(e.data)) return 'data must be an object';
  if (typeof e.prevHash !== 'string' || typeof e.hash !== 'string')
    return 'prevHash and hash must be strings';
  if (e.globalSeq !== undefined && !isInt(e.globalSeq)) return 'globalSeq must be a positive integer';
  return undefined;
}

type Report = (code: EvidenceProblemCode, message: string, extra?: Partial<EvidenceProblem>) => void;

/**
 * Chain, chain head, record and policy snapshot agree with each other.
 * @param hashed events whose hash {@link TextHashes} already confirmed.
 */
function checkStructure(p: EvidencePayload, err: Report, hashed?: readonly boolean[]): void {
  const chain = checkChain(p.caseId, p.events, hashed);
  for (const c of chain.problems) err(c.code, c.message, { seq: c.seq });
  const last = p.events[p.events.length - 1];
  if (p.chain.seq !== (last?.seq ?? 0) || p.chain.head !== (last?.hash ?? '')) {
    err(
      'CHAIN_HEAD_MISMATCH',
      `payload names chain head ${p.chain.seq}/${p.chain.head.slice(0, 12)}, the events end at ${last?.seq ?? 0}/${(last?.hash ?? '').slice(0, 12)}`,
      {
        path: ['chain'],
      },
    );
  }
  if (p.record.id !== p.caseId)
    err('RECORD_CASE_MISMATCH', `record is case ${p.record.id}, bundle is for ${p.caseId}`, {
      path: ['record', 'id'],
    });
  if (p.record.audit.seq !== (last?.seq ?? 0) || p.record.audit.head !== (last?.hash ?? '')) {
    err(
      'RECORD_HEAD_MISMATCH',
      `record points at audit head ${p.record.audit.seq}/${p.record.audit.head.slice(0, 12)}, the chain ends at ${last?.seq ?? 0}/${(last?.hash ?? '').slice(0, 12)}`,
      {
        path: ['record', 'audit'],
      },
    );
  }
  if (!same(p.policy.snapshot, p.record.policy)) {
    err('POLICY_SNAPSHOT_MISMATCH', 'the policy snapshot differs from the one frozen into the case record', {
      path: ['policy', 'snapshot'],
    });
  }
  if (!canonicalHashMatches(p.policy.snapshot, p.policy.snapshotHash)) {
    err('POLICY_SNAPSHOT_MISMATCH', 'the policy snapshot does not hash to snapshotHash', {
      path: ['policy', 'snapshotHash'],
    });
  }
  if (p.policy.hash !== p.policy.snapshot.policyHash) {
    err('POLICY_SNAPSHOT_MISMATCH', 'policy.hash differs from the snapshot policyHash', {
      path: ['policy', 'hash'],
    });
  }
  const requested = p.events[0]?.type === 'requested' ? p.events[0] : undefined;
  const reqPolicy = requested?.data.policy as
    | { id?: string; version?: string; hash?: string; rule?: string; snapshotHash?: string }
    | undefined;
  if (
    reqPolicy &&
    (reqPolicy.hash !== p.policy.snapshot.policyHash ||
      reqPolicy.rule !== p.policy.snapshot.ruleId ||
      reqPolicy.id !== p.policy.snapshot.policyId ||
      // The whole snapshot (quorum, roles, caps, constraints) is bound to the chain by its hash;
      // cases requested before the service recorded it (stop 14) have none to compare.
      (reqPolicy.snapshotHash !== undefined && reqPolicy.snapshotHash !== p.policy.snapshotHash) ||
      requested?.data.operator !== p.policy.snapshot.operator ||
      requested?.data.owner !== p.policy.snapshot.owner)
  ) {
    err(
      'POLICY_SNAPSHOT_MISMATCH',
      'the policy snapshot does not match the policy recorded in the request event',
      { seq: 1, path: ['policy', 'snapshot'] },
    );
  }
  if (p.policy.document !== undefined) checkPolicyDocument(p, err);
}

/** The embedded policy document hashes to the case's policy hash and contains the snapshot's rule. */
function checkPolicyDocument(p: EvidencePayload, err: Report): void {
  // No schema parse needed: a document whose canonical JSON hashes to the policy hash recorded in the
  // chained request event is the validated policy the case was decided under.
  const doc = p.policy.document as Policy;
  if (!canonicalHashMatches(doc, p.policy.hash) || !isObj(doc) || !Array.isArray(doc.rules)) {
    err('POLICY_DOCUMENT_MISMATCH', 'the embedded policy document does not hash to the case policy hash', {
      path: ['policy', 'document'],
    });
    return;
  }
  const s = p.policy.snapshot;
  // The whole snapshot, rebuilt from the document as the service builds it (quorum, roles, caps,
  // constraints, template, extension, proofs, activation deadline); a snapshot written before it
  // recorded activationTtlSeconds is compared without it.
  let expected: PolicySnapshot | undefined;
  try {
    if (s.ruleId === 'break-glass') {
      if (doc.breakGlass) expected = snapshotOfBreakGlass(doc, p.policy.hash);
    } else {
      const rule = doc.rules.find((r) => isObj(r) && r.id === s.ruleId);
      if (rule) expected = snapshotOfRule(doc, p.policy.hash, rule);
    }
  } catch {
    expected = undefined; // a document missing a validated field: not the policy the hash names
  }
  if (expected && s.activationTtlSeconds === undefined) {
    const { activationTtlSeconds: _legacy, ...rest } = expected;
    expected = rest;
  }
  const bgRoles = doc.breakGlass?.reviewerRoles;
  if (
    !expected ||
    !same(expected, s) ||
    (s.ruleId === 'break-glass' &&
      p.record.breakGlass !== undefined &&
      !same(bgRoles, p.record.breakGlass.reviewerRoles))
  ) {
    err(
      'POLICY_DOCUMENT_MISMATCH',
      s.ruleId === 'break-glass'
        ? 'the break-glass snapshot does not match the policy document'
        : `the snapshot of rule ${s.ruleId} does not match the rule in the policy document`,
      { path: ['policy', 'snapshot'] },
    );
  }
}

interface ApprovalFact {
  seq: number;
  approver: Principal;
  role: string;
  proof?: unknown;
}

/** Replays the events: lifecycle order and invariants under the snapshot, and the record's agreement. */
function checkLifecycle(p: EvidencePayload, problems: EvidenceProblem[], now: Date): void {
  const err: Report = (code, message, extra = {}) =>
    problems.push({ code, severity: 'error', message, ...extra });
  const warn: Report = (code, message, extra = {}) =>
    problems.push({ code, severity: 'warning', message, ...extra });
  const snap = p.policy.snapshot;
  const record = p.record;
  const first = p.events[0];
  let requester: Principal | undefined;
  let subject: Principal | undefined;
  if (first?.type === 'requested') {
    requester = first.data.requester as Principal | undefined;
    subject = first.data.subject as Principal | undefined;
    if (!same(requester, record.requester) || !same(subject, record.subject)) {
      err('RECORD_PARTIES_MISMATCH', 'requester or subject in the record differ from the request event', {
        seq: 1,
        path: ['record', 'requester'],
      });
    }
    const reqTargets = (first.data.targets as { id: string }[] | undefined)?.map((t) => t.id) ?? [];
    if (
      !same(
        reqTargets,
        record.targets.map((t) => t.id),
      )
    ) {
      err('RECORD_PARTIES_MISMATCH', 'targets in the record differ from the request event', {
        seq: 1,
        path: ['record', 'targets'],
      });
    }
  } else if (first) {
    err('EVENT_OUT_OF_ORDER', `the first event is ${first.type}, not requested`, { seq: first.seq });
  }
  requester ??= record.requester;
  subject ??= record.subject;

  let state: GrantState | undefined;
  let prevAt = '';
  let issueStarted = false;
  let breakGlassAt: string | undefined;
  let reviewDueAt: string | undefined;
  let reviewed = false;
  let overdueReported = false;
  /** The seq of a rejected review whose cancellation or revocation has not been recorded yet. */
  let rejectedOpen: number | undefined;
  /** When the case was issued; NaN until then. */
  let issuedAtMs = Number.NaN;
  /** Where the extension cap runs from: the first credential's issue time (see lifecycle.ts). */
  let capFromMs = Number.NaN;
  let firstCredentialMs = Number.POSITIVE_INFINITY;
  let extensions = 0;
  const approvals: ApprovalFact[] = [];
  const recordApprovals: {
    approver: unknown;
    role: string;
    reason?: unknown;
    at?: string;
    proof?: unknown;
  }[] = [];
  const facts = newRecordFacts();
  const issued = new Set<string>();
  const revoked = new Set<string>();
  const verified = new Set<string>();
  const targetIds = record.targets.map((t) => t.id);

  for (const e of p.events) {
    const from = state;
    const reported = problems.length;
    if (e.at < prevAt)
      err(
        'EVENT_TIME_ORDER',
        `event ${e.seq} (${e.type}) at ${e.at} is earlier than its predecessor at ${prevAt}`,
        { seq: e.seq },
      );
    prevAt = e.at > prevAt ? e.at : prevAt;
    const d = e.data;
    switch (e.type) {
      case 'requested':
        if (e.seq !== 1) err('EVENT_OUT_OF_ORDER', `a second request event at seq ${e.seq}`, { seq: e.seq });
        if (typeof d.durationSeconds === 'number' && d.durationSeconds > snap.maxDurationSeconds)
          err(
            'WINDOW_EXCEEDS_MAX',
            `requested ${d.durationSeconds}s; rule ${snap.ruleId} allows at most ${snap.maxDurationSeconds}s`,
            { seq: e.seq },
          );
        break;
      case 'breakglass.used':
        breakGlassAt = e.at;
        reviewDueAt = typeof d.reviewDueAt === 'string' ? d.reviewDueAt : undefined;
        if (state !== 'requested')
          err('EVENT_OUT_OF_ORDER', 'break-glass used outside a fresh request', { seq: e.seq });
        if (snap.ruleId !== BREAK_GLASS_RULE)
          err('BREAKGLASS_RULE_MISMATCH', `break-glass used on a case governed by rule ${snap.ruleId}`, {
            seq: e.seq,
          });
        break;
      case 'approval': {
        if (snap.ruleId === BREAK_GLASS_RULE)
          err(
            'BREAKGLASS_RULE_MISMATCH',
            'an approval of a break-glass case, which is approved by break-glass',
            {
              seq: e.seq,
            },
          );
        const approver = d.approver as Principal;
        const role = String(d.role);
        const fact: ApprovalFact = { seq: e.seq, approver, role, ...(d.proof ? { proof: d.proof } : {}) };
        if (state !== 'requested')
          err('EVENT_OUT_OF_ORDER', `approval recorded while the case was ${state}`, { seq: e.seq });
        checkApproval(fact, approvals, snap, requester, subject, err);
        approvals.push(fact);
        recordApprovals.push(
          typeof approver === 'string'
            ? { approver, role }
            : {
                approver,
                role,
                ...(d.reason ? { reason: d.reason } : {}),
                at: e.at,
                ...(d.proof ? { proof: d.proof } : {}),
              },
        );
        break;
      }
      case 'approved':
        if (snap.ruleId === BREAK_GLASS_RULE)
          err('BREAKGLASS_RULE_MISMATCH', 'a break-glass case approved other than by break-glass', {
            seq: e.seq,
          });
        if (state !== 'requested')
          err('EVENT_OUT_OF_ORDER', `approved while the case was ${state}`, { seq: e.seq });
        if (d.preApproved === true) {
          if (snap.template === undefined || snap.approvals.count !== 0) {
            err('QUORUM_NOT_MET', 'approved as a pre-approved template, but the snapshot names no template', {
              seq: e.seq,
            });
          }
        } else {
          checkQuorum('approved', approvals, snap, e, err);
          // The approved event states the quorum it met: the approvals so far, which the service
          // counts to exactly the rule's count (each approval qualifies and is distinct), and the rule.
          // Without the policy document this is what binds the snapshot's quorum to the events.
          if (typeof d.approvals === 'number' && d.approvals !== approvals.length)
            err(
              'RECORD_APPROVALS_MISMATCH',
              `the approved event counts ${d.approvals} approval(s); ${approvals.length} approval event(s) precede it`,
              { seq: e.seq },
            );
          if (
            (typeof d.approvals === 'number' && d.approvals !== Math.max(snap.approvals.count, 1)) ||
            (d.rule !== undefined && d.rule !== snap.ruleId)
          )
            err(
              'POLICY_SNAPSHOT_MISMATCH',
              `the approved event met a quorum of ${String(d.approvals)} under rule ${String(d.rule)}; the snapshot requires ${snap.approvals.count} under rule ${snap.ruleId}`,
              { seq: e.seq, path: ['policy', 'snapshot', 'approvals'] },
            );
        }
        break;
      case 'issue.started':
        issueStarted = true;
        if (state !== 'approved')
          err('ISSUED_WITHOUT_APPROVAL', `issuance started while the case was ${state}`, { seq: e.seq });
        break;
      case 'target.issued':
        issued.add(String(d.targetId));
        firstCredentialMs = Math.min(firstCredentialMs, Date.parse(String(d.issuedAt)));
        if (state !== 'issuing')
          err('ISSUED_WITHOUT_APPROVAL', `target ${String(d.targetId)} issued while the case was ${state}`, {
            seq: e.seq,
          });
        break;
      case 'issued': {
        if (state !== 'issuing')
          err('ISSUED_WITHOUT_APPROVAL', `issued while the case was ${state}`, { seq: e.seq });
        // The service ends the window at most min(duration, maxDuration) after it issues.
        const asked = first?.type === 'requested' ? Number(first.data.durationSeconds) : Number.NaN;
        const limit = Math.min(snap.maxDurationSeconds, Number.isFinite(asked) ? asked : Infinity);
        issuedAtMs = Date.parse(e.at);
        // A case requested before the request event recorded the snapshot hash (the release that
        // moved the cap to the first credential) counted it from the issued step.
        const legacy = isObj(first?.data.policy) && first.data.policy.snapshotHash === undefined;
        capFromMs = legacy ? issuedAtMs : Math.min(issuedAtMs, firstCredentialMs);
        if (!(Date.parse(String(d.expiresAt)) <= issuedAtMs + limit * 1000))
          err(
            'WINDOW_EXCEEDS_MAX',
            `issued until ${String(d.expiresAt)}, more than ${limit}s after issuance at ${e.at} (rule ${snap.ruleId}: at most ${snap.maxDurationSeconds}s)`,
            { seq: e.seq },
          );
        break;
      }
      case 'revoke.requested':
        if (!issueStarted)
          err('REVOKED_BEFORE_ISSUANCE', 'revocation requested before anything was issued', { seq: e.seq });
        break;
      case 'target.revoked':
        if (!issueStarted)
          err('REVOKED_BEFORE_ISSUANCE', `target ${String(d.targetId)} revoked before issuance`, {
            seq: e.seq,
          });
        if (state !== 'revoking')
          err('EVENT_OUT_OF_ORDER', `target revoked while the case was ${state}`, { seq: e.seq });
        revoked.add(String(d.targetId));
        break;
      case 'revoked': {
        const missing = targetIds.filter((t) => !revoked.has(t));
        if (missing.length > 0)
          err('REVOCATION_INCOMPLETE', `case marked revoked but ${missing.join(', ')} has no revocation`, {
            seq: e.seq,
          });
        break;
      }
      case 'target.verified':
        if (!revoked.has(String(d.targetId))) {
          err(
            'VERIFIED_BEFORE_REVOCATION',
            `removal of ${String(d.targetId)} verified before it was revoked`,
            { seq: e.seq },
          );
        }
        verified.add(String(d.targetId));
        break;
      case 'target.verify-failed':
        if (d.present === true && d.exhausted === true) {
          // Still present after every retry: the lifecycle revokes that target again.
          revoked.delete(String(d.targetId));
          state = 'revoking';
        }
        break;
      case 'verified':
      case 'failed': {
        const missing = targetIds.filter((t) => !verified.has(t));
        if (missing.length > 0)
          err(
            'VERIFICATION_INCOMPLETE',
            `case marked ${e.type} but removal of ${missing.join(', ')} was never verified`,
            { seq: e.seq },
          );
        break;
      }
      case 'target.issued-late':
        // A credential issued after the case was rolled back. Not removed at once, it is put back into
        // the revocation (lifecycle.ts, lateIssuance): a revoked case is revoking again and the
        // target is revoked and verified anew; a failed case stays failed. Any other state is refused.
        if (state !== 'revoking' && state !== 'revoked' && state !== 'failed')
          err('EVENT_OUT_OF_ORDER', `late issuance recorded while the case was ${state}`, { seq: e.seq });
        else if (d.removed !== true && state !== 'failed') {
          state = 'revoking';
          revoked.delete(String(d.targetId));
          verified.delete(String(d.targetId));
        }
        break;
      case 'review':
        if (!breakGlassAt)
          err('EVENT_OUT_OF_ORDER', 'review of a case that is not break-glass', { seq: e.seq });
        else if (reviewed)
          err('EVENT_OUT_OF_ORDER', 'a second review of the break-glass case', { seq: e.seq });
        else {
          checkReview(e, record, requester, subject, snap, err);
          // A rejected review ends the access wherever it stands (lifecycle.ts, review).
          if (d.outcome === 'rejected' && (state === 'approved' || state === 'issuing' || state === 'issued'))
            rejectedOpen = e.seq;
        }
        reviewed = true;
        break;
      case 'review.overdue':
        overdueReported = true;
        break;
      case 'extended': {
        // An extension's approvals are its own quorum, kept in the event (the record's approvals are
        // the case's, for issuance): each is checked like a case approval, against the same rule.
        if (state !== 'issued')
          err('EVENT_OUT_OF_ORDER', `extension recorded while the case was ${state}`, { seq: e.seq });
        const ext = snap.extension;
        if (!ext) {
          err('EXTENSION_NOT_ALLOWED', `extended, but rule ${snap.ruleId} allows no extensions`, {
            seq: e.seq,
          });
          break;
        }
        extensions += 1;
        if (!(Date.parse(String(d.to)) <= capFromMs + snap.maxDurationSeconds * 1000))
          err(
            'WINDOW_EXCEEDS_MAX',
            `extended until ${String(d.to)}, more than the rule's ${snap.maxDurationSeconds}s after first issuance`,
            { seq: e.seq },
          );
        if (extensions > ext.maxExtensions)
          err('EXTENSION_NOT_ALLOWED', `extension ${extensions} of at most ${ext.maxExtensions}`, {
            seq: e.seq,
          });
        if (!ext.requiresApproval) break;
        const given: ApprovalFact[] = [];
        for (const a of (d.approvals as
          | { approver: Principal; role: string; proof?: unknown }[]
          | undefined) ?? []) {
          const fact: ApprovalFact = {
            seq: e.seq,
            approver: a.approver,
            role: String(a.role),
            ...(a.proof ? { proof: a.proof } : {}),
          };
          checkApproval(fact, given, snap, requester, subject, err);
          given.push(fact);
        }
        checkQuorum('extended', given, snap, e, err);
        break;
      }
      default:
        break;
    }
    const to = STATE_OF[e.type];
    // Every event checked against the lifecycle's transition table, from the state the events so
    // far led to; reported once per event (the checks above may already have named the problem).
    if (
      from !== undefined &&
      !transitionAllowed(e.type, from, to ?? state ?? from, to !== undefined || state !== from) &&
      !problems.slice(reported).some((x) => x.seq === e.seq && x.severity === 'error')
    ) {
      const allowed = [...(EVENT_EDGES.get(e.type)?.keys() ?? [])].join(', ');
      err(
        'EVENT_OUT_OF_ORDER',
        `${e.type} recorded while the case was ${from}${to && to !== from ? ` and leading to ${to}` : ''}: not a transition of the lifecycle (it records ${e.type} from ${allowed})`,
        { seq: e.seq },
      );
    }
    if (rejectedOpen !== undefined) {
      if (e.type === 'cancelled' || e.type === 'revoke.requested') rejectedOpen = undefined;
      else if (e.type === 'issue.started' || e.type === 'extended')
        err('BREAKGLASS_REJECTED_NOT_ENDED', `${e.type} after the break-glass review was rejected`, {
          seq: e.seq,
        });
    }
    recordFact(facts, e, from);
    state = to ?? state;
  }
  checkRecordFacts(facts, record, snap, err);
  if (rejectedOpen !== undefined && (state === 'approved' || state === 'issued')) {
    err(
      'BREAKGLASS_REJECTED_NOT_ENDED',
      `the break-glass review was rejected, but the case is still ${state}: neither cancelled nor revoked`,
      { seq: rejectedOpen },
    );
  }

  if (state !== undefined && state !== record.state) {
    err('RECORD_STATE_MISMATCH', `record state is ${record.state}, the events lead to ${state}`, {
      path: ['record', 'state'],
    });
  }
  const fromRecord = record.approvals.map((a, i) =>
    typeof recordApprovals[i]?.approver === 'string'
      ? { approver: a.approver.id, role: a.role }
      : {
          approver: a.approver,
          role: a.role,
          ...(a.reason ? { reason: a.reason } : {}),
          at: a.at,
          ...(a.proof ? { proof: a.proof } : {}),
        },
  );
  if (!same(fromRecord, recordApprovals)) {
    err(
      'RECORD_APPROVALS_MISMATCH',
      `record holds ${record.approvals.length} approval(s) that differ from the ${recordApprovals.length} approval event(s)`,
      {
        path: ['record', 'approvals'],
      },
    );
  }
  if (Boolean(breakGlassAt) !== Boolean(record.breakGlass)) {
    err('RECORD_STATE_MISMATCH', 'break-glass in the record and in the events disagree', {
      path: ['record', 'breakGlass'],
    });
  }
  if (
    snap.requireProvenWorkload &&
    subject.kind === 'workload' &&
    !(subject.claims as { proof?: unknown } | undefined)?.proof
  ) {
    err(
      'WORKLOAD_NOT_PROVEN',
      `rule ${snap.ruleId} requires a proven workload identity; the subject carries no proof`,
      { path: ['record', 'subject', 'claims'] },
    );
  }
  if (breakGlassAt && !reviewed) {
    const due = reviewDueAt ?? record.breakGlass?.reviewDueAt;
    if (overdueReported)
      warn('BREAKGLASS_REVIEW_OVERDUE', `break-glass review was due ${due} and was reported overdue`);
    else if (due && Date.parse(due) <= now.getTime()) {
      err(
        'BREAKGLASS_REVIEW_UNREPORTED',
        `break-glass review was due ${due}; there is neither a review nor an overdue report`,
      );
    } else warn('BREAKGLASS_REVIEW_PENDING', `break-glass review is due ${due}`);
  }
}

/** What one target's events state about its issuance, revocation and verification. */
interface TargetFacts {
  issuance?: Issuance;
  revocation?: TargetRevocation;
  verification?: TargetVerification;
  /** The last verification attempt failed: its event does not state the method tried. */
  methodUnstated?: boolean;
}

/**
 * The record's fields as the events state them, built during the replay (the one pass over the
 * events) the way lifecycle.ts `transition` builds the record, and compared with the record at the
 * end ({@link checkRecordFacts}). Fields the events do not state are not here (docs/evidence.md).
 */
interface RecordFacts {
  requested?: AuditEvent;
  decision?: NonNullable<Grant['decision']>;
  revocation?: NonNullable<Grant['revocation']>;
  pendingLate: Set<string>;
  /** `firstIssuedAt`: the earliest credential's issue time, where the extension cap runs from. */
  window: { issuedAt?: string; expiresAt?: string; extensions: number; firstIssuedAt?: string };
  targets: Map<string, TargetFacts>;
  usage: { count: number; lastAt?: string };
  breakGlass?: AuditEvent;
  overdueRaisedAt?: string;
  review?: AuditEvent;
}

/**
 * The `hardLimitAt` the events imply. As lifecycle.ts computes it: from the earliest credential's
 * issue time, or the issued step if earlier. A case requested by the previous release (its request
 * event has no snapshot hash) may have been issued by either release: the previous one counted from
 * the issued step alone, so for such a case whichever of the two the record holds is accepted.
 */
function expectedHardLimit(
  issuedAt: string | undefined,
  firstIssuedAt: string | undefined,
  maxSeconds: number,
  requestedByPreviousRelease: boolean,
  recorded: string | undefined,
): string | undefined {
  if (issuedAt === undefined) return undefined;
  const current = isoAt(
    Math.min(Date.parse(issuedAt), Date.parse(firstIssuedAt ?? issuedAt)) + maxSeconds * 1000,
  );
  if (!requestedByPreviousRelease) return current;
  const previous = isoAt(Date.parse(issuedAt) + maxSeconds * 1000);
  return recorded === previous ? previous : current;
}

function newRecordFacts(): RecordFacts {
  return { pendingLate: new Set(), window: { extensions: 0 }, targets: new Map(), usage: { count: 0 } };
}

/** The issuance an event's data spreads (`target.issued`, `target.issued-late`). */
function issuanceOf(d: Record<string, unknown>): Issuance {
  return {
    ref: d.ref as Issuance['ref'],
    ...(d.fingerprint !== undefined ? { fingerprint: d.fingerprint as string } : {}),
    issuedAt: d.issuedAt as string,
    expiresAt: d.expiresAt as string,
  };
}

/** The facts of target `id`, made on first use (a function, not a closure made per event). */
function targetFacts(f: RecordFacts, id: unknown): TargetFacts {
  let t = f.targets.get(String(id));
  if (!t) {
    t = {};
    f.targets.set(String(id), t);
  }
  return t;
}

/** Applies event `e`, recorded while the case was `from`, to the facts (as `transition` to the record). */
function recordFact(f: RecordFacts, e: AuditEvent, from: GrantState | undefined): void {
  const d = e.data;
  const rev = f.revocation;
  switch (e.type) {
    case 'requested':
      if (e.seq === 1) f.requested = e;
      break;
    case 'denied':
    case 'cancelled':
    case 'expired':
      f.decision = { by: e.actor, outcome: e.type, reason: d.reason as string, at: e.at };
      break;
    case 'target.issued': {
      const issuance = issuanceOf(d);
      targetFacts(f, d.targetId).issuance = issuance;
      const first = f.window.firstIssuedAt;
      if (first === undefined || Date.parse(issuance.issuedAt) < Date.parse(first))
        f.window.firstIssuedAt = issuance.issuedAt;
      break;
    }
    case 'issued':
      f.window.issuedAt = e.at;
      f.window.expiresAt = d.expiresAt as string;
      break;
    case 'extended':
      f.window.expiresAt = d.to as string;
      f.window.extensions += 1;
      for (const r of (d.renewed as { targetId: string; expiresAt: string; fingerprint?: string }[]) ?? []) {
        const t = targetFacts(f, r.targetId);
        if (t.issuance)
          t.issuance = {
            ...t.issuance,
            expiresAt: r.expiresAt,
            ...(r.fingerprint ? { fingerprint: r.fingerprint } : {}),
          };
      }
      break;
    case 'usage':
      f.usage.count += 1;
      f.usage.lastAt = typeof d.at === 'string' ? d.at : e.at;
      break;
    case 'revoke.requested':
      f.revocation = {
        trigger: d.trigger as NonNullable<Grant['revocation']>['trigger'],
        reason: d.reason as string,
        actor: e.actor,
        requestedAt: e.at,
      };
      break;
    case 'target.revoked':
      targetFacts(f, d.targetId).revocation = {
        attempts: d.attempts as number,
        confirmedAt: e.at,
        alreadyGone: d.alreadyGone as boolean,
        ...(d.detail ? { detail: d.detail as Record<string, unknown> } : {}),
      };
      break;
    case 'revoked':
      if (rev) {
        rev.revokedAt = e.at;
        rev.lagToRevokedMs = d.lagMs as number;
        delete rev.exposed;
      }
      break;
    case 'target.revoke-failed':
      targetFacts(f, d.targetId).revocation = {
        attempts: d.attempts as number,
        lastError: d.error as NonNullable<TargetRevocation['lastError']>,
      };
      if (d.exhausted === true && rev) rev.exposed = true;
      break;
    case 'target.verified': {
      const t = targetFacts(f, d.targetId);
      t.verification = {
        attempts: (t.verification?.attempts ?? 0) + 1,
        result: 'absent',
        method: d.method as string,
        observation: d.observation as Record<string, unknown>,
        verifier: e.actor.id,
        at: e.at,
      };
      t.methodUnstated = false;
      break;
    }
    case 'target.verify-failed': {
      const t = targetFacts(f, d.targetId);
      t.verification = {
        attempts: (t.verification?.attempts ?? 0) + 1,
        ...(d.present === true ? { result: 'present' as const } : {}),
        ...(d.observation ? { observation: d.observation as Record<string, unknown> } : {}),
        ...(d.error ? { lastError: d.error as NonNullable<TargetVerification['lastError']> } : {}),
        at: e.at,
      };
      t.methodUnstated = true;
      if (d.exhausted === true && rev) rev.exposed = true;
      if (d.present === true && d.exhausted === true && t.revocation) delete t.revocation.confirmedAt;
      break;
    }
    case 'verified':
    case 'failed':
      if (rev) {
        rev.verifiedAt = e.at;
        rev.lagToVerifiedMs = d.lagMs as number;
        delete rev.exposed;
      }
      break;
    case 'target.issued-late': {
      const t = targetFacts(f, d.targetId);
      if (from === 'failed') {
        // Terminal: what could not be removed stays pending (and the case exposed) until it is gone.
        if (d.removed === true) f.pendingLate.delete(String(d.targetId));
        else {
          t.issuance = issuanceOf(d);
          f.pendingLate.add(String(d.targetId));
        }
        if (!rev) break;
        if (f.pendingLate.size === 0) {
          delete rev.pendingLate;
          delete rev.exposed;
        } else {
          rev.pendingLate = [...f.pendingLate];
          rev.exposed = true;
        }
      } else if (d.removed !== true) {
        t.issuance = issuanceOf(d);
        if (t.revocation) delete t.revocation.confirmedAt;
        delete t.verification;
        t.methodUnstated = false;
        if (rev) delete rev.revokedAt;
      }
      break;
    }
    case 'breakglass.used':
      f.breakGlass = e;
      break;
    case 'review.overdue':
      f.overdueRaisedAt ??= e.at;
      break;
    case 'review':
      f.review ??= e;
      break;
    default:
      break;
  }
}

/** Short text of a value for a problem message. */
function shown(v: unknown): string {
  if (v === undefined) return 'absent';
  const t = JSON.stringify(v);
  return t.length > 80 ? `${t.slice(0, 77)}...` : t;
}

/**
 * Reports `code` for each member of `got` (the record's, at `path`) that differs from `want` (what the
 * events state), or once for the whole when only one of them exists. Members in `skip` are not stated.
 */
function compareFields(
  code: EvidenceProblemCode,
  path: (string | number)[],
  want: object | undefined,
  got: object | undefined,
  err: Report,
  skip: readonly string[] = [],
): void {
  // Runs for every field group of every verification: no closure, and nothing is built unless a
  // problem is reported.
  if (want === undefined || got === undefined) {
    if (want !== got)
      err(
        code,
        `record ${path.slice(1).join('.')} is ${got === undefined ? 'absent' : 'present'}; the events say ${want === undefined ? 'there is none' : 'there is one'}`,
        { path },
      );
    return;
  }
  const w = want as Record<string, unknown>;
  const g = got as Record<string, unknown>;
  for (const k in w) {
    if (Object.hasOwn(w, k) && !skip.includes(k) && !same(w[k], g[k])) fieldDiffers(code, path, k, w, g, err);
  }
  for (const k in g) {
    if (Object.hasOwn(g, k) && !Object.hasOwn(w, k) && !skip.includes(k) && !same(w[k], g[k]))
      fieldDiffers(code, path, k, w, g, err);
  }
}

function fieldDiffers(
  code: EvidenceProblemCode,
  path: (string | number)[],
  k: string,
  w: Record<string, unknown>,
  g: Record<string, unknown>,
  err: Report,
): void {
  err(code, `record ${path.slice(1).join('.')}.${k} is ${shown(g[k])}; the events say ${shown(w[k])}`, {
    path: [...path, k],
  });
}

/**
 * Every record field the events state agrees with them: creation time, justification, each target's
 * system, resource, permissions, issuance, revocation and verification, the window, the decision,
 * the revocation, usage and break-glass (with its review).
 */
function checkRecordFacts(f: RecordFacts, record: Grant, snap: PolicySnapshot, err: Report): void {
  const req = f.requested;
  if (req) {
    if (record.createdAt !== req.at)
      err(
        'RECORD_CREATED_MISMATCH',
        `record createdAt is ${record.createdAt}; the request event is at ${req.at}`,
        {
          path: ['record', 'createdAt'],
          seq: 1,
        },
      );
    compareFields(
      'RECORD_JUSTIFICATION_MISMATCH',
      ['record', 'justification'],
      req.data.justification as object | undefined,
      record.justification,
      err,
    );
    // By id, once: a forged bundle may list many targets (a search per target would be quadratic).
    const asked = new Map<unknown, Record<string, unknown>>();
    for (const x of (req.data.targets as unknown[] | undefined) ?? [])
      if (isObj(x) && !asked.has(x.id)) asked.set(x.id, x);
    record.targets.forEach((t, i) => {
      const q = asked.get(t.id);
      if (!q) return; // RECORD_PARTIES_MISMATCH already
      for (const k of ['system', 'resource', 'permissions'] as const) {
        if (!same(q[k], t[k]))
          err(
            'RECORD_TARGETS_MISMATCH',
            `record targets.${i}.${k} is ${shown(t[k])}; the request event says ${shown(q[k])}`,
            {
              path: ['record', 'targets', i, k],
            },
          );
      }
    });
  }
  record.targets.forEach((t, i) => {
    const x = f.targets.get(t.id) ?? {};
    compareFields(
      'RECORD_TARGETS_MISMATCH',
      ['record', 'targets', i, 'issuance'],
      x.issuance,
      t.issuance,
      err,
    );
    compareFields(
      'RECORD_TARGETS_MISMATCH',
      ['record', 'targets', i, 'revocation'],
      x.revocation,
      t.revocation,
      err,
    );
    compareFields(
      'RECORD_TARGETS_MISMATCH',
      ['record', 'targets', i, 'verification'],
      x.verification,
      t.verification,
      err,
      x.methodUnstated ? ['method'] : [],
    );
  });
  const w = record.window;
  const issuedAt = f.window.issuedAt;
  compareFields(
    'RECORD_WINDOW_MISMATCH',
    ['record', 'window'],
    {
      durationSeconds: req?.data.durationSeconds ?? w.durationSeconds,
      issuedAt,
      expiresAt: f.window.expiresAt,
      hardLimitAt: expectedHardLimit(
        issuedAt,
        f.window.firstIssuedAt,
        snap.maxDurationSeconds,
        isObj(req?.data.policy) && req.data.policy.snapshotHash === undefined,
        w.hardLimitAt,
      ),
      extensions: f.window.extensions,
    },
    {
      durationSeconds: w.durationSeconds,
      issuedAt: w.issuedAt,
      expiresAt: w.expiresAt,
      hardLimitAt: w.hardLimitAt,
      extensions: w.extensions ?? 0,
    },
    err,
  );
  compareFields('RECORD_DECISION_MISMATCH', ['record', 'decision'], f.decision, record.decision, err);
  compareFields('RECORD_REVOCATION_MISMATCH', ['record', 'revocation'], f.revocation, record.revocation, err);
  compareFields(
    'RECORD_USAGE_MISMATCH',
    ['record', 'usage'],
    { count: f.usage.count, ...(f.usage.lastAt ? { lastAt: f.usage.lastAt } : {}) },
    record.usage,
    err,
  );
  const bg = record.breakGlass;
  const used = f.breakGlass;
  if (bg && used) {
    // reviewerRoles come from the policy, not the events (checked against the document when present).
    compareFields(
      'RECORD_BREAKGLASS_MISMATCH',
      ['record', 'breakGlass'],
      {
        actor: req?.data.requester ?? bg.actor,
        reason: used.data.reason,
        at: used.at,
        reviewDueAt: used.data.reviewDueAt,
        ...(f.overdueRaisedAt ? { overdueRaisedAt: f.overdueRaisedAt } : {}),
      },
      {
        actor: bg.actor,
        reason: bg.reason,
        at: bg.at,
        reviewDueAt: bg.reviewDueAt,
        ...(bg.overdueRaisedAt ? { overdueRaisedAt: bg.overdueRaisedAt } : {}),
      },
      err,
    );
    const r = f.review;
    const got = bg.review;
    // The reviewer's roles, teams and claims are the record's: the event names only id, kind and role.
    compareFields(
      'RECORD_BREAKGLASS_MISMATCH',
      ['record', 'breakGlass', 'review'],
      r && {
        reviewerId: r.actor.id,
        reviewerKind: r.actor.kind,
        role: r.actingRole,
        outcome: r.data.outcome,
        ...(r.data.notes ? { notes: r.data.notes } : {}),
        at: r.at,
      },
      got && {
        reviewerId: got.reviewer?.id,
        reviewerKind: got.reviewer?.kind,
        role: got.role,
        outcome: got.outcome,
        ...(got.notes ? { notes: got.notes } : {}),
        at: got.at,
      },
      err,
    );
  }
}

/** The rule id of a break-glass case's snapshot (service.ts `breakGlass`). */
const BREAK_GLASS_RULE = 'break-glass';

/**
 * The reviewer of a break-glass case, as the service's `review` refuses them: not the break-glass
 * actor (the requester) nor the subject, a human, acting in one of the case's `reviewerRoles` that
 * they hold, and not in the operator team. The event names the reviewer's id, kind and role; their
 * roles and teams are the record's (compared with the event by {@link checkRecordFacts}).
 */
function checkReview(
  e: AuditEvent,
  record: Grant,
  requester: Principal,
  subject: Principal,
  snap: PolicySnapshot,
  err: Report,
): void {
  const at = { seq: e.seq };
  const id = e.actor.id;
  const actor = record.breakGlass?.actor.id ?? requester.id;
  if (sameIdentity(id, actor) || sameIdentity(id, requester.id) || sameIdentity(id, subject.id))
    err(
      'SELF_REVIEW',
      `${id} reviewed a break-glass case they ${sameIdentity(id, subject.id) ? 'are the subject of' : 'used'}`,
      at,
    );
  if (e.actor.kind !== 'human') err('REVIEWER_NOT_HUMAN', `reviewer ${id} is not a human`, at);
  const reviewer = record.breakGlass?.review?.reviewer;
  if ((reviewer?.teams ?? []).some((team) => sameIdentity(team, snap.operator)))
    err('OPERATOR_TEAM_REVIEW', `${id} is in the break-glass operator team ${snap.operator}`, at);
  const roles = record.breakGlass?.reviewerRoles ?? [];
  const role = e.actingRole;
  if (role === undefined || !roles.includes(role) || !(reviewer?.roles ?? []).includes(role)) {
    err(
      'ROLE_NOT_QUALIFIED',
      `${id} reviewed as ${role ?? '(no role)'}; a reviewer needs one of ${roles.join(', ') || '(none)'}, held`,
      at,
    );
  }
}

/** `QUORUM_NOT_MET` at event `e` unless `given` meets the snapshot's quorum (issuance or an extension). */
function checkQuorum(
  what: 'approved' | 'extended',
  given: readonly ApprovalFact[],
  snap: PolicySnapshot,
  e: { seq: number; at: string },
  err: Report,
): void {
  if (
    quorumMet(
      snap,
      given.map((a) => ({ approver: a.approver, role: a.role, at: e.at })),
      { extension: what === 'extended' },
    )
  )
    return;
  err(
    'QUORUM_NOT_MET',
    `${what} with ${given.length} approval(s); the rule requires ${what === 'extended' ? Math.max(1, snap.approvals.count) : snap.approvals.count} from ${snap.approvals.roles.join(', ')}${snap.approvals.distinctRoles ? ' in distinct roles' : ''}`,
    { seq: e.seq },
  );
}

function checkApproval(
  a: ApprovalFact,
  earlier: readonly ApprovalFact[],
  snap: PolicySnapshot,
  requester: Principal,
  subject: Principal,
  err: Report,
): void {
  const at = { seq: a.seq };
  const id = a.approver?.id;
  if (sameIdentity(id, requester.id) || sameIdentity(id, subject.id))
    err(
      'SELF_APPROVAL',
      `${id} approved a case they ${sameIdentity(id, requester.id) ? 'requested' : 'are the subject of'}`,
      at,
    );
  if ((a.approver?.teams ?? []).some((team) => sameIdentity(team, snap.operator)))
    err('OPERATOR_APPROVAL', `${id} is in the operator team ${snap.operator}`, at);
  if (a.approver?.kind !== 'human') err('APPROVER_NOT_HUMAN', `approver ${id} is not a human`, at);
  if (earlier.some((x) => sameIdentity(x.approver?.id, id)))
    err('DUPLICATE_APPROVER', `${id} approved twice`, at);
  if (!snap.approvals.roles.includes(a.role) || !(a.approver?.roles ?? []).includes(a.role)) {
    err(
      'ROLE_NOT_QUALIFIED',
      `${id} approved as ${a.role}, which ${snap.approvals.roles.includes(a.role) ? 'they do not hold' : 'does not qualify'}`,
      at,
    );
  }
  if (snap.approvals.distinctRoles && earlier.some((x) => x.role === a.role)) {
    err('ROLE_NOT_QUALIFIED', `role ${a.role} approved twice where distinct roles are required`, at);
  }
  if (snap.requireProvenApprovers && !a.proof)
    err('APPROVER_NOT_PROVEN', `${id} approved without a proven identity`, at);
}

async function checkAgainstCheckpoint(
  p: EvidencePayload,
  cp: SignedCheckpoint,
  keys: JSONWebKeySet,
  err: Report,
): Promise<void> {
  const v = await verifyCheckpoint(cp, keys);
  if (!v.valid || !v.checkpoint) {
    err('CHECKPOINT_INVALID', `checkpoint does not verify: ${v.problems.map((x) => x.message).join('; ')}`);
    return;
  }
  const head = v.checkpoint.heads.get(p.caseId);
  if (!head) {
    const early = p.events.find((e) => e.globalSeq !== undefined && e.globalSeq <= v.checkpoint!.upTo);
    if (early) {
      err(
        'CHECKPOINT_CASE_UNKNOWN',
        `event ${early.seq} is at global position ${early.globalSeq}, inside checkpoint ${v.checkpoint.upTo}, but the checkpoint does not know the case`,
        {
          seq: early.seq,
        },
      );
    }
    return;
  }
  const [seq, hash] = head;
  const e = p.events[seq - 1];
  if (!e) {
    err(
      'CHECKPOINT_TRUNCATED',
      `checkpoint ${v.checkpoint.upTo} recorded this case up to seq ${seq}; the bundle has only ${p.events.length} event(s)`,
      { seq },
    );
  } else if (e.seq !== seq || e.hash !== hash) {
    err(
      'CHECKPOINT_MISMATCH',
      `checkpoint ${v.checkpoint.upTo} recorded seq ${seq} with hash ${hash.slice(0, 12)}; the bundle has ${e.hash.slice(0, 12)}`,
      { seq },
    );
  }
}
