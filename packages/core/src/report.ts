import { z } from 'zod';
import { parseInput } from './errors.js';
import type { Grant, GrantState } from './model.js';
import type { GrantStore } from './ports.js';

/** A control a finding gives evidence for (or against). */
export interface ControlRef {
  framework: 'OWASP NHI Top 10 (2025)' | 'NIST CSF 2.0' | 'NIST SP 800-207';
  id: string;
  title: string;
}

const NHI = (id: string, title: string): ControlRef => ({ framework: 'OWASP NHI Top 10 (2025)', id, title });
const CSF = (id: string, title: string): ControlRef => ({ framework: 'NIST CSF 2.0', id, title });
const ZT = (id: string, title: string): ControlRef => ({ framework: 'NIST SP 800-207', id, title });

/** The controls Grantline's evidence speaks to. */
export const CONTROLS = {
  nhi1: NHI('NHI1', 'Improper Offboarding'),
  nhi4: NHI('NHI4', 'Insecure Authentication'),
  nhi5: NHI('NHI5', 'Overprivileged NHI'),
  nhi7: NHI('NHI7', 'Long-Lived Secrets'),
  nhi10: NHI('NHI10', 'Human Use of NHI'),
  aa01: CSF(
    'PR.AA-01',
    'Identities and credentials for authorized users, services, and hardware are managed by the organization',
  ),
  aa02: CSF(
    'PR.AA-02',
    'Identities are proofed and bound to credentials based on the context of interactions',
  ),
  aa03: CSF('PR.AA-03', 'Users, services, and hardware are authenticated'),
  aa04: CSF('PR.AA-04', 'Identity assertions are protected, conveyed, and verified'),
  aa05: CSF(
    'PR.AA-05',
    'Access permissions, entitlements, and authorizations are defined in a policy, managed, enforced, and reviewed, and incorporate the principles of least privilege and separation of duties',
  ),
  zt3: ZT('Tenet 3', 'Access to individual enterprise resources is granted on a per-session basis'),
  zt4: ZT('Tenet 4', 'Access to resources is determined by dynamic policy'),
  zt5: ZT(
    'Tenet 5',
    'The enterprise monitors and measures the integrity and security posture of all owned and associated assets',
  ),
  zt6: ZT(
    'Tenet 6',
    'All resource authentication and authorization are dynamic and strictly enforced before access is allowed',
  ),
  zt7: ZT(
    'Tenet 7',
    'The enterprise collects as much information as possible about the current state of assets and uses it to improve its security posture',
  ),
} as const satisfies Record<string, ControlRef>;

/** Stable finding codes. */
export type ReportFindingCode =
  | 'LINGERING_ACCESS'
  | 'REVOCATION_FAILED'
  | 'REVOCATION_PENDING'
  | 'REMOVAL_UNVERIFIED'
  | 'BREAKGLASS_REVIEW_OVERDUE'
  | 'BREAKGLASS_REVIEW_PENDING'
  | 'UNPROVEN_IDENTITY'
  | 'VIOLATION_REVOKED'
  | 'OPEN_ACCESS'
  | 'REMOVAL_VERIFIED'
  | 'APPROVED_BEFORE_ISSUE';

/** One finding: what, how many, which cases, which controls it evidences. */
export interface ReportFinding {
  code: ReportFindingCode;
  /** `gap` needs action; `evidence` shows a control working. */
  kind: 'gap' | 'evidence';
  severity: 'high' | 'medium' | 'low' | 'info';
  title: string;
  count: number;
  /** At most 100 case ids; `count` has the total. */
  caseIds: string[];
  controls: ControlRef[];
}

/** Latency distribution in milliseconds (nearest-rank percentiles). */
export interface LatencyStats {
  count: number;
  p50: number | null;
  p99: number | null;
  max: number | null;
}

/** A period report over the store. */
export interface GrantlineReport {
  period: { from: string; to: string };
  generatedAt: string;
  cases: { total: number; byState: Partial<Record<GrantState, number>>; breakGlass: number };
  latency: {
    /** Request to the last approval that met the quorum. */
    approval: LatencyStats;
    /** End of the window (or the trigger) to every target revoked. */
    revocation: LatencyStats;
    /** End of the window (or the trigger) to removal verified. */
    verification: LatencyStats;
  };
  findings: ReportFinding[];
}

const timeInput = z
  .union([z.date(), z.iso.datetime({ offset: false })])
  .transform((v) => (v instanceof Date ? v : new Date(v)));
const reportInputSchema = z
  .strictObject({ from: timeInput, to: timeInput, now: z.date().optional() })
  .refine((r) => !(r.from instanceof Date && r.to instanceof Date) || r.from.getTime() <= r.to.getTime(), {
    message: 'from must not be after to',
    path: ['from'],
  });

/** Input of {@link buildReport}. */
export type ReportInput = z.input<typeof reportInputSchema>;

