import type { AuditEvent } from './model.js';

/** One row of a human-readable case timeline. */
export interface TimelineRow {
  seq: number;
  at: string;
  event: string;
  actor: string;
  role: string;
  detail: string;
}

const DETAIL_KEYS = [
  'reason',
  'trigger',
  'targetId',
  'sourceIp',
  'action',
  'outcome',
  'method',
  'expiresAt',
  'lagMs',
  'template',
  'reviewDueAt',
];

function detailOf(e: AuditEvent): string {
  const d = e.data;
  const parts: string[] = [];
  if (e.type === 'requested') {
    const j = d.justification as
      | { reason?: string; ticket?: string; changeRecord?: string; workload?: string }
      | undefined;
    const subject = d.subject as { id?: string } | undefined;
    parts.push(`for ${subject?.id}`, `rule=${(d.policy as { rule?: string } | undefined)?.rule}`);
    if (j?.ticket) parts.push(`ticket=${j.ticket}`);
    if (j?.changeRecord) parts.push(`change=${j.changeRecord}`);
    if (j?.workload) parts.push(`workload=${j.workload}`);
  }
  if (e.type === 'violation') {
    parts.push((d.reasons as { code: string }[]).map((r) => r.code).join(','));
  }
  if (e.type === 'target.issued')
    parts.push(`ref=${Object.values((d.ref as Record<string, string>) ?? {}).join('/')}`);
  for (const k of DETAIL_KEYS) {
    const v = d[k];
    if (v !== undefined && v !== null && typeof v !== 'object') parts.push(`${k}=${String(v)}`);
  }
  return parts.join(' ');
}

/** Turns a case's audit events into rows: who did what, in which role, when, with the key facts. */
export function timelineRows(events: readonly AuditEvent[]): TimelineRow[] {
  return events.map((e) => ({
    seq: e.seq,
    at: e.at.slice(11, 23),
    event: e.type,
    actor: `${e.actor.id} (${e.actor.kind})`,
    role: e.actingRole ?? '',
    detail: detailOf(e),
  }));
}

/** Renders a case's audit events as a fixed-width text table (for terminals and logs). */
export function formatTimeline(events: readonly AuditEvent[], maxDetail = 70): string {
  const rows = timelineRows(events).map((r) => ({
    ...r,
    detail: r.detail.length > maxDetail ? `${r.detail.slice(0, maxDetail - 1)}…` : r.detail,
  }));
  const cols: (keyof TimelineRow)[] = ['seq', 'at', 'event', 'actor', 'role', 'detail'];
  const width = (c: keyof TimelineRow) => Math.max(c.length, ...rows.map((r) => String(r[c]).length));
  const widths = cols.map(width);
  const line = (vals: string[]) =>
    vals
      .map((v, i) => v.padEnd(widths[i]!))
      .join(' │ ')
      .trimEnd();
  return [
    line(cols),
    widths.map((w) => '─'.repeat(w)).join('─┼─'),
    ...rows.map((r) => line(cols.map((c) => String(r[c])))),
  ].join('\n');
}
