import { isIP } from 'node:net';
import { type CloudTrailClient, LookupEventsCommand } from '@aws-sdk/client-cloudtrail';
import type { Grant, Grantline, UsageRecord } from '@grantline/core';
import { PROBE_USER_AGENT } from './deps.js';
import { toExecutorError } from './errors.js';

/** The fields of a CloudTrail record that attribution reads (the full record may carry more). */
export interface CloudTrailRecord {
  eventID?: string;
  eventTime: string;
  eventSource: string;
  eventName: string;
  sourceIPAddress?: string;
  userAgent?: string;
  errorCode?: string;
  errorMessage?: string;
  userIdentity?: {
    type?: string;
    principalId?: string;
    arn?: string;
    accessKeyId?: string;
    userName?: string;
    sessionContext?: { sourceIdentity?: string; sessionIssuer?: { arn?: string; principalId?: string } };
  };
  resources?: { ARN?: string; type?: string }[];
}

/** Calls a probe makes; only these, with the probe user agent, are excluded from usage. */
const PROBE_EVENTS = new Set(['GetRole', 'GetCallerIdentity']);

/**
 * True for the executor's own verification probes: the `grantline-probe/<case>` user agent on one
 * of the two harmless calls a probe makes. Why both conditions: a user agent is chosen by the
 * caller, so a workload that sets it on any other call is still counted (and flagged).
 */
export function isProbeRecord(r: CloudTrailRecord): boolean {
  return (r.userAgent ?? '').includes(`${PROBE_USER_AGENT}/`) && PROBE_EVENTS.has(r.eventName);
}

const DENIED_CODES = /AccessDenied|UnauthorizedOperation|Unauthorized|Forbidden/i;

/**
 * Turns one CloudTrail record into a usage record: who (the ARN), from where, which action
 * (`service:EventName`), and the outcome. Returns null when the record has no IP source (calls made
 * by AWS services on the principal's behalf name the service, e.g. `ec2.amazonaws.com`).
 */
export function usageFromCloudTrail(r: CloudTrailRecord): UsageRecord | null {
  const ip = r.sourceIPAddress ?? '';
  if (isIP(ip) === 0) return null;
  const service = r.eventSource.split('.')[0] ?? r.eventSource;
  const resource = r.resources?.find((x) => x.ARN)?.ARN;
  const spoofedProbe = (r.userAgent ?? '').includes(`${PROBE_USER_AGENT}/`) && !PROBE_EVENTS.has(r.eventName);
  return {
    at: new Date(r.eventTime),
    sourceIp: ip,
    action: `${service}:${r.eventName}`,
    ...(resource ? { resource } : {}),
    outcome: r.errorCode ? (DENIED_CODES.test(r.errorCode) ? 'denied' : 'error') : 'allowed',
    ...(r.userIdentity?.arn ? { actorId: r.userIdentity.arn } : {}),
    detail: {
      ...(r.eventID ? { eventId: r.eventID } : {}),
      eventSource: r.eventSource,
      ...(r.userAgent ? { userAgent: r.userAgent.slice(0, 256) } : {}),
      ...(r.errorCode ? { errorCode: r.errorCode } : {}),
      ...(r.userIdentity?.accessKeyId ? { accessKeyId: r.userIdentity.accessKeyId } : {}),
      ...(r.userIdentity?.principalId ? { principalId: r.userIdentity.principalId } : {}),
      ...(r.userIdentity?.sessionContext?.sourceIdentity
        ? { sourceIdentity: r.userIdentity.sessionContext.sourceIdentity }
        : {}),
      ...(spoofedProbe ? { probeUserAgentOnOtherCall: true } : {}),
    },
  };
}

/** A record matched to a case and target. */
export interface AttributedUsage {
  caseId: string;
  targetId: string;
  usage: UsageRecord;
  /** What matched: the access key id, or the role session's `roleId:sessionName`, or the IAM user. */
  matchedBy: 'accessKeyId' | 'roleSession' | 'iamUser';
}

