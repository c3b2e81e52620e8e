import { randomUUID } from 'node:crypto';
import { CreateUserCommand } from '@aws-sdk/client-iam';
import {
  CreateAccountAssignmentCommand,
  GetInlinePolicyForPermissionSetCommand,
  ListAccountAssignmentsCommand,
  type SSOAdminClient,
} from '@aws-sdk/client-sso-admin';
import { createMemoryStore } from '@grantline/store-memory';
import { describe, expect, it } from 'vitest';
import {
  type AwsParams,
  awsParamsSchema,
  createAwsExecutor,
  createMemoryAssignmentHolders,
  deriveNames,
} from '../src/index.js';
import { awsCase, ctxOf } from './support/grants.js';
import {
  adminClients,
  createBoundary,
  createPermissionSet,
  skipWithoutMoto,
  switchableClients,
} from './support/moto.js';
import { alice, bob, deployBot, storeBackedService } from './support/service.js';

const parse = (v: unknown) => awsParamsSchema.parse(v) as AwsParams;
const ACCOUNT = '123456789012';

/** A permission set with a standing assignment for a fresh user, made by hand (not by Grantline). */
async function standing(ssoAdmin: SSOAdminClient) {
  const { instanceArn, permissionSetArn } = await createPermissionSet(ssoAdmin);
  const principalId = randomUUID();
  await ssoAdmin.send(
    new CreateAccountAssignmentCommand({
      InstanceArn: instanceArn,
      TargetId: ACCOUNT,
      TargetType: 'AWS_ACCOUNT',
      PermissionSetArn: permissionSetArn,
      PrincipalType: 'USER',
      PrincipalId: principalId,
    }),
  );
  const params = {
    strategy: 'identity-center',
    instanceArn,
    permissionSetArn,
    accountId: ACCOUNT,
    principalType: 'USER',
    principalId,
    revokeSessions: true,
  };
  const listed = async () =>
    (
      (
        await ssoAdmin.send(
          new ListAccountAssignmentsCommand({
            InstanceArn: instanceArn,
            AccountId: ACCOUNT,
            PermissionSetArn: permissionSetArn,
          }),
        )
      ).AccountAssignments ?? []
    ).some((a) => a.PrincipalId === principalId);
  // With revokeSessions, a wrong delete would also add a Deny cutting the user's live sessions.
  const denies = async () => {
    const doc = (
      await ssoAdmin.send(
        new GetInlinePolicyForPermissionSetCommand({
          InstanceArn: instanceArn,
          PermissionSetArn: permissionSetArn,
        }),
      )
    ).InlinePolicy;
    return doc ? (doc.match(/GrantlineRevoke/g) ?? []).length : 0;
  };
  return { params, listed, denies };
}

