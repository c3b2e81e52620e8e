import {
  CreateUserCommand,
  GetUserCommand,
  ListRolePoliciesCommand,
  PutRolePolicyCommand,
} from '@aws-sdk/client-iam';
import { isGrantlineError } from '@grantline/core';
import { describe, expect, it } from 'vitest';
import {
  awsParamsSchema,
  type AwsParams,
  createAwsExecutor,
  denyDocument,
  deriveNames,
} from '../src/index.js';
import { awsCase, ctxOf } from './support/grants.js';
import { adminClients, createBoundary, createRole, skipWithoutMoto } from './support/moto.js';

const parse = (v: unknown) => awsParamsSchema.parse(v) as AwsParams;

describe.skipIf(skipWithoutMoto())('trying to break it on moto_server', () => {
  it.each([
    ['owned by another case', [{ Key: 'grantline:case', Value: 'someone-elses-case' }]],
    ['created by hand, untagged', []],
  ])('an IAM user of the derived name %s is neither taken over nor deleted', async (_, tags) => {
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
    const executor = createAwsExecutor({ iam, sts });
    const issued = await executor.issue(ctxOf(grant, parse)).catch((e: unknown) => e);
    expect(isGrantlineError(issued) && [issued.code, issued.retryable]).toEqual(['ERR_EXECUTOR', false]);
    const revoked = await executor
      .revoke({ ...ctxOf(grant, parse), trigger: 'rollback', reason: 'x' })
      .catch((e: unknown) => e);
    expect(isGrantlineError(revoked)).toBe(true);
    expect((await iam.send(new GetUserCommand({ UserName: userName }))).User?.UserName).toBe(userName);
  });

  it('garbage collection on a real role removes expired revocation Denies and keeps live ones and foreign policies', async () => {
    const { iam, sts } = adminClients();
    const role = await createRole(iam);
    const now = Math.floor(Date.now() / 1000);
    const expired = `grantline-deny.${now - 10}.gl.old`;
    const live = `grantline-deny.${now + 3600}.gl.live`;
    for (const name of [expired, live]) {
      await iam.send(
        new PutRolePolicyCommand({
          RoleName: role.RoleName!,
          PolicyName: name,
          PolicyDocument: denyDocument(role.RoleId!, name.split('.').slice(2).join('.')),
        }),
      );
    }
    const removed = await createAwsExecutor({ iam, sts }).collectGarbage(role.Arn!);
    expect(removed).toBe(1);
    const left =
      (await iam.send(new ListRolePoliciesCommand({ RoleName: role.RoleName! }))).PolicyNames ?? [];
    expect(left.sort()).toEqual([live, 'workload'].sort());
  });
});
