import { randomUUID } from 'node:crypto';
import {
  CreateAccessKeyCommand,
  CreateUserCommand,
  DeleteAccessKeyCommand,
  DeleteRolePolicyCommand,
  DeleteUserCommand,
  DeleteUserPolicyCommand,
  GetUserCommand,
  type IAMClient,
  ListRolePoliciesCommand,
  PutRolePolicyCommand,
  PutUserPolicyCommand,
} from '@aws-sdk/client-iam';
import {
  CreateAccountAssignmentCommand,
  DeleteAccountAssignmentCommand,
  ListAccountAssignmentsCommand,
  type SSOAdminClient,
} from '@aws-sdk/client-sso-admin';
import { describeExecutorConformance, type ExecutorKitFixture } from '@grantline/core/testing';
import { describe, it } from 'vitest';
import { createAwsExecutor, createMemoryAssignmentHolders, denyPolicyName } from '../src/index.js';
import {
  canListRoles,
  createBoundary,
  createPermissionSet,
  createRole,
  skipWithoutMoto,
  switchableClients,
} from './support/moto.js';

// Against moto_server with IAM enforcement on. Each test gets its own role: moto ignores policy
// conditions, so a session-scoped Deny denies every session of its role there (see README).
const runner = { describe: skipWithoutMoto() ? describe.skip : describe, it };
const fast = { consecutiveRejections: 3, backoffMs: 20, maxBackoffMs: 80 };
const ACCOUNT = '123456789012';

/**
 * `simulateFailure` for every strategy: the executor's clients are switched to a closed port on
 * 127.0.0.1 (transient: connection refused) or to a user without permissions (permanent: moto's
 * AccessDenied), both real failures through the real SDK clients.
 */
const failures = (sw: Awaited<ReturnType<typeof switchableClients>>) => ({
  async simulateFailure(kind: 'transient' | 'permanent') {
    sw.fail(kind);
    return async () => sw.restore();
  },
});

describeExecutorConformance(runner, {
  name: 'aws assumed-role (moto)',
  async create(): Promise<ExecutorKitFixture> {
    const sw = await switchableClients();
    const { iam } = sw.admin;
    const role = await createRole(iam);
    const roleName = role.RoleName!;
    return {
      executor: createAwsExecutor({ ...sw.clients, ssoAdmin: undefined, probe: fast }),
      target: {
        id: 'deploy',
        system: 'aws',
        resource: role.Arn!,
        permissions: ['iam:ListRoles'],
        params: { roleArn: role.Arn! },
      },
      usable: (secret, res) =>
        canListRoles({
          accessKeyId: res.ref.accessKeyId!,
          secretAccessKey: secret.secretAccessKey!,
          sessionToken: secret.sessionToken!,
        }),
      // On the same role: another case's live revocation Deny (revoke and its garbage collection
      // must keep it) and policies Grantline did not write. The Deny document is narrowed to an
      // action the kit never uses, because moto ignores conditions and would otherwise deny this
      // case's sessions too; only its name matters to the executor.
      async foreign() {
        const otherDeny = denyPolicyName(
          'gl.other-case.deploy.abcdef12',
          Math.floor(Date.now() / 1000) + 3600,
        );
        const policies = { [otherDeny]: 's3:DeleteBucket', 'standing-by-hand': 's3:ListAllMyBuckets' };
        for (const [name, action] of Object.entries(policies)) {
          await iam.send(
            new PutRolePolicyCommand({
              RoleName: roleName,
              PolicyName: name,
              PolicyDocument: JSON.stringify({
                Version: '2012-10-17',
                Statement: [{ Effect: name === otherDeny ? 'Deny' : 'Allow', Action: action, Resource: '*' }],
              }),
            }),
          );
        }
        const expected = [...Object.keys(policies), 'workload'];
        return {
          async exists() {
            const names =
              (await iam.send(new ListRolePoliciesCommand({ RoleName: roleName }))).PolicyNames ?? [];
            return expected.every((n) => names.includes(n));
          },
          async remove() {
            for (const name of Object.keys(policies))
              await iam
                .send(new DeleteRolePolicyCommand({ RoleName: roleName, PolicyName: name }))
                .catch(() => {});
          },
        };
      },
      ...failures(sw),
    };
  },
});

