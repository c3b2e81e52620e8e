import { IAMClient } from '@aws-sdk/client-iam';
import { STSClient } from '@aws-sdk/client-sts';
import { isGrantlineError } from '@grantline/core';
import { describe, expect, it } from 'vitest';
import { awsParamsSchema, createAwsExecutor } from '../src/index.js';
import { actionCoveredBy } from '../src/params.js';
import { alice, deployBot, service } from './support/service.js';

const roleArn = 'arn:aws:iam::123456789012:role/deploy';
// Clients that are never called: request-time validation happens before any executor call.
const executor = createAwsExecutor({
  sts: new STSClient({ region: 'us-east-1' }),
  iam: new IAMClient({ region: 'us-east-1' }),
});

describe('target params, validated per strategy', () => {
  it('defaults to assumed-role and keeps what each strategy needs', () => {
    expect(awsParamsSchema.parse({ roleArn })).toEqual({ strategy: 'assumed-role', roleArn });
    expect(
      awsParamsSchema.parse({
        strategy: 'iam-user',
        permissionsBoundaryArn: 'arn:aws:iam::123456789012:policy/b',
      }),
    ).toEqual({
      strategy: 'iam-user',
      permissionsBoundaryArn: 'arn:aws:iam::123456789012:policy/b',
      path: '/grantline/',
    });
  });

  it.each([
    [{ roleArn: 'arn:aws:s3:::bucket' }, ['roleArn']],
    [{ roleArn, maxSessionDurationSeconds: 60 }, ['maxSessionDurationSeconds']],
    [{ roleArn, actions: ['ListRoles'] }, ['actions', 0]],
    [{ roleArn, surprise: true }, []],
    [{ strategy: 'iam-user' }, ['permissionsBoundaryArn']],
    [
      {
        strategy: 'iam-user',
        permissionsBoundaryArn: 'arn:aws:iam::123456789012:policy/b',
        path: 'no-slashes',
      },
      ['path'],
    ],
    [
      {
        strategy: 'identity-center',
        instanceArn: 'x',
        permissionSetArn: 'y',
        accountId: '1',
        principalType: 'ROLE',
        principalId: 'z',
      },
      ['instanceArn'],
    ],
    [{ strategy: 'carrier-pigeon', roleArn }, ['strategy']],
  ])('a request with params %j fails with ERR_VALIDATION at targets.0.params.%s', async (params, path) => {
    const gl = service([executor]);
    const err = await gl
      .request({
        requester: alice,
        subject: deployBot,
        justification: { reason: 'x', ticket: 'OPS-1' },
        targets: [{ id: 't', system: 'aws', resource: roleArn, permissions: ['iam:ListRoles'], params }],
        durationSeconds: 900,
      })
      .catch((e: unknown) => e);
    expect(isGrantlineError(err) && err.code).toBe('ERR_VALIDATION');
    const issues = (err as { details: { issues: { path: (string | number)[] }[] } }).details.issues;
    expect(issues[0]!.path.slice(0, 3 + path.length)).toEqual(['targets', 0, 'params', ...path]);
  });
});

describe('params.actions may narrow target.permissions, never widen them', () => {
  it.each([
    ['iam:ListRoles', 'iam:ListRoles', true],
    ['IAM:listroles', 'iam:ListRoles', true],
    ['iam:ListRoles', 'iam:List*', true],
    ['iam:List*', 'iam:*', true],
    ['iam:Get*Policy', 'iam:Get*', true],
    ['iam:ListRole?', 'iam:List*', true],
    ['*', '*', true],
    ['*', 'iam:*', false],
    ['iam:*', 'iam:List*', false],
    ['iam:L*', 'iam:List*', false],
    ['iam:List*', 'iam:ListRoles', false],
    ['iam:ListRole*', 'iam:ListRole?', false],
    ['s3:GetObject', 'iam:*', false],
  ])('%s covered by %s: %s', (action, permission, covered) => {
    expect(actionCoveredBy(action, permission)).toBe(covered);
  });
});
