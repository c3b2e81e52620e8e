import type { Target } from '@grantline/core';
import { z } from 'zod';
import { invalid } from './errors.js';

const roleArn = z
  .string()
  .regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]{1,512}$/, 'expected an IAM role ARN');
const policyArn = z
  .string()
  .regex(
    /^arn:aws[a-z-]*:iam::(\d{12}|aws):policy\/[\w+=,.@/-]{1,512}$/,
    'expected an IAM managed policy ARN',
  );
const iamPath = z
  .string()
  .regex(/^\/([\x21-\x7e]{0,510}\/)?$/, 'an IAM path starts and ends with /')
  .max(512);
const resources = z.array(z.string().min(1).max(2048)).min(1).max(50);
const actions = z
  .array(z.string().regex(/^([a-z0-9-]+:[A-Za-z0-9*?]+|\*)$/, 'expected service:Action'))
  .min(1)
  .max(100);

/** Params of the assumed-role strategy (the default when `strategy` is omitted). */
export const assumedRoleParamsSchema = z.strictObject({
  strategy: z.literal('assumed-role'),
  /** The role the workload assumes. Its trust policy must allow the executor's principal. */
  roleArn,
  /** Actions allowed by the session policy; default: the target's `permissions`, which must cover each. */
  actions: actions.optional(),
  /** Resources of the session policy's Allow (default `*`; the role's own policies still apply). */
  resources: resources.optional(),
  /** Caps `DurationSeconds` below the role's `MaxSessionDuration` (900-43,200). */
  maxSessionDurationSeconds: z.number().int().min(900).max(43_200).optional(),
  /** `ExternalId` required by the role's trust policy, if any. */
  externalId: z
    .string()
    .regex(/^[\w+=,.@:/-]{2,1224}$/)
    .optional(),
});
export type AssumedRoleParams = z.output<typeof assumedRoleParamsSchema>;

/** Params of the IAM-user strategy: one IAM user per case with one access key. */
export const iamUserParamsSchema = z.strictObject({
  strategy: z.literal('iam-user'),
  /** Managed policy set as the user's permissions boundary (required: caps whatever the user gets). */
  permissionsBoundaryArn: policyArn,
  /** IAM path of the users (default `/grantline/`); kept separate so they are easy to audit. */
  path: iamPath.default('/grantline/'),
  /** Actions of the user's inline policy; default: the target's `permissions`, which must cover each. */
  actions: actions.optional(),
  resources: resources.optional(),
});
export type IamUserParams = z.output<typeof iamUserParamsSchema>;

/** Params of the Identity Center strategy: one account assignment of a permission set. */
export const identityCenterParamsSchema = z.strictObject({
  strategy: z.literal('identity-center'),
  instanceArn: z
    .string()
    .regex(
      /^arn:aws[a-z-]*:sso:::instance\/(sso)?ins-[a-zA-Z0-9-.]{16}$/,
      'expected an Identity Center instance ARN',
    ),
  // AWS's format is `permissionSet/ssoins-…/ps-…`; moto_server names them `instance/ssoins-…/ps-…`.
  permissionSetArn: z
    .string()
    .regex(
      /^arn:aws[a-z-]*:sso:::(permissionSet|instance)\/(sso)?ins-[a-zA-Z0-9-.]{16}\/ps-[a-zA-Z0-9-./]{16}$/,
      'expected a permission set ARN',
    ),
  accountId: z.string().regex(/^\d{12}$/, 'expected a 12-digit account id'),
  principalType: z.enum(['USER', 'GROUP']),
  principalId: z
    .string()
    .regex(
      /^([0-9a-f]{10}-|)[A-Fa-f0-9]{8}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{12}$/,
      'expected an Identity Store user or group id',
    ),
  /**
   * Also end live sessions on revoke: adds a Deny for the principal to the permission set's inline
   * policy and re-provisions it (the documented way; deleting the assignment alone leaves them).
   */
  revokeSessions: z.boolean().default(false),
});
export type IdentityCenterParams = z.output<typeof identityCenterParamsSchema>;

/**
 * Target params of the AWS executor, validated per strategy. `strategy` defaults to `assumed-role`.
 */
export const awsParamsSchema = z.preprocess(
  (v) =>
    v && typeof v === 'object' && !Array.isArray(v) && !('strategy' in v)
      ? { ...v, strategy: 'assumed-role' }
      : v,
  z.discriminatedUnion('strategy', [
    assumedRoleParamsSchema,
    iamUserParamsSchema,
    identityCenterParamsSchema,
  ]),
);
export type AwsParams = z.output<typeof awsParamsSchema>;

/**
 * Whether every action matching the IAM action pattern `action` also matches `permission`
 * (IAM wildcards: `*` any run of characters, `?` one; case-insensitive). Why the action's own
 * wildcards are matched as plain characters: only a `*` of the permission can absorb a `*` of the
 * action (it stands for any expansion of it), so `s3:Get*` is covered by `s3:*` but not by
 * `s3:GetObject`, and `*` only by `*`.
 */
export function actionCoveredBy(action: string, permission: string): boolean {
  const a = action.toLowerCase();
  const p = permission.toLowerCase();
  // memo[i][j]: a[i..] is covered by p[j..]
  const memo = new Map<number, boolean>();
  const go = (i: number, j: number): boolean => {
    const k = i * (p.length + 1) + j;
    const hit = memo.get(k);
    if (hit !== undefined) return hit;
    let r: boolean;
    if (j === p.length) r = i === a.length;
    else if (p[j] === '*') r = go(i, j + 1) || (i < a.length && go(i + 1, j));
    else if (i === a.length) r = false;
    else if (p[j] === '?') r = a[i] !== '*' && go(i + 1, j + 1);
    else r = a[i] === p[j] && go(i + 1, j + 1);
    memo.set(k, r);
    return r;
  };
  return go(0, 0);
}

/**
 * The actions a session policy or user policy may allow: `params.actions` when given, else the
 * target's `permissions`. Why the check: the policy engine approves a case by `target.permissions`
 * only, so `params.actions` may narrow what was approved but never widen it; an action that no
 * permission covers (e.g. `*` when the permissions are `s3:Get*`) is refused.
 * @throws GrantlineError `ERR_VALIDATION` when no action is given, or an action is not covered.
 */
export function grantedActions(
  target: Pick<Target, 'permissions'> & { params: { actions?: string[] | undefined } },
  where: string,
  what: string,
): string[] {
  const permissions = target.permissions ?? [];
  const actions = target.params.actions ?? permissions;
  if (actions.length === 0)
    throw invalid(
      where,
      ['target', 'permissions'],
      `${what} needs at least one permitted action (target.permissions or params.actions)`,
    );
  if (target.params.actions) {
    target.params.actions.forEach((action, i) => {
      if (!permissions.some((perm) => actionCoveredBy(action, perm)))
        throw invalid(
          where,
          ['target', 'params', 'actions', i],
          `action ${action} is not covered by the target's permissions (${permissions.join(', ') || 'none'}), which are what the policy approved`,
        );
    });
  }
  return actions;
}