describe.skipIf(skipWithoutMoto())(
  'Identity Center standing access on moto_server (trying to break it)',
  () => {
    it('a rollback without a recorded issuance never deletes standing access: a case that never reached the target', async () => {
      const { iam, sts, ssoAdmin } = adminClients();
      const s = await standing(ssoAdmin);
      const executor = createAwsExecutor({
        iam,
        sts,
        ssoAdmin,
        poll: { intervalMs: 10 },
        assignmentHolders: createMemoryAssignmentHolders(),
      });
      const grant = awsCase({ id: 'console', resource: `aws-account:${ACCOUNT}`, params: s.params });
      const rc = { ...ctxOf(grant, parse), trigger: 'rollback', reason: 'another target failed' };
      expect(await executor.revoke(rc)).toMatchObject({
        alreadyGone: false,
        detail: { method: 'assignment-kept-unproven' },
      });
      expect(await s.listed()).toBe(true);
      expect(await s.denies()).toBe(0);
      // Nothing proves the assignment is not this case's either: verify must not call it gone.
      expect(await executor.verify(rc)).toMatchObject({ status: 'present', method: 'assignment-unproven' });
    });

    it('issue found standing access, then the process died before the case recorded it: the rollback keeps it', async () => {
      const { iam, sts, ssoAdmin } = adminClients();
      const s = await standing(ssoAdmin);
      const executor = createAwsExecutor({
        iam,
        sts,
        ssoAdmin,
        poll: { intervalMs: 10 },
        assignmentHolders: createMemoryAssignmentHolders(),
      });
      const grant = awsCase({ id: 'console', resource: `aws-account:${ACCOUNT}`, params: s.params });
      const res = await executor.issue(ctxOf(grant, parse));
      expect(res.ref.preexisting).toBe('true');
      // The issuance is lost: only the holders' record of what issue found tells it apart.
      const rc = { ...ctxOf(grant, parse), trigger: 'rollback', reason: 'issuance did not complete in time' };
      for (let i = 0; i < 2; i++) {
        expect(await executor.revoke(rc)).toMatchObject({
          alreadyGone: true,
          detail: { method: 'assignment-preexisting' },
        });
      }
      expect(await s.listed()).toBe(true);
      expect(await s.denies()).toBe(0);
      expect(await executor.verify(rc)).toMatchObject({ status: 'absent', method: 'assignment-preexisting' });
    });

    it('through the service with store-backed holders: a case over standing access is verified and the access stays', async () => {
      const { iam, sts, ssoAdmin } = adminClients();
      const s = await standing(ssoAdmin);
      const gl = storeBackedService({ iam, sts, ssoAdmin }, createMemoryStore());
      const c = await gl.request({
        requester: alice,
        subject: deployBot,
        justification: { reason: 'console', ticket: 'OPS-90' },
        targets: [{ id: 'console', system: 'aws', resource: `aws-account:${ACCOUNT}`, params: s.params }],
        durationSeconds: 900,
      });
      await gl.approve(c.id, { approver: bob });
      // The store lists this very case as a holder while it is `issuing`: that must not hide the
      // fact that the assignment was standing access.
      const { grant } = await gl.issue(c.id);
      expect(grant.targets[0]!.issuance!.ref.preexisting).toBe('true');
      const done = await gl.revoke(c.id, { actor: bob, reason: 'done' });
      expect(done.state).toBe('verified');
      expect(done.targets[0]!.verification).toMatchObject({ method: 'assignment-preexisting' });
      expect(await s.listed()).toBe(true);
      expect(await s.denies()).toBe(0);
    });

    it('through the service with store-backed holders: an earlier target fails, the Identity Center target was never reached, standing access stays and the case ends failed', async () => {
      const { iam, sts, ssoAdmin } = adminClients();
      const s = await standing(ssoAdmin);
      const boundary = await createBoundary(iam);
      const gl = storeBackedService({ iam, sts, ssoAdmin }, createMemoryStore());
      const c = await gl.request({
        requester: alice,
        subject: deployBot,
        justification: { reason: 'console and key', ticket: 'OPS-91' },
        targets: [
          {
            id: 'legacy',
            system: 'aws',
            resource: 'iam-user',
            permissions: ['iam:ListRoles'],
            params: { strategy: 'iam-user', permissionsBoundaryArn: boundary },
          },
          { id: 'console', system: 'aws', resource: `aws-account:${ACCOUNT}`, params: s.params },
        ],
        durationSeconds: 900,
      });
      // The first target fails at issue: a user of its derived name belongs to someone else.
      await iam.send(
        new CreateUserCommand({
          UserName: deriveNames(c, c.targets[0]!, 't').principalName,
          Tags: [{ Key: 'grantline:case', Value: 'someone-else' }],
        }),
      );
      await gl.approve(c.id, { approver: bob });
      await expect(gl.issue(c.id)).rejects.toMatchObject({ code: 'ERR_ISSUANCE_FAILED' });
      const after = await gl.get(c.id);
      expect(after.state).toBe('failed');
      expect(after.targets[1]!.revocation).toMatchObject({
        alreadyGone: true,
        detail: { method: 'assignment-not-issued' },
      });
      expect(after.targets[1]!.verification).toMatchObject({ method: 'assignment-not-issued' });
      expect(await s.listed()).toBe(true);
      expect(await s.denies()).toBe(0);
    });
  },
);

