import {
  type AccessKey,
  CreateAccessKeyCommand,
  CreateUserCommand,
  DeleteAccessKeyCommand,
  DeleteLoginProfileCommand,
  DeleteUserCommand,
  DeleteUserPolicyCommand,
  DetachUserPolicyCommand,
  GetUserCommand,
  ListAccessKeysCommand,
  ListAttachedUserPoliciesCommand,
  ListGroupsForUserCommand,
  ListUserPoliciesCommand,
  PutUserPolicyCommand,
  RemoveUserFromGroupCommand,
  type User,
} from '@aws-sdk/client-iam';
import { GetCallerIdentityCommand } from '@aws-sdk/client-sts';
import type {
  ExecutorContext,
  IssueResult,
  RevokeContext,
  RevokeResult,
  VerifyResult,
} from '@grantline/core';
import type { StrategyDeps } from './deps.js';
import { isNotFound, toExecutorError } from './errors.js';
import { checkTag, deriveNames } from './names.js';
import { grantedActions, type IamUserParams } from './params.js';
import { type ProbeRun, probeUntilRejected } from './probe.js';

type Ctx = ExecutorContext<IamUserParams>;
type RCtx = RevokeContext<IamUserParams>;

/** Name of the inline policy carrying the grant. */
export const USER_POLICY_NAME = 'grantline-grant';
/** A secret that is certainly wrong: the key probe needs none (see verify). */
const WRONG_SECRET = 'grantline-probe-wrong-secret-000000000000';

