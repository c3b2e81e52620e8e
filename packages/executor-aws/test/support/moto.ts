import { randomUUID } from 'node:crypto';
import { type AddressInfo, createServer } from 'node:net';
import {
  CreateAccessKeyCommand,
  CreatePolicyCommand,
  CreateRoleCommand,
  CreateUserCommand,
  IAMClient,
  ListRolesCommand,
  PutRolePolicyCommand,
} from '@aws-sdk/client-iam';
import { CreatePermissionSetCommand, ListInstancesCommand, SSOAdminClient } from '@aws-sdk/client-sso-admin';
import { STSClient } from '@aws-sdk/client-sts';
import { inject } from 'vitest';

export const region = 'us-east-1';

/** The moto_server of this test run, or null (local run without moto: tests skip). */
export function moto() {
  return inject('moto');
}

/** True when the integration tests must be skipped (only possible outside CI). */
export const skipWithoutMoto = () => moto() === null && !process.env.CI;

/** Admin clients on moto, signing with the executor's own (admin) credentials. */
export function adminClients() {
  const m = moto();
  if (!m) throw new Error('moto_server is not running');
  const credentials = { accessKeyId: m.admin.accessKeyId, secretAccessKey: m.admin.secretAccessKey };
  return {
    iam: new IAMClient({ region, endpoint: m.endpoint, credentials }),
    sts: new STSClient({ region, endpoint: m.endpoint, credentials }),
    ssoAdmin: new SSOAdminClient({ region, endpoint: m.endpoint, credentials }),
  };
}

/** A role the admin may assume, whose own policy allows `iam:GetRole` and `iam:ListRoles`. */
export async function createRole(iam: IAMClient, name = `wl-${randomUUID().slice(0, 8)}`) {
  const m = moto()!;
  const role = await iam.send(
    new CreateRoleCommand({
      RoleName: name,
      MaxSessionDuration: 3600,
      AssumeRolePolicyDocument: JSON.stringify({
        Version: '2012-10-17',
        Statement: [
          {
            Effect: 'Allow',
            Principal: { AWS: m.admin.arn },
            Action: ['sts:AssumeRole', 'sts:TagSession', 'sts:SetSourceIdentity'],
          },
        ],
      }),
    }),
  );
  await iam.send(
    new PutRolePolicyCommand({
      RoleName: name,
      PolicyName: 'workload',
      PolicyDocument: JSON.stringify({
        Version: '2012-10-17',
        Statement: [{ Effect: 'Allow', Action: ['iam:GetRole', 'iam:ListRoles'], Resource: '*' }],
      }),
    }),
  );
  return role.Role!;
}

/** A managed policy to use as permissions boundary. */
export async function createBoundary(iam: IAMClient) {
  const out = await iam.send(
    new CreatePolicyCommand({
      PolicyName: `boundary-${randomUUID().slice(0, 8)}`,
      PolicyDocument: JSON.stringify({
        Version: '2012-10-17',
        Statement: [
          { Effect: 'Allow', Action: ['iam:List*', 'iam:Get*', 'sts:GetCallerIdentity'], Resource: '*' },
        ],
      }),
    }),
  );
  return out.Policy!.Arn!;
}

/** Whether `credentials` can call `iam:ListRoles` on moto right now. */
export async function canListRoles(credentials: {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}): Promise<boolean> {
  const m = moto()!;
  try {
    await new IAMClient({ region, endpoint: m.endpoint, credentials, maxAttempts: 1 }).send(
      new ListRolesCommand({}),
    );
    return true;
  } catch (err) {
    const name = (err as Error).name;
    if (['AccessDenied', 'InvalidClientTokenId', 'ExpiredToken', 'SignatureDoesNotMatch'].includes(name))
      return false;
    throw err;
  }
}

/** moto's Identity Center instance and a fresh permission set in it. */
export async function createPermissionSet(sso: SSOAdminClient) {
  const instances = await sso.send(new ListInstancesCommand({}));
  const instanceArn = instances.Instances![0]!.InstanceArn!;
  const ps = await sso.send(
    new CreatePermissionSetCommand({ InstanceArn: instanceArn, Name: `ps-${randomUUID().slice(0, 8)}` }),
  );
  return { instanceArn, permissionSetArn: ps.PermissionSet!.PermissionSetArn! };
}

/**
 * Clients whose target can be switched after the executor was built, for the kit's
 * `simulateFailure`: `fail('transient')` sends every call to a closed port on 127.0.0.1 (a real
 * ECONNREFUSED), `fail('permanent')` signs with a user that has no permissions (a real AccessDenied
 * from moto's IAM enforcement); `restore()` goes back to the admin clients.
 */
export async function switchableClients() {
  const m = moto();
  if (!m) throw new Error('moto_server is not running');
  const admin = adminClients();
  const closedPort = await new Promise<number>((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
  const nobody = `nobody-${randomUUID().slice(0, 8)}`;
  await admin.iam.send(new CreateUserCommand({ UserName: nobody }));
  const key = (await admin.iam.send(new CreateAccessKeyCommand({ UserName: nobody }))).AccessKey!;
  const build = (endpoint: string, credentials: { accessKeyId: string; secretAccessKey: string }) => ({
    iam: new IAMClient({ region, endpoint, credentials, maxAttempts: 1 }),
    sts: new STSClient({ region, endpoint, credentials, maxAttempts: 1 }),
    ssoAdmin: new SSOAdminClient({ region, endpoint, credentials, maxAttempts: 1 }),
  });
  const failing = {
    transient: build(`http://127.0.0.1:${closedPort}`, m.admin),
    permanent: build(m.endpoint, { accessKeyId: key.AccessKeyId!, secretAccessKey: key.SecretAccessKey! }),
  };
  let current: ReturnType<typeof adminClients> = admin;
  // Every property read goes to the clients currently selected (methods bound to them).
  const forward = <K extends keyof typeof admin>(name: K) =>
    new Proxy(admin[name], {
      get(_, prop) {
        const target = current[name];
        const v = Reflect.get(target, prop);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
  return {
    clients: { iam: forward('iam'), sts: forward('sts'), ssoAdmin: forward('ssoAdmin') },
    admin,
    fail(kind: 'transient' | 'permanent') {
      current = failing[kind];
    },
    restore() {
      current = admin;
    },
  };
}
