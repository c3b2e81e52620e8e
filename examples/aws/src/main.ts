import {
  CreateAccessKeyCommand,
  CreateRoleCommand,
  CreateUserCommand,
  IAMClient,
  ListRolesCommand,
  PutRolePolicyCommand,
  PutUserPolicyCommand,
} from '@aws-sdk/client-iam';
import { STSClient } from '@aws-sdk/client-sts';
import { createGrantline, formatTimeline } from '@grantline/core';
import { awsCredentialsOf, createAwsExecutor } from '@grantline/executor-aws';
import { createMemoryStore } from '@grantline/store-memory';
import { enforceIam, startMoto } from './moto.js';

const region = 'us-east-1';
const moto = await startMoto();
console.log(`moto_server on ${moto.endpoint} (pid ${moto.pid})`);
try {
  // --- The AWS side (normally already there): an executor identity and a workload role. ---------
  // moto accepts these bootstrap calls before IAM enforcement is switched on.
  const boot = new IAMClient({
    region,
    endpoint: moto.endpoint,
    credentials: { accessKeyId: 'bootstrap', secretAccessKey: 'bootstrap' },
  });
  const executorUser = await boot.send(new CreateUserCommand({ UserName: 'grantline-executor' }));
  await boot.send(
    new PutUserPolicyCommand({
      UserName: 'grantline-executor',
      PolicyName: 'executor',
      PolicyDocument: JSON.stringify({
        Version: '2012-10-17',
        Statement: [{ Effect: 'Allow', Action: ['sts:AssumeRole', 'iam:*'], Resource: '*' }],
      }),
    }),
  );
  const key = await boot.send(new CreateAccessKeyCommand({ UserName: 'grantline-executor' }));
  await enforceIam(moto.endpoint);

  // The executor's own credentials are passed in explicitly: the package never reads the environment.
  const credentials = {
    accessKeyId: key.AccessKey!.AccessKeyId!,
    secretAccessKey: key.AccessKey!.SecretAccessKey!,
  };
  const iam = new IAMClient({ region, endpoint: moto.endpoint, credentials });
  const sts = new STSClient({ region, endpoint: moto.endpoint, credentials });
  const role = await iam.send(
    new CreateRoleCommand({
      RoleName: 'deploy-payments',
      MaxSessionDuration: 3600,
      AssumeRolePolicyDocument: JSON.stringify({
        Version: '2012-10-17',
        Statement: [
          {
            Effect: 'Allow',
            Principal: { AWS: executorUser.User!.Arn! },
            Action: ['sts:AssumeRole', 'sts:TagSession', 'sts:SetSourceIdentity'],
          },
        ],
      }),
    }),
  );
  await iam.send(
    new PutRolePolicyCommand({
      RoleName: 'deploy-payments',
      PolicyName: 'workload',
      // iam:GetRole on itself lets the executor's signed probe tell "denied by revocation" from "never allowed".
      PolicyDocument: JSON.stringify({
        Version: '2012-10-17',
        Statement: [{ Effect: 'Allow', Action: ['iam:ListRoles', 'iam:GetRole'], Resource: '*' }],
      }),
    }),
  );

  // --- Grantline: policy, service, one case. ---------------------------------------------------------
  const gl = createGrantline({
    store: createMemoryStore(),
    executors: [createAwsExecutor({ sts, iam, probe: { consecutiveRejections: 3, backoffMs: 200 } })],
    policy: {
      id: 'acme-aws',
      version: '1',
      owner: 'iam-governance',
      rules: [
        {
          id: 'deploy',
          risk: 'medium',
          match: { systems: ['aws'] },
          operator: 'platform-ops',
          maxDurationSeconds: 3600,
          require: { ticket: { pattern: '^OPS-\\d+$' } },
          approvals: { count: 1, roles: ['service-owner'] },
        },
      ],
    },
  });
  const alice = { id: 'alice', kind: 'human' as const, roles: ['engineer'], teams: ['payments'] };
  const olga = { id: 'olga', kind: 'human' as const, roles: ['service-owner'], teams: ['payments-owners'] };
  const ci = { id: 'ci-deploy-payments', kind: 'workload' as const, roles: [] };

  const requested = await gl.request({
    requester: alice,
    subject: ci,
    justification: { reason: 'deploy payments 4.2', ticket: 'OPS-1234' },
    targets: [
      {
        id: 'deploy',
        system: 'aws',
        resource: role.Role!.Arn!,
        permissions: ['iam:ListRoles'],
        params: { roleArn: role.Role!.Arn! },
      },
    ],
    durationSeconds: 1800,
  });
  await gl.approve(requested.id, { approver: olga, reason: 'release approved' });
  const { grant, credentials: secrets } = await gl.issue(requested.id);
  const issuance = grant.targets[0]!.issuance!;
  console.log(
    `issued STS session ${issuance.ref.sessionName} as ${issuance.ref.sourceIdentity}, expires ${issuance.expiresAt}`,
  );

  // The workload uses its session.
  const session = awsCredentialsOf(issuance, secrets.deploy);
  const asWorkload = new IAMClient({ region, endpoint: moto.endpoint, credentials: session, maxAttempts: 1 });
  const roles = await asWorkload.send(new ListRolesCommand({}));
  console.log(`workload listed ${roles.Roles?.length ?? 0} role(s) with its session`);

  // Task done early: revoke now. STS sessions cannot be deleted, so a Deny scoped to this one session
  // is attached to the role, then a signed probe with the same credentials must be refused 3 times.
  const done = await gl.complete(requested.id, { actor: ci, reason: 'deploy finished' });
  const v = done.targets[0]!.verification!;
  console.log(
    `case ${done.id} is ${done.state}: ${v.method}, ${done.targets[0]!.revocation!.detail?.policyName}`,
  );
  try {
    await asWorkload.send(new ListRolesCommand({}));
    console.log('UNEXPECTED: the revoked session still works');
    process.exitCode = 1;
  } catch (err) {
    console.log(`the revoked session is refused: ${(err as Error).name}`);
  }
  console.log(formatTimeline(await gl.history(done.id)));
  if (done.state !== 'verified') process.exitCode = 1;
} finally {
  await moto.stop();
  console.log(`moto_server (pid ${moto.pid}) stopped`);
}
