import { randomUUID } from 'node:crypto';
import { describeExecutorConformance } from '@grantline/core/testing';
import { describe, it } from 'vitest';
import { createAwsExecutor, createMemoryAssignmentHolders } from '../src/index.js';
import {
  adminClients,
  canListRoles,
  createBoundary,
  createPermissionSet,
  createRole,
  skipWithoutMoto,
} from './support/moto.js';

// Against moto_server with IAM enforcement on. Each test gets its own role: moto ignores policy
// conditions, so a session-scoped Deny denies every session of its role there (see README).
const runner = { describe: skipWithoutMoto() ? describe.skip : describe, it };
const fast = { consecutiveRejections: 3, backoffMs: 20, maxBackoffMs: 80 };

describeExecutorConformance(runner, {
  name: 'aws assumed-role (moto)',
  async create() {
    const { iam, sts } = adminClients();
    const role = await createRole(iam);
    return {
      executor: createAwsExecutor({ sts, iam, probe: fast }),
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
    };
  },
});

describeExecutorConformance(runner, {
  name: 'aws iam-user (moto)',
  async create() {
    const { iam, sts } = adminClients();
    const boundary = await createBoundary(iam);
    return {
      executor: createAwsExecutor({ sts, iam, probe: fast }),
      target: {
        id: `key-${randomUUID().slice(0, 6)}`,
        system: 'aws',
        resource: 'iam-user',
        permissions: ['iam:ListRoles'],
        params: { strategy: 'iam-user', permissionsBoundaryArn: boundary },
      },
      usable: (secret, res) =>
        canListRoles({ accessKeyId: res.ref.accessKeyId!, secretAccessKey: secret.secretAccessKey! }),
    };
  },
});

describeExecutorConformance(runner, {
  name: 'aws identity-center (moto)',
  async create() {
    const { iam, sts, ssoAdmin } = adminClients();
    const { instanceArn, permissionSetArn } = await createPermissionSet(ssoAdmin);
    return {
      executor: createAwsExecutor({
        sts,
        iam,
        ssoAdmin,
        poll: { intervalMs: 10 },
        assignmentHolders: createMemoryAssignmentHolders(),
      }),
      target: {
        id: 'console',
        system: 'aws',
        resource: 'aws-account:123456789012',
        params: {
          strategy: 'identity-center',
          instanceArn,
          permissionSetArn,
          accountId: '123456789012',
          principalType: 'USER',
          principalId: randomUUID(),
        },
      },
    };
  },
});
