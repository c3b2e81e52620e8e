import {
  CreateAccessKeyCommand,
  CreateUserCommand,
  GetRolePolicyCommand,
  GetUserCommand,
  ListAccessKeysCommand,
  ListRolePoliciesCommand,
  ListUserPoliciesCommand,
  PutRolePolicyCommand,
  PutUserPolicyCommand,
  TagUserCommand,
} from '@aws-sdk/client-iam';
import { isGrantlineError } from '@grantline/core';
import { describe, expect, it } from 'vitest';
import {
  awsParamsSchema,
  type AwsParams,
  createAwsExecutor,
  DENY_POLICY_NAME,
  denyDocument,
  deriveNames,
  parseDenyDocument,
} from '../src/index.js';
import { awsCase, ctxOf } from './support/grants.js';
import { adminClients, canListRoles, createBoundary, createRole, skipWithoutMoto } from './support/moto.js';
import { alice, bob, deployBot, service } from './support/service.js';

const parse = (v: unknown) => awsParamsSchema.parse(v) as AwsParams;
const fast = { consecutiveRejections: 3, backoffMs: 20, maxBackoffMs: 80 };

describe.skipIf(skipWithoutMoto())('trying to break it on moto_server', () => {
  it.each([
    ['owned by another case', [{ Key: 'grantline:case', Value: 'someone-elses-case' }]],
    ['created by hand, untagged', []],
  ])(
    'an IAM user of the derived name %s is neither taken over nor touched; the rollback finishes as alreadyGone and verify says absent',
    async (_, tags) => {
      const { iam, sts } = adminClients();
      const boundary = await createBoundary(iam);
      const grant = awsCase({
        id: 'legacy',
        resource: 'iam-user',
        permissions: ['iam:ListRoles'],
        params: { strategy: 'iam-user', permissionsBoundaryArn: boundary },
      });
      const userName = deriveNames(grant, grant.targets[0]!, 't').principalName;
      await iam.send(new CreateUserCommand({ UserName: userName, Path: '/grantline/', Tags: tags }));
      const theirs = (await iam.send(new CreateAccessKeyCommand({ UserName: userName }))).AccessKey!;
      await iam.send(
        new PutUserPolicyCommand({
          UserName: userName,
          PolicyName: 'theirs',
          PolicyDocument: JSON.stringify({
            Version: '2012-10-17',
            Statement: [{ Effect: 'Allow', Action: 'iam:ListRoles', Resource: '*' }],
          }),
        }),
      );
      const executor = createAwsExecutor({ iam, sts, probe: fast });
      const issued = await executor.issue(ctxOf(grant, parse)).catch((e: unknown) => e);
      expect(isGrantlineError(issued) && [issued.code, issued.retryable]).toEqual(['ERR_EXECUTOR', false]);
      const rc = { ...ctxOf(grant, parse), trigger: 'rollback', reason: 'issuance failed' };
      // Twice: a retried rollback must give the same answer.
      for (let i = 0; i < 2; i++) {
        expect(await executor.revoke(rc)).toMatchObject({
          alreadyGone: true,
          detail: { method: 'iam-user-foreign', userName },
        });
      }
      expect(await executor.verify(rc)).toMatchObject({ status: 'absent', method: 'iam-state' });
      // The other owner's user, key and policy are exactly as they were.
      const user = (await iam.send(new GetUserCommand({ UserName: userName }))).User!;
      expect(user.UserName).toBe(userName);
      const keys = (await iam.send(new ListAccessKeysCommand({ UserName: userName }))).AccessKeyMetadata;
      expect(keys?.map((k) => k.AccessKeyId)).toEqual([theirs.AccessKeyId]);
      expect((await iam.send(new ListUserPoliciesCommand({ UserName: userName }))).PolicyNames).toEqual([
        'theirs',
      ]);
    },
  );

  it('through the service: a name collision ends the case as failed (rolled back), not stuck in revoking flagged exposed', async () => {
    const { iam, sts } = adminClients();
    const boundary = await createBoundary(iam);
    const gl = service([createAwsExecutor({ iam, sts, probe: fast })]);
    const target = {
      id: 'legacy',
      system: 'aws',
      resource: 'iam-user',
      permissions: ['iam:ListRoles'],
      params: { strategy: 'iam-user', permissionsBoundaryArn: boundary },
    };
    const c = await gl.request({
      requester: alice,
      subject: deployBot,
      justification: { reason: 'collision', ticket: 'OPS-80' },
      targets: [target],
      durationSeconds: 900,
    });
    const userName = deriveNames(c, c.targets[0]!, 't').principalName;
    await iam.send(
      new CreateUserCommand({
        UserName: userName,
        Path: '/grantline/',
        Tags: [{ Key: 'grantline:case', Value: 'someone-elses-case' }],
      }),
    );
    await gl.approve(c.id, { approver: bob });
    await gl.issue(c.id).catch(() => undefined);
    const after = await gl.get(c.id);
    expect(after.state).toBe('failed');
    expect(after.revocation?.exposed).toBeUndefined();
    expect(after.targets[0]!.revocation).toMatchObject({ alreadyGone: true });
    expect(after.targets[0]!.verification).toMatchObject({ result: 'absent', method: 'iam-state' });
    expect((await iam.send(new GetUserCommand({ UserName: userName }))).User?.UserName).toBe(userName);
  });

  it('re-tagging a user of ours to another case does not make its live key look revoked', async () => {
    const { iam, sts } = adminClients();
    const boundary = await createBoundary(iam);
    const grant = awsCase({
      id: 'legacy',
      resource: 'iam-user',
      permissions: ['iam:ListRoles'],
      params: { strategy: 'iam-user', permissionsBoundaryArn: boundary },
    });
    const executor = createAwsExecutor({ iam, sts, probe: fast });
    const res = await executor.issue(ctxOf(grant, parse));
    const creds = { accessKeyId: res.ref.accessKeyId!, secretAccessKey: res.secret!.secretAccessKey! };
    await iam.send(
      new TagUserCommand({
        UserName: res.ref.userName!,
        Tags: [{ Key: 'grantline:case', Value: 'someone-elses-case' }],
      }),
    );
    const rc = {
      ...ctxOf(grant, parse),
      issuance: { ref: res.ref, issuedAt: grant.window.issuedAt!, expiresAt: grant.window.expiresAt! },
      trigger: 'manual',
      reason: 'x',
    };
    // Before revoke: the recorded key still works, so verify must not call it absent.
    expect((await executor.verify(rc)).status).toBe('present');
    // The user holds this case's recorded key, so it is ours whatever its tag says: torn down.
    expect(await executor.revoke(rc)).toMatchObject({
      alreadyGone: false,
      detail: { method: 'iam-user-delete' },
    });
    expect(await canListRoles(creds)).toBe(false);
    expect(await executor.verify(rc)).toMatchObject({ status: 'absent' });
  });

  it('garbage collection on a real role removes expired revocation Denies and keeps live ones and foreign policies', async () => {
    const { iam, sts } = adminClients();
    const role = await createRole(iam);
    const now = Math.floor(Date.now() / 1000);
    // Per-session policies of earlier versions, and the one Deny policy of this version.
    const expired = `grantline-deny.${now - 10}.gl.old`;
    const live = `grantline-deny.${now + 3600}.gl.live`;
    const legacy = (session: string) =>
      JSON.stringify({
        Version: '2012-10-17',
        Statement: [
          {
            Effect: 'Deny',
            Action: '*',
            Resource: '*',
            Condition: { StringEquals: { 'aws:userid': `${role.RoleId!}:${session}` } },
          },
        ],
      });
    const policies: Record<string, string> = {
      [expired]: legacy('gl.old'),
      [live]: legacy('gl.live'),
      [DENY_POLICY_NAME]: denyDocument([
        { userId: `${role.RoleId!}:gl.gone`, until: now - 10 },
        { userId: `${role.RoleId!}:gl.kept`, until: now + 3600 },
      ]),
    };
    for (const [name, doc] of Object.entries(policies)) {
      await iam.send(
        new PutRolePolicyCommand({ RoleName: role.RoleName!, PolicyName: name, PolicyDocument: doc }),
      );
    }
    const removed = await createAwsExecutor({ iam, sts }).collectGarbage(role.Arn!);
    expect(removed).toBe(2);
    const left =
      (await iam.send(new ListRolePoliciesCommand({ RoleName: role.RoleName! }))).PolicyNames ?? [];
    expect(left.sort()).toEqual([DENY_POLICY_NAME, live, 'workload'].sort());
    const doc = (
      await iam.send(new GetRolePolicyCommand({ RoleName: role.RoleName!, PolicyName: DENY_POLICY_NAME }))
    ).PolicyDocument;
    expect(parseDenyDocument(doc)).toEqual([{ userId: `${role.RoleId!}:gl.kept`, until: now + 3600 }]);
  });
});