/** Nearest-rank percentiles. */
export function latencyStats(values: number[]): LatencyStats {
  if (values.length === 0) return { count: 0, p50: null, p99: null, max: null };
  const s = [...values].sort((a, b) => a - b);
  const rank = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
  return { count: s.length, p50: rank(50), p99: rank(99), max: s[s.length - 1]! };
}

const LIVE: readonly GrantState[] = ['issuing', 'issued', 'revoking'];

/**
 * Summarises a period: cases active in `[from, to]` (created before `to` and updated after `from`)
 * plus every case still holding access. Each finding maps to the OWASP NHI Top 10, NIST CSF 2.0
 * PR.AA and NIST SP 800-207 controls it evidences. Reads records only (not events), paging the store.
 * @throws GrantlineError `ERR_VALIDATION` for a bad period.
 */
export async function buildReport(store: GrantStore, input: ReportInput): Promise<GrantlineReport> {
  const q = parseInput(reportInputSchema, input, 'report');
  const now = q.now ?? new Date();
  const from = q.from.toISOString();
  const to = q.to.toISOString();
  const grants: Grant[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.list({ limit: 1_000, ...(cursor ? { cursor } : {}) });
    for (const g of page.grants) {
      const inPeriod = g.createdAt <= to && g.updatedAt >= from;
      if (inPeriod || LIVE.includes(g.state)) grants.push(g);
    }
    cursor = page.nextCursor;
  } while (cursor);

  const byState: Partial<Record<GrantState, number>> = {};
  for (const g of grants) byState[g.state] = (byState[g.state] ?? 0) + 1;
  const ids = new Map<ReportFindingCode, string[]>();
  const hit = (code: ReportFindingCode, g: Grant) => {
    const list = ids.get(code) ?? [];
    list.push(g.id);
    ids.set(code, list);
  };
  const approvalMs: number[] = [];
  const revocationMs: number[] = [];
  const verificationMs: number[] = [];
  const t = now.getTime();
  for (const g of grants) {
    const expired = g.window.expiresAt !== undefined && Date.parse(g.window.expiresAt) <= t;
    if ((g.state === 'issued' || g.state === 'issuing') && expired) hit('LINGERING_ACCESS', g);
    else if (g.state === 'issued') hit('OPEN_ACCESS', g);
    if (g.revocation?.exposed) hit('REVOCATION_FAILED', g);
    else if (g.state === 'revoking') hit('REVOCATION_PENDING', g);
    if (g.state === 'revoked') hit('REMOVAL_UNVERIFIED', g);
    if (g.state === 'verified') hit('REMOVAL_VERIFIED', g);
    if (g.breakGlass && !g.breakGlass.review) {
      hit(
        Date.parse(g.breakGlass.reviewDueAt) <= t ? 'BREAKGLASS_REVIEW_OVERDUE' : 'BREAKGLASS_REVIEW_PENDING',
        g,
      );
    }
    const unprovenApprover = g.approvals.some((a) => !a.proof);
    const unprovenWorkload =
      g.subject.kind === 'workload' && !(g.subject.claims as { proof?: unknown } | undefined)?.proof;
    if (unprovenApprover || unprovenWorkload) hit('UNPROVEN_IDENTITY', g);
    if (g.revocation?.trigger === 'violation') hit('VIOLATION_REVOKED', g);
    if (
      g.window.issuedAt &&
      !g.breakGlass &&
      (g.approvals.length >= g.policy.approvals.count || g.policy.template)
    )
      hit('APPROVED_BEFORE_ISSUE', g);
    if (g.approvals.length > 0 && g.approvals.length >= g.policy.approvals.count) {
      const quorumAt = Math.max(
        ...g.approvals.slice(0, Math.max(1, g.policy.approvals.count)).map((a) => Date.parse(a.at)),
      );
      approvalMs.push(quorumAt - Date.parse(g.createdAt));
    }
    if (g.revocation?.lagToRevokedMs !== undefined) revocationMs.push(g.revocation.lagToRevokedMs);
    if (g.revocation?.lagToVerifiedMs !== undefined) verificationMs.push(g.revocation.lagToVerifiedMs);
  }

  const C = CONTROLS;
  const catalogue: Record<ReportFindingCode, Omit<ReportFinding, 'code' | 'count' | 'caseIds'>> = {
    LINGERING_ACCESS: {
      kind: 'gap',
      severity: 'high',
      title: 'Access still live past its expiry, revocation not started',
      controls: [C.nhi1, C.nhi7, C.aa01, C.aa05, C.zt3, C.zt6],
    },
    REVOCATION_FAILED: {
      kind: 'gap',
      severity: 'high',
      title: 'Revocation or verification gave up; access may still be live',
      controls: [C.nhi1, C.nhi7, C.aa01, C.zt6],
    },
    REVOCATION_PENDING: {
      kind: 'gap',
      severity: 'medium',
      title: 'Revocation requested, not yet confirmed by every target',
      controls: [C.nhi1, C.aa01, C.zt3],
    },
    REMOVAL_UNVERIFIED: {
      kind: 'gap',
      severity: 'medium',
      title: 'Revoked, but removal not yet verified against the target',
      controls: [C.nhi1, C.aa01, C.zt5, C.zt7],
    },
    BREAKGLASS_REVIEW_OVERDUE: {
      kind: 'gap',
      severity: 'high',
      title: 'Break-glass use without its mandatory review, past the deadline',
      controls: [C.nhi10, C.aa05, C.zt4],
    },
    BREAKGLASS_REVIEW_PENDING: {
      kind: 'gap',
      severity: 'low',
      title: 'Break-glass use awaiting review (not yet due)',
      controls: [C.nhi10, C.aa05],
    },
    UNPROVEN_IDENTITY: {
      kind: 'gap',
      severity: 'low',
      title: 'Approver or workload identity asserted by the host, not proven by a signed assertion',
      controls: [C.nhi4, C.aa02, C.aa03, C.aa04, C.zt6],
    },
    VIOLATION_REVOKED: {
      kind: 'evidence',
      severity: 'info',
      title: 'Access revoked on a usage-policy violation',
      controls: [C.nhi5, C.aa05, C.zt4, C.zt7],
    },
    OPEN_ACCESS: {
      kind: 'evidence',
      severity: 'info',
      title: 'Access live within its approved window',
      controls: [C.nhi7, C.zt3],
    },
    REMOVAL_VERIFIED: {
      kind: 'evidence',
      severity: 'info',
      title: 'Access revoked and its removal verified at the target',
      controls: [C.nhi1, C.nhi7, C.aa01, C.zt3, C.zt7],
    },
    APPROVED_BEFORE_ISSUE: {
      kind: 'evidence',
      severity: 'info',
      title: 'Issued only after the approvals the policy requires (separation of duties)',
      controls: [C.aa05, C.zt4, C.zt6],
    },
  };
  const order: ReportFindingCode[] = Object.keys(catalogue) as ReportFindingCode[];
  const findings: ReportFinding[] = order
    .filter((code) => (ids.get(code)?.length ?? 0) > 0)
    .map((code) => ({
      code,
      ...catalogue[code],
      count: ids.get(code)!.length,
      caseIds: ids.get(code)!.slice(0, 100),
    }));

  return {
    period: { from, to },
    generatedAt: now.toISOString(),
    cases: { total: grants.length, byState, breakGlass: grants.filter((g) => g.breakGlass).length },
    latency: {
      approval: latencyStats(approvalMs),
      revocation: latencyStats(revocationMs),
      verification: latencyStats(verificationMs),
    },
    findings,
  };
}