describe.skipIf(skipWithoutMoto())('Identity Center holders shared across instances on moto_server', () => {
  it('a restarted or second instance sees the first case still holding a shared assignment and keeps it', async () => {
    const { iam, sts, ssoAdmin } = adminClients();
    const { instanceArn, permissionSetArn } = await createPermissionSet(ssoAdmin);
    const store = createMemoryStore();
    // Two instances over one store, each with its own executor (and nothing else shared).
    const instance = () => storeBackedService({ iam, sts, ssoAdmin }, store);
    const one = instance();
    const two = instance();
    const principalId = randomUUID();
    const target = {
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
      },
    };
    const open = async (gl: ReturnType<typeof instance>, ticket: string) => {
      const c = await gl.request({
        requester: alice,
        subject: deployBot,
        justification: { reason: 'console', ticket },
        targets: [target],
        durationSeconds: 900,
      });
      await gl.approve(c.id, { approver: bob });
      return (await gl.issue(c.id)).grant;
    };
    const listed = async () =>
      (
        (
          await ssoAdmin.send(
            new ListAccountAssignmentsCommand({
              InstanceArn: instanceArn,
              AccountId: ACCOUNT,
              PermissionSetArn: permissionSetArn,
            }),
          )
        ).AccountAssignments ?? []
      ).some((a) => a.PrincipalId === principalId);
    const a = await open(one, 'OPS-92');
    const b = await open(two, 'OPS-93');
    expect(b.targets[0]!.issuance!.ref.sharedWith).toBe(a.id);
    // Instance two revokes the case instance one issued: B still needs the assignment.
    const ra = await two.revoke(a.id, { actor: bob, reason: 'done' });
    expect(ra.targets[0]!.verification).toMatchObject({ method: 'assignment-handoff' });
    expect(await listed()).toBe(true);
    const rb = await one.revoke(b.id, { actor: bob, reason: 'done' });
    expect(rb.state).toBe('verified');
    expect(await listed()).toBe(false);
  });
});

describe.skipIf(skipWithoutMoto())(
  'Identity Center store-backed holders while a revocation is pending',
  () => {
    it('a case whose revocation of the assignment is still being retried holds it: a second case shares it (not standing access) and the last one deletes it', async () => {
      const sw = await switchableClients();
      const { instanceArn, permissionSetArn } = await createPermissionSet(sw.admin.ssoAdmin);
      const principalId = randomUUID();
      const params = {
        strategy: 'identity-center',
        instanceArn,
        permissionSetArn,
        accountId: ACCOUNT,
        principalType: 'USER',
        principalId,
      };
      const listed = async () =>
        (
          (
            await sw.admin.ssoAdmin.send(
              new ListAccountAssignmentsCommand({
                InstanceArn: instanceArn,
                AccountId: ACCOUNT,
                PermissionSetArn: permissionSetArn,
              }),
            )
          ).AccountAssignments ?? []
        ).some((a) => a.PrincipalId === principalId);
      const gl = storeBackedService(sw.clients, createMemoryStore());
      const open = async (ticket: string) => {
        const c = await gl.request({
          requester: alice,
          subject: deployBot,
          justification: { reason: 'console', ticket },
          targets: [{ id: 'console', system: 'aws', resource: `aws-account:${ACCOUNT}`, params }],
          durationSeconds: 900,
        });
        await gl.approve(c.id, { approver: bob });
        return (await gl.issue(c.id)).grant;
      };
      const a = await open('OPS-94');
      // A's revocation fails (a real ECONNREFUSED): A stays `revoking`, the assignment stays.
      sw.fail('transient');
      const pending = await gl.revoke(a.id, { actor: bob, reason: 'done' });
      sw.restore();
      expect(pending.state).toBe('revoking');
      expect(pending.targets[0]!.revocation?.confirmedAt).toBeUndefined();
      expect(await listed()).toBe(true);

      const b = await open('OPS-95');
      expect(b.targets[0]!.issuance!.ref.preexisting).toBeUndefined();
      expect(b.targets[0]!.issuance!.ref.sharedWith).toBe(a.id);

      // A's retry hands the assignment to B; B's revocation then deletes it.
      const ra = await gl.verify(a.id);
      expect(ra.targets[0]!.revocation?.detail).toMatchObject({ method: 'assignment-handoff' });
      expect(await listed()).toBe(true);
      const rb = await gl.revoke(b.id, { actor: bob, reason: 'done' });
      expect(rb.state).toBe('verified');
      expect(await listed()).toBe(false);
    });
  },
);