/** Why a record was not attributed. */
export interface SkippedRecord {
  eventId?: string;
  reason: 'probe' | 'no-ip-source' | 'no-matching-case' | 'already-recorded';
}

/**
 * Attributes CloudTrail records to cases **by identifier**, never by time window: the access key id
 * of the issued credential, the role session (`aws:userid` = role id + derived session name), or the
 * per-case IAM user name. Probe records are excluded. Usable with records from `LookupEvents` or
 * handed in from a trail (S3, EventBridge, a SIEM).
 */
export function attributeRecords(
  records: readonly CloudTrailRecord[],
  grants: readonly Grant[],
): { attributed: AttributedUsage[]; skipped: SkippedRecord[] } {
  const byKey = new Map<string, { caseId: string; targetId: string }>();
  const bySession = new Map<string, { caseId: string; targetId: string }>();
  const byUser = new Map<string, { caseId: string; targetId: string }>();
  for (const g of grants) {
    for (const t of g.targets) {
      const ref = t.issuance?.ref;
      if (!ref) continue;
      const at = { caseId: g.id, targetId: t.id };
      if (ref.accessKeyId) byKey.set(ref.accessKeyId, at);
      if (ref.roleId && ref.sessionName) bySession.set(`${ref.roleId}:${ref.sessionName}`, at);
      if (ref.strategy === 'iam-user' && ref.userName) byUser.set(ref.userName, at);
    }
  }
  const attributed: AttributedUsage[] = [];
  const skipped: SkippedRecord[] = [];
  const seen = new Set<string>();
  for (const r of records) {
    if (r.eventID) {
      if (seen.has(r.eventID)) continue;
      seen.add(r.eventID);
    }
    const id = r.eventID ? { eventId: r.eventID } : {};
    if (isProbeRecord(r)) {
      skipped.push({ ...id, reason: 'probe' });
      continue;
    }
    const u = r.userIdentity;
    let match: { caseId: string; targetId: string } | undefined;
    let matchedBy: AttributedUsage['matchedBy'] = 'accessKeyId';
    if (u?.accessKeyId && byKey.has(u.accessKeyId)) match = byKey.get(u.accessKeyId);
    else if (u?.type === 'AssumedRole' && u.principalId && bySession.has(u.principalId)) {
      match = bySession.get(u.principalId);
      matchedBy = 'roleSession';
    } else if (u?.type === 'IAMUser' && u.userName && byUser.has(u.userName)) {
      match = byUser.get(u.userName);
      matchedBy = 'iamUser';
    }
    if (!match) {
      skipped.push({ ...id, reason: 'no-matching-case' });
      continue;
    }
    const usage = usageFromCloudTrail(r);
    if (!usage) {
      skipped.push({ ...id, reason: 'no-ip-source' });
      continue;
    }
    attributed.push({ ...match, usage, matchedBy });
  }
  return { attributed, skipped };
}

/**
 * Reads CloudTrail management events for one access key with `LookupEvents` (paginated), oldest
 * first. CloudTrail delivers events to `LookupEvents` within minutes, not instantly.
 */
export async function lookupEventsByAccessKey(
  cloudtrail: CloudTrailClient,
  accessKeyId: string,
  since: Date,
  until?: Date,
): Promise<CloudTrailRecord[]> {
  const out: CloudTrailRecord[] = [];
  let token: string | undefined;
  try {
    do {
      const page = await cloudtrail.send(
        new LookupEventsCommand({
          LookupAttributes: [{ AttributeKey: 'AccessKeyId', AttributeValue: accessKeyId }],
          StartTime: since,
          ...(until ? { EndTime: until } : {}),
          ...(token ? { NextToken: token } : {}),
        }),
      );
      for (const e of page.Events ?? []) {
        if (!e.CloudTrailEvent) continue;
        try {
          out.push(JSON.parse(e.CloudTrailEvent) as CloudTrailRecord);
        } catch {
          // A record CloudTrail could not serialise is skipped rather than failing the whole pull.
        }
      }
      token = page.NextToken;
    } while (token);
  } catch (err) {
    throw toExecutorError(err, 'cloudtrail:LookupEvents');
  }
  return out.sort((a, b) => Date.parse(a.eventTime) - Date.parse(b.eventTime));
}