/** IAM user access keys: one user per case and target under a dedicated path, with a permissions boundary. */
export function createIamUserStrategy(deps: StrategyDeps) {
  const getUser = async (userName: string): Promise<User | null> => {
    try {
      return (await deps.iam.send(new GetUserCommand({ UserName: userName }))).User ?? null;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw toExecutorError(err, 'iam:GetUser', [], { userName });
    }
  };

  /** The case a user of the derived name belongs to, from the tag set atomically by CreateUser. */
  const ownerOf = (user: User): string | undefined =>
    user.Tags?.find((t) => t.Key === 'grantline:case')?.Value;

  /** Refuses to touch a user of that name that Grantline did not create for this very case. */
  const assertOurs = (user: User, caseId: string, where: string) => {
    // Our users carry the case tag from CreateUser on (tags are set atomically with the user).
    if (ownerOf(user) !== caseId) {
      throw toExecutorError(
        Object.assign(new Error(`IAM user ${user.UserName} belongs to another case`), {
          name: 'EntityAlreadyExists',
        }),
        where,
      );
    }
  };

  /** Whether the access key recorded for this case is one of `userName`'s keys. */
  const holdsKey = async (userName: string, accessKeyId: string | undefined): Promise<boolean> => {
    if (!accessKeyId) return false;
    const keys = await step(
      'iam:ListAccessKeys',
      () => deps.iam.send(new ListAccessKeysCommand({ UserName: userName })),
      userName,
    );
    return (keys?.AccessKeyMetadata ?? []).some((k) => k.AccessKeyId === accessKeyId);
  };

  const step = async <T>(
    operation: string,
    fn: () => Promise<T>,
    userName: string,
  ): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (err) {
      // Already gone is what we want: tolerate it at every step of the teardown.
      if (isNotFound(err)) return undefined;
      throw toExecutorError(err, operation, [], { userName });
    }
  };

  const userPolicy = (ctx: Ctx, where: string) => {
    const actions = grantedActions(ctx.target, where, 'an IAM user');
    const cidrs = ctx.grant.policy.constraints?.sourceCidrs ?? [];
    return JSON.stringify({
      Version: '2012-10-17',
      Statement: [
        {
          Sid: 'Grant',
          Effect: 'Allow',
          Action: actions,
          Resource: ctx.target.params.resources ?? '*',
          ...(cidrs.length > 0 ? { Condition: { IpAddress: { 'aws:SourceIp': cidrs } } } : {}),
        },
      ],
    });
  };

  async function issue(ctx: Ctx): Promise<IssueResult> {
    const where = 'aws iam-user issue';
    const names = deriveNames(ctx.grant, ctx.target, where);
    const userName = names.principalName;
    const policy = userPolicy(ctx, where);
    const tags = [
      checkTag('grantline:case', ctx.grant.id, where, ['grant', 'id']),
      checkTag('grantline:target', ctx.target.id, where, ['target', 'id']),
      checkTag('grantline:subject', ctx.grant.subject.id, where, ['grant', 'subject', 'id']),
      ...(ctx.grant.justification.ticket
        ? [
            checkTag('grantline:ticket', ctx.grant.justification.ticket, where, [
              'grant',
              'justification',
              'ticket',
            ]),
          ]
        : []),
    ];
    const end = ctx.grant.window.expiresAt
      ? new Date(ctx.grant.window.expiresAt)
      : new Date(ctx.now.getTime() + ctx.grant.window.durationSeconds * 1000);
    // Order: user (with boundary) → policy → key. The core recorded `issuing` before this call and the
    // user name is derived from case and target, so a crash at any point leaves nothing revoke
    // cannot find.
    let user = await getUser(userName);
    if (user) assertOurs(user, ctx.grant.id, 'iam:CreateUser');
    else {
      try {
        user =
          (
            await deps.iam.send(
              new CreateUserCommand({
                UserName: userName,
                Path: ctx.target.params.path,
                PermissionsBoundary: ctx.target.params.permissionsBoundaryArn,
                Tags: tags,
              }),
            )
          ).User ?? null;
      } catch (err) {
        throw toExecutorError(err, 'iam:CreateUser', [], { userName });
      }
    }
    try {
      await deps.iam.send(
        new PutUserPolicyCommand({
          UserName: userName,
          PolicyName: USER_POLICY_NAME,
          PolicyDocument: policy,
        }),
      );
    } catch (err) {
      throw toExecutorError(err, 'iam:PutUserPolicy', [], { userName });
    }
    // Idempotent issue replaces: any key left by an earlier issue of this case is deleted first, so
    // at most one live key exists per case and target.
    const old = await step(
      'iam:ListAccessKeys',
      () => deps.iam.send(new ListAccessKeysCommand({ UserName: userName })),
      userName,
    );
    for (const k of old?.AccessKeyMetadata ?? []) {
      if (k.AccessKeyId)
        await step(
          'iam:DeleteAccessKey',
          () => deps.iam.send(new DeleteAccessKeyCommand({ UserName: userName, AccessKeyId: k.AccessKeyId })),
          userName,
        );
    }
    let key: AccessKey | undefined;
    try {
      key = (await deps.iam.send(new CreateAccessKeyCommand({ UserName: userName }))).AccessKey;
    } catch (err) {
      throw toExecutorError(err, 'iam:CreateAccessKey', [], { userName });
    }
    if (!key?.AccessKeyId || !key.SecretAccessKey)
      throw toExecutorError(
        Object.assign(new Error('no access key returned'), { name: 'InternalFailure' }),
        'iam:CreateAccessKey',
      );
    return {
      ref: {
        strategy: 'iam-user',
        userName,
        userArn: user?.Arn ?? '',
        path: ctx.target.params.path,
        accessKeyId: key.AccessKeyId,
        permissionsBoundaryArn: ctx.target.params.permissionsBoundaryArn,
      },
      // An access key never expires by itself: the sweeper revokes it at the end of the window.
      expiresAt: end,
      secret: { secretAccessKey: key.SecretAccessKey },
    };
  }

  async function revoke(ctx: RCtx): Promise<RevokeResult> {
    const where = 'aws iam-user revoke';
    const userName = deriveNames(ctx.grant, ctx.target, where).principalName;
    const user = await getUser(userName);
    if (!user) return { alreadyGone: true, detail: { method: 'iam-user-delete', userName } };
    // A user of the derived name that is not tagged for this case was never ours (a name collision:
    // issue refused it). Nothing of this case exists there, so the revocation is done, and that user
    // is left exactly as it is. Exception: it holds the key recorded for this case, so it is ours
    // and its tag was changed afterwards; then it is torn down like any of ours.
    if (ownerOf(user) !== ctx.grant.id && !(await holdsKey(userName, ctx.issuance?.ref.accessKeyId))) {
      return {
        alreadyGone: true,
        detail: { method: 'iam-user-foreign', userName, owner: ownerOf(user) ?? 'untagged' },
      };
    }
    const removed: Record<string, string[]> = {
      accessKeys: [],
      inlinePolicies: [],
      attachedPolicies: [],
      groups: [],
    };
    // Keys first: they are the credential; the rest must go before IAM lets the user be deleted.
    const keys = await step(
      'iam:ListAccessKeys',
      () => deps.iam.send(new ListAccessKeysCommand({ UserName: userName })),
      userName,
    );
    for (const k of keys?.AccessKeyMetadata ?? []) {
      if (!k.AccessKeyId) continue;
      await step(
        'iam:DeleteAccessKey',
        () => deps.iam.send(new DeleteAccessKeyCommand({ UserName: userName, AccessKeyId: k.AccessKeyId })),
        userName,
      );
      removed.accessKeys!.push(k.AccessKeyId);
    }
    const inline = await step(
      'iam:ListUserPolicies',
      () => deps.iam.send(new ListUserPoliciesCommand({ UserName: userName })),
      userName,
    );
    for (const p of inline?.PolicyNames ?? []) {
      await step(
        'iam:DeleteUserPolicy',
        () => deps.iam.send(new DeleteUserPolicyCommand({ UserName: userName, PolicyName: p })),
        userName,
      );
      removed.inlinePolicies!.push(p);
    }
    const attached = await step(
      'iam:ListAttachedUserPolicies',
      () => deps.iam.send(new ListAttachedUserPoliciesCommand({ UserName: userName })),
      userName,
    );
    for (const p of attached?.AttachedPolicies ?? []) {
      if (!p.PolicyArn) continue;
      await step(
        'iam:DetachUserPolicy',
        () => deps.iam.send(new DetachUserPolicyCommand({ UserName: userName, PolicyArn: p.PolicyArn })),
        userName,
      );
      removed.attachedPolicies!.push(p.PolicyArn);
    }
    const groups = await step(
      'iam:ListGroupsForUser',
      () => deps.iam.send(new ListGroupsForUserCommand({ UserName: userName })),
      userName,
    );
    for (const g of groups?.Groups ?? []) {
      if (!g.GroupName) continue;
      await step(
        'iam:RemoveUserFromGroup',
        () => deps.iam.send(new RemoveUserFromGroupCommand({ UserName: userName, GroupName: g.GroupName })),
        userName,
      );
      removed.groups!.push(g.GroupName);
    }
    await step(
      'iam:DeleteLoginProfile',
      () => deps.iam.send(new DeleteLoginProfileCommand({ UserName: userName })),
      userName,
    );
    await step(
      'iam:DeleteUser',
      () => deps.iam.send(new DeleteUserCommand({ UserName: userName })),
      userName,
    );
    return { alreadyGone: false, detail: { method: 'iam-user-delete', userName, removed } };
  }

  async function verify(ctx: RCtx): Promise<VerifyResult> {
    const where = 'aws iam-user verify';
    const userName = deriveNames(ctx.grant, ctx.target, where).principalName;
    const user = await getUser(userName);
    const accessKeyId = ctx.issuance?.ref.accessKeyId;
    if (user && ownerOf(user) === ctx.grant.id)
      return {
        status: 'present',
        method: 'iam-state+key-probe',
        observation: { userName, user: 'exists', checkedAt: ctx.now.toISOString() },
      };
    // A user of that name tagged for another case (or untagged) is not this case's access; with a
    // recorded key the probe below still has the last word, so a re-tagged user of ours with a live
    // key is reported present.
    const state = user ? `belongs to ${ownerOf(user) ?? 'no case (untagged)'}` : 'NoSuchEntity';
    if (!accessKeyId) {
      // No key id recorded: an access key cannot outlive its user, so the absence of a user of this
      // case is the evidence.
      return {
        status: 'absent',
        method: 'iam-state',
        observation: { userName, user: state, checkedAt: ctx.now.toISOString() },
      };
    }
    // Why a wrong secret: AWS looks the access key id up before it checks the signature, so a
    // deleted key answers InvalidClientTokenId and a live one SignatureDoesNotMatch. The probe needs
    // no secret at all, and proves the key itself is unknown to AWS, not merely denied.
    const clients = deps.probeClients({ accessKeyId, secretAccessKey: WRONG_SECRET }, ctx.grant.id);
    let run: ProbeRun;
    try {
      run = await probeUntilRejected(
        () => clients.sts.send(new GetCallerIdentityCommand({})),
        (o) => o.outcome === 'invalid-credentials',
        deps.probe,
        () => new Date(),
        deps.sleep,
      );
    } catch (err) {
      throw toExecutorError(err, 'probe sts:GetCallerIdentity');
    }
    const observation = {
      userName,
      user: state,
      accessKeyId,
      probe: 'sts:GetCallerIdentity with a wrong secret',
      probes: run.observations,
    };
    return run.rejected
      ? {
          status: 'absent',
          method: 'iam-state+key-probe',
          observation: { ...observation, consecutiveRejections: deps.probe.consecutiveRejections },
        }
      : { status: 'present', method: 'iam-state+key-probe', observation };
  }

  return { issue, revoke, verify };
}