/** A user under the executor's path, tagged for another case, with a working key. */
async function foreignUser(iam: IAMClient) {
  const userName = `gl-other-${randomUUID().slice(0, 8)}`;
  await iam.send(
    new CreateUserCommand({
      UserName: userName,
      Path: '/grantline/',
      Tags: [{ Key: 'grantline:case', Value: 'another-case' }],
    }),
  );
  await iam.send(
    new PutUserPolicyCommand({
      UserName: userName,
      PolicyName: 'grantline-grant',
      PolicyDocument: JSON.stringify({
        Version: '2012-10-17',
        Statement: [{ Effect: 'Allow', Action: 'iam:ListRoles', Resource: '*' }],
      }),
    }),
  );
  const key = (await iam.send(new CreateAccessKeyCommand({ UserName: userName }))).AccessKey!;
  return {
    async exists() {
      const user = await iam.send(new GetUserCommand({ UserName: userName })).catch(() => null);
      return (
        user !== null &&
        (await canListRoles({ accessKeyId: key.AccessKeyId!, secretAccessKey: key.SecretAccessKey! }))
      );
    },
    async remove() {
      const ignore = () => {};
      await iam
        .send(new DeleteAccessKeyCommand({ UserName: userName, AccessKeyId: key.AccessKeyId! }))
        .catch(ignore);
      await iam
        .send(new DeleteUserPolicyCommand({ UserName: userName, PolicyName: 'grantline-grant' }))
        .catch(ignore);
      await iam.send(new DeleteUserCommand({ UserName: userName })).catch(ignore);
    },
  };
}

describeExecutorConformance(runner, {
  name: 'aws iam-user (moto)',
  async create(): Promise<ExecutorKitFixture> {
    const sw = await switchableClients();
    const boundary = await createBoundary(sw.admin.iam);
    return {
      executor: createAwsExecutor({ ...sw.clients, ssoAdmin: undefined, probe: fast }),
      target: {
        id: `key-${randomUUID().slice(0, 6)}`,
        system: 'aws',
        resource: 'iam-user',
        permissions: ['iam:ListRoles'],
        params: { strategy: 'iam-user', permissionsBoundaryArn: boundary },
      },
      usable: (secret, res) =>
        canListRoles({ accessKeyId: res.ref.accessKeyId!, secretAccessKey: secret.secretAccessKey! }),
      foreign: () => foreignUser(sw.admin.iam),
      ...failures(sw),
    };
  },
});

/** Lists whether `principalId` holds the permission set in the account. */
async function assigned(
  sso: SSOAdminClient,
  instanceArn: string,
  permissionSetArn: string,
  principalId: string,
) {
  const out = await sso.send(
    new ListAccountAssignmentsCommand({
      InstanceArn: instanceArn,
      AccountId: ACCOUNT,
      PermissionSetArn: permissionSetArn,
    }),
  );
  return (out.AccountAssignments ?? []).some((a) => a.PrincipalId === principalId);
}

describeExecutorConformance(runner, {
  name: 'aws identity-center (moto)',
  async create(): Promise<ExecutorKitFixture> {
    const sw = await switchableClients();
    const { ssoAdmin } = sw.admin;
    const { instanceArn, permissionSetArn } = await createPermissionSet(ssoAdmin);
    const principalId = randomUUID();
    const assignment = (principal: string) => ({
      InstanceArn: instanceArn,
      TargetId: ACCOUNT,
      TargetType: 'AWS_ACCOUNT' as const,
      PermissionSetArn: permissionSetArn,
      PrincipalType: 'USER' as const,
      PrincipalId: principal,
    });
    return {
      executor: createAwsExecutor({
        ...sw.clients,
        poll: { intervalMs: 10 },
        assignmentHolders: createMemoryAssignmentHolders(),
      }),
      target: {
        id: 'console',
        system: 'aws',
        resource: `aws-account:${ACCOUNT}`,
        params: {
          strategy: 'identity-center',
          instanceArn,
          permissionSetArn,
          accountId: ACCOUNT,
          principalType: 'USER',
          principalId,
          revokeSessions: true,
        },
      },
      // No `usable`: an assignment issues no secret (the kit only probes secrets), and moto has no
      // Identity Center sign-in to try it with; verify observes ListAccountAssignments itself.
      // Standing access made by hand: the very assignment the target names (the case finds it there),
      // and another user's assignment of the same permission set.
      async foreign() {
        const other = randomUUID();
        for (const p of [principalId, other])
          await ssoAdmin.send(new CreateAccountAssignmentCommand(assignment(p)));
        return {
          async exists() {
            return (
              (await assigned(ssoAdmin, instanceArn, permissionSetArn, principalId)) &&
              (await assigned(ssoAdmin, instanceArn, permissionSetArn, other))
            );
          },
          async remove() {
            for (const p of [principalId, other])
              await ssoAdmin.send(new DeleteAccountAssignmentCommand(assignment(p))).catch(() => {});
          },
        };
      },
      ...failures(sw),
    };
  },
});