/** Summary of {@link feedUsage}. */
export interface FeedResult {
  recorded: number;
  skipped: SkippedRecord[];
  /** Cases whose state changed to `revoking` (or beyond) because of a violation. */
  revoked: string[];
}

/**
 * Attributes `records` to the given cases and records each use with the service's `recordUsage`
 * (source `cloudtrail`), so usage outside the rule's constraints revokes the case with trigger
 * `violation`. Records of other principals, probes and records without an IP source are skipped.
 * Idempotent per CloudTrail event: an `eventID` already recorded on the case (read from the case's
 * history) is skipped with reason `already-recorded`, so overlapping pulls count each use once.
 */
export async function feedUsage(
  service: Pick<Grantline, 'recordUsage' | 'history'>,
  records: readonly CloudTrailRecord[],
  grants: readonly Grant[],
): Promise<FeedResult> {
  const { attributed, skipped } = attributeRecords(records, grants);
  const revoked = new Set<string>();
  const recordedIds = new Map<string, Set<string>>();
  const alreadyRecorded = async (caseId: string) => {
    let ids = recordedIds.get(caseId);
    if (!ids) {
      ids = new Set(
        (await service.history(caseId)).flatMap((e) => {
          const id =
            e.type === 'usage' ? (e.data.detail as { eventId?: unknown } | undefined)?.eventId : undefined;
          return typeof id === 'string' ? [id] : [];
        }),
      );
      recordedIds.set(caseId, ids);
    }
    return ids;
  };
  let recorded = 0;
  for (const a of attributed) {
    const eventId = a.usage.detail?.eventId;
    if (typeof eventId === 'string' && (await alreadyRecorded(a.caseId)).has(eventId)) {
      skipped.push({ eventId, reason: 'already-recorded' });
      continue;
    }
    const before = grants.find((g) => g.id === a.caseId)?.state;
    const g = await service.recordUsage(a.caseId, {
      targetId: a.targetId,
      sourceIp: a.usage.sourceIp,
      action: a.usage.action,
      ...(a.usage.resource ? { resource: a.usage.resource } : {}),
      at: a.usage.at,
      outcome: a.usage.outcome ?? 'allowed',
      source: 'cloudtrail',
      ...(a.usage.actorId ? { actor: { id: a.usage.actorId.slice(0, 256), kind: 'workload' as const } } : {}),
      detail: { ...a.usage.detail, matchedBy: a.matchedBy },
    });
    recorded++;
    if (before === 'issued' && g.state !== 'issued') revoked.add(a.caseId);
  }
  return { recorded, skipped, revoked: [...revoked] };
}

/**
 * Pulls CloudTrail events for every AWS access key issued to `grants` (`LookupEvents` by access
 * key id since `since`) and feeds them to the service with {@link feedUsage}. Run it on a schedule;
 * overlapping windows are fine (each event is recorded once).
 */
export async function syncCloudTrailUsage(
  service: Pick<Grantline, 'recordUsage' | 'history'>,
  cloudtrail: CloudTrailClient,
  grants: readonly Grant[],
  since: Date,
): Promise<FeedResult> {
  const keys = new Set(
    grants.flatMap((g) =>
      g.targets.flatMap((t) => (t.issuance?.ref.accessKeyId ? [t.issuance.ref.accessKeyId] : [])),
    ),
  );
  const records: CloudTrailRecord[] = [];
  for (const key of keys) records.push(...(await lookupEventsByAccessKey(cloudtrail, key, since)));
  return feedUsage(service, records, grants);
}