const ms = (v: number | null) =>
  v === null
    ? '–'
    : v < 1000
      ? `${v} ms`
      : v < 120_000
        ? `${(v / 1000).toFixed(1)} s`
        : `${(v / 60_000).toFixed(1)} min`;

/** Renders a report as Markdown for humans (auditors, owners). */
export function renderReportMarkdown(r: GrantlineReport): string {
  const lines: string[] = [];
  lines.push(
    `# Grantline access report`,
    '',
    `Period ${r.period.from} to ${r.period.to}, generated ${r.generatedAt}.`,
    '',
  );
  lines.push(
    `Cases: ${r.cases.total} (break-glass: ${r.cases.breakGlass}). By state: ${
      Object.entries(r.cases.byState)
        .map(([s, n]) => `${s} ${n}`)
        .join(', ') || 'none'
    }.`,
    '',
  );
  lines.push('| latency | count | p50 | p99 | max |', '| --- | --- | --- | --- | --- |');
  for (const [name, s] of Object.entries(r.latency))
    lines.push(`| ${name} | ${s.count} | ${ms(s.p50)} | ${ms(s.p99)} | ${ms(s.max)} |`);
  lines.push('');
  const gaps = r.findings.filter((f) => f.kind === 'gap');
  const evidence = r.findings.filter((f) => f.kind === 'evidence');
  lines.push('## Findings that need action', '');
  if (gaps.length === 0) lines.push('None.', '');
  for (const f of gaps) {
    lines.push(
      `### ${f.title} (${f.severity}, ${f.count})`,
      '',
      `Code \`${f.code}\`. Cases: ${f.caseIds.map((c) => `\`${c}\``).join(', ')}${f.count > f.caseIds.length ? ', …' : ''}.`,
      '',
    );
    lines.push(`Controls: ${f.controls.map((c) => `${c.framework} ${c.id} (${c.title})`).join('; ')}.`, '');
  }
  lines.push('## Controls evidenced', '', '| evidence | cases | controls |', '| --- | --- | --- |');
  for (const f of evidence)
    lines.push(`| ${f.title} | ${f.count} | ${f.controls.map((c) => c.id).join(', ')} |`);
  lines.push('');
  return lines.join('\n');
}
