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

/** Human-readable account of a verified bundle: who asked, approved, used, removed, verified. */
export function describeEvidence(p: EvidencePayload): string[] {
  const r = p.record;
  const out: string[] = [];
  const who = (x: { id: string; kind: string }) => `${x.id} (${x.kind})`;
  out.push(`Case       ${r.id}, state ${r.state}`);
  out.push(`Signed     by key ${p.signer.kid} (${p.signer.alg}) at ${p.generatedAt}`);
  out.push(`Chain      ${p.events.length} events, head ${p.chain.head.slice(0, 16)}…`);
  out.push(
    `Policy     ${p.policy.snapshot.policyId}@${p.policy.snapshot.policyVersion}, rule ${p.policy.snapshot.ruleId} (${p.policy.snapshot.risk} risk), owner ${p.policy.snapshot.owner}, operator ${p.policy.snapshot.operator}`,
  );
  const j = r.justification;
  out.push(
    `Requested  by ${who(r.requester)} for ${who(r.subject)} at ${r.createdAt}: "${j.reason}"${j.ticket ? `, ticket ${j.ticket}` : ''}${j.changeRecord ? `, change ${j.changeRecord}` : ''}`,
  );
  const subjectProof = (r.subject.claims as { proof?: { issuer: string; kid?: string } } | undefined)?.proof;
  if (subjectProof)
    out.push(
      `           subject proven by ${subjectProof.issuer}${subjectProof.kid ? ` (kid ${subjectProof.kid})` : ''}`,
    );
  if (r.breakGlass)
    out.push(
      `Break-glass by ${r.breakGlass.actor.id}: "${r.breakGlass.reason}", review due ${r.breakGlass.reviewDueAt}${r.breakGlass.review ? `, reviewed ${r.breakGlass.review.outcome} by ${r.breakGlass.review.reviewer.id} as ${r.breakGlass.review.role}` : ', not reviewed'}`,
    );
  for (const a of r.approvals) {
    out.push(
      `Approved   by ${a.approver.id} as ${a.role} at ${a.at}${a.proof ? ` (proven by ${a.proof.issuer}${a.proof.kid ? `, kid ${a.proof.kid}` : ''})` : ''}`,
    );
  }
  for (const t of r.targets) {
    out.push(
      `Target     ${t.id}: ${t.system} ${t.resource}${
        t.issuance
          ? `, issued ${t.issuance.issuedAt} until ${t.issuance.expiresAt}, ref ${Object.entries(
              t.issuance.ref,
            )
              .map(([k, v]) => `${k}=${v}`)
              .join(' ')}`
          : ''
      }`,
    );
  }
  for (const e of p.events.filter((x) => x.type === 'usage')) {
    out.push(
      `Used       by ${String(e.data.usedBy ?? e.actor.id)} from ${String(e.data.sourceIp)} for ${String(e.data.action)} at ${String(e.data.at ?? e.at)}${e.data.afterRevocation ? ' (AFTER REVOCATION)' : ''}`,
    );
  }
  if (r.revocation) {
    out.push(
      `Revoked    by ${r.revocation.actor.id} (${r.revocation.trigger}: ${r.revocation.reason}) requested ${r.revocation.requestedAt}${r.revocation.revokedAt ? `, done ${r.revocation.revokedAt}` : ', NOT CONFIRMED'}`,
    );
  }
  for (const e of p.events.filter((x) => x.type === 'target.verified')) {
    out.push(
      `Verified   ${String(e.data.targetId)} removed, by ${e.actor.id} with ${String(e.data.method)} at ${e.at}`,
    );
  }
  return out;
}

function report(r: EvidenceVerification): string {
  const lines = [`Grantline evidence: ${r.valid ? 'VALID' : 'INVALID'}`, ''];
  if (r.payload) lines.push(...describeEvidence(r.payload), '');
  if (!r.payload) lines.push('The bundle could not be read as evidence.', '');
  if (r.problems.length === 0) lines.push('No problems found.');
  else {
    lines.push(`Problems (${r.problems.length}):`);
    for (const p of r.problems)
      lines.push(
        `  ${p.severity.toUpperCase()} ${p.code}${p.seq !== undefined ? ` (event ${p.seq})` : ''}: ${p.message}`,
      );
  }
  if (!r.valid && r.payload) lines.push('', 'Do not rely on the account above: the bundle did not verify.');
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
    io.out(
      `${JSON.stringify({ ...rest2, ...(payload ? { caseId: payload.caseId, state: payload.record.state, generatedAt: payload.generatedAt } : {}) }, null, 2)}\n`,
    );
  } else io.out(report(r));
  return r.valid ? EXIT.VALID : EXIT.INVALID;
}
