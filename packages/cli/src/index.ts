import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import {
  type EvidencePayload,
  type EvidenceVerification,
  type SignedCheckpoint,
  verifyEvidence,
} from '@grantline/core';
import type { JSONWebKeySet } from 'jose';

/** Where the CLI writes; the bin passes process streams, tests may pass buffers. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

/** Exit codes: 0 valid, 1 invalid evidence, 2 usage or input error (unreadable file, bad JWKS). */
export const EXIT = { VALID: 0, INVALID: 1, USAGE: 2 } as const;

const USAGE = `Usage: grantline verify <bundle.json> --jwks <keys.json> [--checkpoint <checkpoint.json>] [--now <ISO time>] [--json]

Verifies a Grantline evidence bundle offline: the signature against the public keys in the JWKS,
the audit hash chain, the case record against its events, and the lifecycle invariants under the
policy snapshot. With --checkpoint, also that no event the checkpoint covered is missing.

Exit code 0 only when the bundle is valid; 1 when it is not; 2 for usage or unreadable input.`;

async function readJson(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  if (what === 'bundle') return text; // verified byte for byte by verifyEvidence
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${what} ${path} is not valid JSON`);
  }
}

/**
 * Characters a terminal may act on rather than show: C0 and C1 controls, DEL, the line and paragraph
 * separators, and the bidirectional marks, embeddings, overrides and isolates (which can make text
 * read in another order than it is stored).
 */
const CONTROL_CLASS =
  '[\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069]';
const CONTROLS = new RegExp(CONTROL_CLASS, 'g');
const HAS_CONTROL = new RegExp(CONTROL_CLASS);
/** The characters of {@link CONTROLS} that JSON.stringify leaves as they are (it escapes C0 in strings). */
const JSON_RAW = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** `text` with every character of {@link CONTROLS} as a `\uXXXX` escape. */
function escapeControls(text: string, which: RegExp = CONTROLS): string {
  return text.replace(which, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A bundle-derived value as text: strings as they are, anything else as JSON (`undefined` for a missing value). */
function asText(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v === undefined || typeof v === 'bigint' || typeof v === 'symbol' || typeof v === 'function')
    return String(v);
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/**
 * A value from the bundle as it may be printed: as it is when it holds no control character (see
 * {@link CONTROLS}), else JSON-quoted with every such character escaped. Bundle text is untrusted,
 * even in a correctly signed bundle: printed raw, escape sequences could clear the screen and draw a
 * verdict of their own, and a newline could add a line that seems to be the report's.
 */
export function printable(v: unknown): string {
  const s = asText(v);
  return HAS_CONTROL.test(s) ? escapeControls(JSON.stringify(s)) : s;
}

/** Free text from the bundle (reasons), always JSON-quoted and with control characters escaped. */
function quoted(v: unknown): string {
  return v === undefined ? 'undefined' : escapeControls(JSON.stringify(asText(v)));
}

/** The value at `path` in `v`, or undefined where any step is not an object (a tampered bundle may lack anything). */
function at(v: unknown, ...path: (string | number)[]): unknown {
  let x = v;
  for (const k of path) {
    if (x === null || typeof x !== 'object') return undefined;
    x = (x as Record<string | number, unknown>)[k];
  }
  return x;
}

/** `v` when it is an array, else no elements. */
function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/**
 * Human-readable account of a bundle's payload: who asked, approved, used, removed, verified. Every
 * value from the bundle goes through {@link printable}, and a missing or mistyped member (a tampered
 * bundle) is printed as `undefined` rather than thrown over: the lines never contain a control
 * character, and each is one line.
 */
export function describeEvidence(p: EvidencePayload): string[] {
  const r: unknown = at(p, 'record');
  const t = (...path: (string | number)[]) => printable(at(r, ...path));
  const out: string[] = [];
  const who = (x: unknown) => `${printable(at(x, 'id'))} (${printable(at(x, 'kind'))})`;
  const events = list(at(p, 'events'));
  const snap = (k: string) => printable(at(p, 'policy', 'snapshot', k));
  const head = at(p, 'chain', 'head');
  out.push(`Case       ${t('id')}, state ${t('state')}`);
  out.push(
    `Signed     by key ${printable(at(p, 'signer', 'kid'))} (${printable(at(p, 'signer', 'alg'))}) at ${printable(at(p, 'generatedAt'))}`,
  );
  out.push(
    `Chain      ${events.length} events, head ${typeof head === 'string' ? `${printable(head.slice(0, 16))}…` : printable(head)}`,
  );
  out.push(
    `Policy     ${snap('policyId')}@${snap('policyVersion')}, rule ${snap('ruleId')} (${snap('risk')} risk), owner ${snap('owner')}, operator ${snap('operator')}`,
  );
  const ticket = at(r, 'justification', 'ticket');
  const change = at(r, 'justification', 'changeRecord');
  out.push(
    `Requested  by ${who(at(r, 'requester'))} for ${who(at(r, 'subject'))} at ${t('createdAt')}: ${quoted(at(r, 'justification', 'reason'))}${ticket ? `, ticket ${printable(ticket)}` : ''}${change ? `, change ${printable(change)}` : ''}`,
  );
  const subjectProof = at(r, 'subject', 'claims', 'proof');
  if (subjectProof) {
    const kid = at(subjectProof, 'kid');
    out.push(
      `           subject proven by ${printable(at(subjectProof, 'issuer'))}${kid ? ` (kid ${printable(kid)})` : ''}`,
    );
  }
  const bg = at(r, 'breakGlass');
  if (bg) {
    const review = at(bg, 'review');
    out.push(
      `Break-glass by ${printable(at(bg, 'actor', 'id'))}: ${quoted(at(bg, 'reason'))}, review due ${printable(at(bg, 'reviewDueAt'))}${review ? `, reviewed ${printable(at(review, 'outcome'))} by ${printable(at(review, 'reviewer', 'id'))} as ${printable(at(review, 'role'))}` : ', not reviewed'}`,
    );
  }
  for (const a of list(at(r, 'approvals'))) {
    const proof = at(a, 'proof');
    const kid = at(proof, 'kid');
    out.push(
      `Approved   by ${printable(at(a, 'approver', 'id'))} as ${printable(at(a, 'role'))} at ${printable(at(a, 'at'))}${proof ? ` (proven by ${printable(at(proof, 'issuer'))}${kid ? `, kid ${printable(kid)}` : ''})` : ''}`,
    );
  }
  for (const target of list(at(r, 'targets'))) {
    const issuance = at(target, 'issuance');
    const ref = at(issuance, 'ref');
    const refText =
      ref !== null && typeof ref === 'object' && !Array.isArray(ref)
        ? Object.entries(ref)
            .map(([k, v]) => `${printable(k)}=${printable(v)}`)
            .join(' ')
        : printable(ref);
    out.push(
      `Target     ${printable(at(target, 'id'))}: ${printable(at(target, 'system'))} ${printable(at(target, 'resource'))}${
        issuance
          ? `, issued ${printable(at(issuance, 'issuedAt'))} until ${printable(at(issuance, 'expiresAt'))}, ref ${refText}`
          : ''
      }`,
    );
  }
  for (const e of events.filter((x) => at(x, 'type') === 'usage')) {
    const d = (k: string) => at(e, 'data', k);
    out.push(
      `Used       by ${printable(d('usedBy') ?? at(e, 'actor', 'id'))} from ${printable(d('sourceIp'))} for ${printable(d('action'))} at ${printable(d('at') ?? at(e, 'at'))}${d('afterRevocation') ? ' (AFTER REVOCATION)' : ''}`,
    );
  }
  const rev = at(r, 'revocation');
  if (rev) {
    const done = at(rev, 'revokedAt');
    out.push(
      `Revoked    by ${printable(at(rev, 'actor', 'id'))} (${printable(at(rev, 'trigger'))}: ${printable(at(rev, 'reason'))}) requested ${printable(at(rev, 'requestedAt'))}${done ? `, done ${printable(done)}` : ', NOT CONFIRMED'}`,
    );
  }
  for (const e of events.filter((x) => at(x, 'type') === 'target.verified')) {
    out.push(
      `Verified   ${printable(at(e, 'data', 'targetId'))} removed, by ${printable(at(e, 'actor', 'id'))} with ${printable(at(e, 'data', 'method'))} at ${printable(at(e, 'at'))}`,
    );
  }
  return out;
}

function report(r: EvidenceVerification): string {
  const verdict = `Grantline evidence: ${r.valid ? 'VALID' : 'INVALID'}`;
  const lines = [verdict, ''];
  if (r.payload) {
    // describeEvidence reads whatever the payload holds; should it still fail, the problems and the
    // verdict are printed all the same.
    try {
      lines.push(...describeEvidence(r.payload), '');
    } catch (err) {
      lines.push(
        `The account could not be retold (${printable(err instanceof Error ? err.message : err)}).`,
        '',
      );
    }
  }
  if (!r.payload) lines.push('The bundle could not be read as evidence.', '');
  if (r.problems.length === 0) lines.push('No problems found.');
  else {
    lines.push(`Problems (${r.problems.length}):`);
    for (const p of r.problems)
      lines.push(
        `  ${printable(p.severity.toUpperCase())} ${printable(p.code)}${p.seq !== undefined ? ` (event ${printable(p.seq)})` : ''}: ${printable(p.message)}`,
      );
  }
  if (!r.valid && r.payload) lines.push('', 'Do not rely on the account above: the bundle did not verify.');
  // The verdict once more as the last line, where the eye ends: nothing printed from the bundle comes after it.
  lines.push('', verdict);
  return `${lines.join('\n')}\n`;
}

/**
 * Runs the CLI with `argv` (without the node and script paths) and returns the exit code. A thin
 * shell over `verifyEvidence`: reading files, formatting, exit codes.
 */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        jwks: { type: 'string' },
        checkpoint: { type: 'string' },
        now: { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    io.err(`${(err as Error).message}\n\n${USAGE}\n`);
    return EXIT.USAGE;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.out(`${USAGE}\n`);
    return EXIT.VALID;
  }
  const [command, file, ...rest] = positionals;
  if (command !== 'verify' || !file || rest.length > 0 || typeof values.jwks !== 'string') {
    io.err(`${USAGE}\n`);
    return EXIT.USAGE;
  }
  const now = typeof values.now === 'string' ? new Date(values.now) : undefined;
  if (now && Number.isNaN(now.getTime())) {
    io.err(`--now ${String(values.now)} is not a valid time\n`);
    return EXIT.USAGE;
  }
  let bundle: unknown;
  let keys: JSONWebKeySet;
  let checkpoint: SignedCheckpoint | undefined;
  try {
    bundle = await readJson(file, 'bundle');
    keys = (await readJson(values.jwks, 'JWKS')) as JSONWebKeySet;
    if (!keys || !Array.isArray(keys.keys)) throw new Error(`JWKS ${values.jwks} has no "keys" array`);
    if (keys.keys.some((k) => typeof k === 'object' && k !== null && 'd' in k)) {
      throw new Error(`JWKS ${values.jwks} holds a private key; give auditors public keys only`);
    }
    if (typeof values.checkpoint === 'string')
      checkpoint = (await readJson(values.checkpoint, 'checkpoint')) as SignedCheckpoint;
  } catch (err) {
    io.err(`grantline verify: ${(err as Error).message}\n`);
    return EXIT.USAGE;
  }
  const r = await verifyEvidence(bundle, {
    keys,
    ...(checkpoint ? { checkpoint } : {}),
    ...(now ? { now } : {}),
  });
  if (values.json) {
    const { payload, ...rest2 } = r;
    // JSON.stringify escapes C0 controls only: the others are escaped too (still JSON, same values).
    io.out(
      `${escapeControls(JSON.stringify({ ...rest2, ...(payload ? { caseId: at(payload, 'caseId'), state: at(payload, 'record', 'state'), generatedAt: at(payload, 'generatedAt') } : {}) }, null, 2), JSON_RAW)}\n`,
    );
  } else io.out(report(r));
  return r.valid ? EXIT.VALID : EXIT.INVALID;
}
