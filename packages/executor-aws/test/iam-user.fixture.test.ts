import { describe, expect, it } from 'vitest';
import { awsParamsSchema, type AwsParams, createAwsExecutor, deriveNames } from '../src/index.js';
import * as f from './fixtures/aws-responses.js';
import { FixtureHandler, fixtureClients } from './support/fixture-handler.js';
import { awsCase, ctxOf } from './support/grants.js';

const parse = (v: unknown) => awsParamsSchema.parse(v) as AwsParams;
const boundary = `arn:aws:iam::${f.ACCOUNT}:policy/grantline-boundary`;

describe('iam-user strategy (fixture: recorded AWS responses through the real SDK clients)', () => {
  it('fixture: the user is created under the path with the permissions boundary and case tags, the grant policy next, the key last', async () => {
    const grant = awsCase(
      {
        id: 'legacy',
        resource: 'iam-user',
        permissions: ['s3:ListBucket'],
        params: { strategy: 'iam-user', permissionsBoundaryArn: boundary },
      },
      { sourceCidrs: ['192.0.2.0/24'] },
    );
    const userName = deriveNames(grant, grant.targets[0]!, 't').principalName;
    const handler = new FixtureHandler({
      GetUser: f.queryError('NoSuchEntity', `The user with name ${userName} cannot be found.`, 404),
      CreateUser: f.createUser(userName),
      PutUserPolicy: f.empty('PutUserPolicy'),
      ListAccessKeys: f.listAccessKeys(userName, []),
      CreateAccessKey: f.createAccessKey(userName),
    });
    const { sts, iam } = fixtureClients(handler);
    const res = await createAwsExecutor({ sts, iam }).issue(ctxOf(grant, parse));
    expect(handler.seen.map((s) => s.operation)).toEqual([
      'GetUser',
      'CreateUser',
      'PutUserPolicy',
      'ListAccessKeys',
      'CreateAccessKey',
    ]);
    const create = handler.calls('CreateUser')[0]!.params;
    expect(create.get('UserName')).toBe(userName);
    expect(create.get('Path')).toBe('/grantline/');
    expect(create.get('PermissionsBoundary')).toBe(boundary);
    expect(create.get('Tags.member.1.Value')).toBe(grant.id);
    const policy = JSON.parse(handler.calls('PutUserPolicy')[0]!.params.get('PolicyDocument')!);
    expect(policy.Statement[0]).toMatchObject({
      Action: ['s3:ListBucket'],
      Condition: { IpAddress: { 'aws:SourceIp': ['192.0.2.0/24'] } },
    });
    expect(res.ref).toMatchObject({
      userName,
      accessKeyId: 'AKIAIOSFODNN7EXAMPLE',
      permissionsBoundaryArn: boundary,
    });
    expect(res.secret).toEqual({ secretAccessKey: f.SESSION_SECRET });
    expect(res.expiresAt.toISOString()).toBe(grant.window.expiresAt);
  });

  it('fixture: verify needs the key to be unknown to AWS (InvalidClientTokenId), not merely a bad signature', async () => {
    const grant = awsCase({
      id: 'legacy',
      resource: 'iam-user',
      permissions: ['s3:ListBucket'],
      params: { strategy: 'iam-user', permissionsBoundaryArn: boundary },
    });
    const userName = deriveNames(grant, grant.targets[0]!, 't').principalName;
    const handler = new FixtureHandler({
      GetUser: f.queryError('NoSuchEntity', 'cannot be found', 404),
      GetCallerIdentity: f.queryError(
        'SignatureDoesNotMatch',
        'The request signature we calculated does not match the signature you provided.',
        403,
      ),
    });
    const { sts, iam } = fixtureClients(handler);
    const executor = createAwsExecutor({ sts, iam, probe: { backoffMs: 1 } });
    const rc = {
      ...ctxOf(grant, parse),
      issuance: {
        ref: { strategy: 'iam-user', userName, accessKeyId: 'AKIAIOSFODNN7EXAMPLE' },
        issuedAt: grant.window.issuedAt!,
        expiresAt: grant.window.expiresAt!,
      },
      trigger: 'manual',
      reason: 'x',
    };
    // The key still exists at AWS (signature checked, so the key was found): present.
    expect((await executor.verify(rc)).status).toBe('present');
    handler.on(
      'GetCallerIdentity',
      f.queryError('InvalidClientTokenId', 'The security token included in the request is invalid.', 403),
    );
    const v = await executor.verify(rc);
    expect(v.status).toBe('absent');
    expect(v.observation).toMatchObject({ accessKeyId: 'AKIAIOSFODNN7EXAMPLE', consecutiveRejections: 3 });
    // The probe signed with the key id only: no secret of the issued key was needed or sent.
    expect(
      handler
        .calls('GetCallerIdentity')
        .every((c) => c.headers.authorization?.includes('Credential=AKIAIOSFODNN7EXAMPLE/')),
    ).toBe(true);
  });
});
