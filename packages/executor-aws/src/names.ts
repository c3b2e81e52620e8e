import { createHash } from 'node:crypto';
import type { Grant, Target } from '@grantline/core';
import { invalid } from './errors.js';

/**
 * Every AWS name the executor creates is derived from the case id and the target id alone, so that
 * a revoke after a crash (no recorded issuance) finds whatever the interrupted `issue` may have
 * created. The hash suffix keeps names unique when the readable part had to be cut or cleaned.
 */
export interface DerivedNames {
  /** `RoleSessionName` of assumed-role sessions and name of IAM users: `gl.<case>.<target>.<hash>`. */
  principalName: string;
  /** Prefix of the Deny policies attached to a role for early revocation of this session. */
  denyPolicyPrefix: string;
  /** Key for in-process bookkeeping. */
  key: string;
  /** Full SHA-256 (hex) of case id and target id. */
  hash: string;
}

const IAM_NAME_CHARS = /[^\w+=,.@-]/g;

/** Derives the names for one case and target. @throws `ERR_VALIDATION` on an empty case or target id. */
export function deriveNames(
  grant: Pick<Grant, 'id'>,
  target: Pick<Target, 'id'>,
  where: string,
): DerivedNames {
  if (typeof grant.id !== 'string' || grant.id.length === 0)
    throw invalid(where, ['grant', 'id'], 'case id is empty');
  if (typeof target.id !== 'string' || target.id.length === 0)
    throw invalid(where, ['target', 'id'], 'target id is empty');
  const hash = createHash('sha256').update(`${grant.id}\n${target.id}`).digest('hex');
  const clean = (s: string, n: number) => s.replace(IAM_NAME_CHARS, '_').slice(0, n);
  // 3 + 36 + 1 + 12 + 1 + 10 = 63 <= 64, the limit of both RoleSessionName and UserName.
  const principalName = `gl.${clean(grant.id, 36)}.${clean(target.id, 12)}.${hash.slice(0, 10)}`;
  return { principalName, denyPolicyPrefix: 'grantline-deny.', key: `${grant.id}\u0000${target.id}`, hash };
}

/**
 * Name of the per-session Deny policy that versions before the consolidated `grantline-deny` policy
 * wrote; still honoured by verify and removed by garbage collection once expired.
 */
export function denyPolicyName(sessionName: string, untilEpochSeconds: number): string {
  return `grantline-deny.${untilEpochSeconds}.${sessionName}`;
}

/** Parses a name made by {@link denyPolicyName}; null for any other policy. */
export function parseDenyPolicyName(name: string): { until: number; sessionName: string } | null {
  const m = /^grantline-deny\.(\d{9,11})\.(.+)$/.exec(name);
  return m ? { until: Number(m[1]), sessionName: m[2]! } : null;
}

/** The role name of an IAM role ARN (`arn:aws:iam::123456789012:role/path/name` → `name`). */
export function roleNameOf(roleArn: string): string {
  return roleArn.slice(roleArn.lastIndexOf('/') + 1);
}

/** The account id of an ARN. */
export function accountOf(arn: string): string {
  return arn.split(':')[4] ?? '';
}

/** `[\w+=,.@-]{2,64}`, not starting with `aws:`: the rule AWS applies to `SourceIdentity`. */
export function checkSourceIdentity(value: string, where: string): string {
  if (!/^[\w+=,.@-]{2,64}$/.test(value) || value.toLowerCase().startsWith('aws:')) {
    throw invalid(
      where,
      ['grant', 'subject', 'id'],
      `subject id "${value.slice(0, 80)}" is not a valid STS SourceIdentity (2-64 of letters, digits, + = , . @ _ -)`,
    );
  }
  return value;
}

const TAG_CHARS = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$/u;

/** Checks a session or IAM tag against AWS's limits (key 1-128, value 0-256, restricted characters). */
export function checkTag(
  key: string,
  value: string,
  where: string,
  path: (string | number)[],
): { Key: string; Value: string } {
  if (key.length < 1 || key.length > 128 || !TAG_CHARS.test(key))
    throw invalid(where, path, `tag key ${key} is not valid`);
  if (value.length > 256) throw invalid(where, path, `tag ${key}: value longer than 256 characters`);
  if (!TAG_CHARS.test(value))
    throw invalid(
      where,
      path,
      `tag ${key}: value has characters AWS does not allow in tags (letters, digits, spaces and _ . : / = + - @ only)`,
    );
  return { Key: key, Value: value };
}
