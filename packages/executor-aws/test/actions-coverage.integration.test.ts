import { GetUserCommand } from '@aws-sdk/client-iam';
import { isGrantlineError } from '@grantline/core';
import { describe, expect, it } from 'vitest';
import { type AwsParams, awsParamsSchema, createAwsExecutor, deriveNames } from '../src/index.js';
import { awsCase, ctxOf } from './support/grants.js';
import { adminClients, createBoundary, createRole, skipWithoutMoto } from './support/moto.js';

const parse = (v: unknown) => awsParamsSchema.parse(v) as AwsParams;
const fast = { consecutiveRejections: 3, backoffMs: 20, maxBackoffMs: 80 };

describe.skipIf(skipWithoutMoto())('params.actions beyond the approved permissions on moto_server', () => {
  it('assumed-role: actions [*] over permissions [iam:ListRoles] is refused (ERR_VALIDATION) before any session is assumed; covered actions are issued', async () => {
    const { iam, sts } = adminClients();
    const role = await createRole(iam);
    const executor = createAwsExecutor({ iam, sts, probe: fast });
    const wide = awsCase({
      id: 'deploy',
      resource: role.Arn!,
      permissions: ['iam:ListRoles'],
      params: { roleArn: role.Arn!, actions: ['*'] },
    });
    const err = await executor.issue(ctxOf(wide, parse)).catch((e: unknown) => e);
    expect(isGrantlineError(err) && err.code).toBe('ERR_VALIDATION');
    expect((err as { details: { issues: { path: unknown[] }[] } }).details.issues[0]!.path).toEqual([
      'target',
      'params',
      'actions',
      0,
    ]);
    const narrow = awsCase({
      id: 'deploy',
      resource: role.Arn!,
      permissions: ['iam:List*'],
      params: { roleArn: role.Arn!, actions: ['iam:ListRoles', 'iam:ListRoleTags'] },
    });
    const res = await executor.issue(ctxOf(narrow, parse));
    expect(res.ref.sessionName).toBe(deriveNames(narrow, narrow.targets[0]!, 't').principalName);
  });

  it('iam-user: actions [iam:*] over permissions [iam:ListRoles] is refused (ERR_VALIDATION) and no user is created', async () => {
    const { iam, sts } = adminClients();
    const boundary = await createBoundary(iam);
    const executor = createAwsExecutor({ iam, sts, probe: fast });
    const grant = awsCase({
      id: 'legacy',
      resource: 'iam-user',
      permissions: ['iam:ListRoles'],
      params: { strategy: 'iam-user', permissionsBoundaryArn: boundary, actions: ['iam:*'] },
    });
    const err = await executor.issue(ctxOf(grant, parse)).catch((e: unknown) => e);
    expect(isGrantlineError(err) && err.code).toBe('ERR_VALIDATION');
    const userName = deriveNames(grant, grant.targets[0]!, 't').principalName;
    const found = await iam.send(new GetUserCommand({ UserName: userName })).catch((e: Error) => e.name);
    expect(found).toBe('NoSuchEntityException');
  });
});
