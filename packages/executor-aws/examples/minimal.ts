import { type IAMClient, ListRolesCommand } from '@aws-sdk/client-iam';
import type { STSClient } from '@aws-sdk/client-sts';
import { createGrantline } from '@grantline/core';
import { awsCredentialsOf, createAwsExecutor } from '@grantline/executor-aws';
import { createMemoryStore } from '@grantline/store-memory';

/**
 * One case on one role. `sts` and `iam` carry the executor's own credentials, chosen by the host
 * (e.g. `new STSClient({ region })`): the package never reads the environment itself.
 * `listRoles` stands for the workload's own use of its session.
 */
export async function main(
  clients: { sts: STSClient; iam: IAMClient },
  roleArn: string,
  listRoles: (c: ReturnType<typeof awsCredentialsOf>) => Promise<unknown>,
) {
  const gl = createGrantline({
    store: createMemoryStore(),
    executors: [createAwsExecutor(clients)],
    policy: {
      id: 'aws-minimal',
      version: '1',
      owner: 'iam-governance',
      rules: [
        {
          id: 'deploy',
          risk: 'medium',
          match: { systems: ['aws'] },
          operator: 'platform-ops',
          maxDurationSeconds: 3600,
          require: { ticket: {} },
          approvals: { count: 1, roles: ['service-owner'] },
        },
      ],
    },
  });
  const ci = { id: 'ci-deploy-payments', kind: 'workload' as const, roles: [] };
  const olga = { id: 'olga', kind: 'human' as const, roles: ['service-owner'] };

  const c = await gl.request({
    requester: ci,
    subject: ci,
    justification: { reason: 'deploy 4.2', ticket: 'OPS-1234' },
    targets: [
      { id: 'deploy', system: 'aws', resource: roleArn, permissions: ['iam:ListRoles'], params: { roleArn } },
    ],
    durationSeconds: 1800,
  });
  await gl.approve(c.id, { approver: olga });
  const { grant, credentials } = await gl.issue(c.id);
  // accessKeyId is a non-secret reference on the case; secretAccessKey and sessionToken come once.
  const session = awsCredentialsOf(grant.targets[0]!.issuance!, credentials.deploy);
  await listRoles(session);
  // Done early: a Deny scoped to this session goes on the role, then a signed probe must fail.
  const done = await gl.complete(c.id, { actor: ci, reason: 'deploy finished' });
  return { state: done.state, verification: done.targets[0]!.verification, session };
}

/** What `listRoles` might be in the workload: the IAM API with the session's credentials. */
export const listRolesWith =
  (iam: (c: ReturnType<typeof awsCredentialsOf>) => IAMClient) => (c: ReturnType<typeof awsCredentialsOf>) =>
    iam(c).send(new ListRolesCommand({}));
