import { randomUUID } from 'node:crypto';
import {
  DeleteInlinePolicyFromPermissionSetCommand,
  GetInlinePolicyForPermissionSetCommand,
  ListAccountAssignmentsCommand,
  ListPermissionSetsProvisionedToAccountCommand,
  SSOAdminClient,
} from '@aws-sdk/client-sso-admin';
import { isGrantlineError } from '@grantline/core';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type AwsParams,
  awsParamsSchema,
  createAwsExecutor,
  createMemoryAssignmentHolders,
} from '../src/index.js';
import { awsCase, ctxOf } from './support/grants.js';
import { adminClients, createPermissionSet, moto, region, skipWithoutMoto } from './support/moto.js';
import { policyLocksHeld, secondWriterQueued } from './support/policy-lock-hook.js';

const parse = (v: unknown) => awsParamsSchema.parse(v) as AwsParams;
const ACCOUNT = '123456789012';

type Gate = (command: string) => Promise<void> | void;

/**
 * An SSO Admin client on moto whose calls first pass `gate` (by command name), and after it
 * `after`. Why: to inject a real SDK error shape (a throttle) or to order two writers
 * deterministically, while every call that goes through still reaches moto.
 */
function gatedSsoAdmin(gate: Gate, after: (command: string) => void = () => {}) {
  const m = moto()!;
  const c = new SSOAdminClient({
    region,
    endpoint: m.endpoint,
    credentials: { accessKeyId: m.admin.accessKeyId, secretAccessKey: m.admin.secretAccessKey },
    maxAttempts: 1,
  });
  c.middlewareStack.add(
    (next, context) => async (args) => {
      await gate(context.commandName ?? '');
      const out = await next(args);
      after(context.commandName ?? '');
      return out;
    },
    { step: 'initialize', name: 'testGate' },
  );
  return c;
}

const throttle = () =>
  Object.assign(new Error('Rate exceeded'), {
    name: 'ThrottlingException',
    $fault: 'client',
    $metadata: { httpStatusCode: 400 },
  });

async function setup() {
  const { ssoAdmin } = adminClients();
  const { instanceArn, permissionSetArn } = await createPermissionSet(ssoAdmin);
  const paramsOf = (principalId: string) => ({
    strategy: 'identity-center',
    instanceArn,
    permissionSetArn,
    accountId: ACCOUNT,
    principalType: 'USER',
    principalId,
    revokeSessions: true,
  });
  const denies = async () => {
    const doc = (
      await ssoAdmin.send(
        new GetInlinePolicyForPermissionSetCommand({
          InstanceArn: instanceArn,
          PermissionSetArn: permissionSetArn,
        }),
      )
    ).InlinePolicy;
    const st: Record<string, unknown>[] = doc ? JSON.parse(doc).Statement : [];
    return st
      .filter((s) => String(s.Sid).startsWith('GrantlineRevoke'))
      .map(
        (s) => (s.Condition as { StringEquals: Record<string, string> }).StringEquals['identitystore:userId'],
      );
  };
  const provisioned = async () =>
    (
      (
        await ssoAdmin.send(
          new ListPermissionSetsProvisionedToAccountCommand({ InstanceArn: instanceArn, AccountId: ACCOUNT }),
        )
      ).PermissionSets ?? []
    ).includes(permissionSetArn);
  const listed = async (principalId: string) =>
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
  return { instanceArn, permissionSetArn, paramsOf, denies, provisioned, listed };
}

function executorOn(ssoAdmin: SSOAdminClient) {
  const { iam, sts } = adminClients();
  return createAwsExecutor({
    iam,
    sts,
    ssoAdmin,
    poll: { intervalMs: 10 },
    assignmentHolders: createMemoryAssignmentHolders(),
  });
}

async function issued(executor: ReturnType<typeof executorOn>, params: Record<string, unknown>) {
  const grant = awsCase({ id: 'console', resource: `aws-account:${ACCOUNT}`, params });
  const ctx = ctxOf(grant, parse);
  const res = await executor.issue(ctx);
  return {
    ...ctx,
    issuance: { ref: res.ref, issuedAt: ctx.now.toISOString(), expiresAt: res.expiresAt.toISOString() },
    trigger: 'manual',
    reason: 'done',
  };
}

const stopHooks: (() => void)[] = [];
afterEach(() => {
  for (const stop of stopHooks.splice(0)) stop();
});

describe.skipIf(skipWithoutMoto())(
  'Identity Center revokeSessions on moto_server (trying to break it)',
  () => {
    it('the first revoke deletes the assignment, writes the Deny, then provisioning is throttled: the retry provisions it before the case counts as revoked', async () => {
      const user = randomUUID();
      const s = await setup();
      let throttles = 1;
      const executor = executorOn(
        gatedSsoAdmin((cmd) => {
          if (cmd === 'ProvisionPermissionSetCommand' && throttles-- > 0) throw throttle();
        }),
      );
      const rc = await issued(executor, s.paramsOf(user));
      const first = await executor.revoke(rc).catch((e: unknown) => e);
      expect(isGrantlineError(first) && [first.code, first.retryable]).toEqual(['ERR_EXECUTOR', true]);
      // The state the throttle left: assignment gone, Deny written, permission set not provisioned.
      expect(await s.listed(user)).toBe(false);
      expect(await s.denies()).toEqual([user]);
      expect(await s.provisioned()).toBe(false);

      const retry = await executor.revoke(rc);
      expect(retry).toMatchObject({
        alreadyGone: true,
        detail: { sessionDeny: { tokenIssuedBefore: expect.any(String) } },
      });
      expect(await s.provisioned()).toBe(true);
      expect(await s.denies()).toEqual([user]);
      expect(await executor.verify(rc)).toMatchObject({
        status: 'absent',
        observation: { assignment: 'absent' },
      });
    });

    it('verify checks the Deny, not only the assignment: a Deny removed after the revoke is reported present, and a revoke puts it back', async () => {
      const user = randomUUID();
      const s = await setup();
      const { ssoAdmin } = adminClients();
      const executor = executorOn(ssoAdmin);
      const rc = await issued(executor, s.paramsOf(user));
      await executor.revoke(rc);
      expect(await executor.verify(rc)).toMatchObject({ status: 'absent' });
      // Someone (or a concurrent writer) replaced the inline policy: live sessions are no longer denied.
      await ssoAdmin.send(
        new DeleteInlinePolicyFromPermissionSetCommand({
          InstanceArn: s.instanceArn,
          PermissionSetArn: s.permissionSetArn,
        }),
      );
      expect(await executor.verify(rc)).toMatchObject({ status: 'present', method: 'session-deny-state' });
      await executor.revoke(rc);
      expect(await s.denies()).toEqual([user]);
      expect(await executor.verify(rc)).toMatchObject({ status: 'absent' });
    });

    it('two revocations on one permission set read the inline policy at once: neither Deny is lost', async () => {
      const u1 = randomUUID();
      const u2 = randomUUID();
      const s = await setup();
      // Both writers read the policy before either writes (the classic lost update), and neither
      // re-reads before both have written. Promises, not sleeps, order them; with the in-process
      // lock the second writer never reads before the first is done, so each gate also opens once
      // it queued behind the lock.
      const hook = secondWriterQueued();
      stopHooks.push(hook.stop);
      let gets = 0;
      let puts = 0;
      let bothRead!: () => void;
      let bothPut!: () => void;
      const read = new Promise<void>((r) => (bothRead = r));
      const put = new Promise<void>((r) => (bothPut = r));
      const executor = executorOn(
        gatedSsoAdmin(
          async (cmd) => {
            if (cmd !== 'GetInlinePolicyForPermissionSetCommand') return;
            const n = ++gets;
            if (n <= 2) {
              if (n === 2) bothRead();
              await Promise.race([read, hook.queued]);
            } else if (n <= 4) await Promise.race([put, hook.queued]);
          },
          (cmd) => {
            if (cmd === 'PutInlinePolicyToPermissionSetCommand' && ++puts === 2) bothPut();
          },
        ),
      );
      const r1 = await issued(executor, s.paramsOf(u1));
      const r2 = await issued(executor, s.paramsOf(u2));
      await Promise.all([executor.revoke(r1), executor.revoke(r2)]);
      expect((await s.denies()).sort()).toEqual([u1, u2].sort());
      expect(await executor.verify(r1)).toMatchObject({ status: 'absent' });
      expect(await executor.verify(r2)).toMatchObject({ status: 'absent' });
    });

    it('two revocations read the inline policy at once, the first re-reads and sees its Deny before the second writes: neither Deny is lost', async () => {
      const u1 = randomUUID();
      const u2 = randomUUID();
      const s = await setup();
      // The reviewer's path: A and B read; A writes, re-reads and sees its Deny, returns; only then
      // does B write from its stale read. With the lock, each gate opens once the other writer queued.
      const hook = secondWriterQueued();
      stopHooks.push(hook.stop);
      const isGet = (cmd: string) => cmd === 'GetInlinePolicyForPermissionSetCommand';
      const isPut = (cmd: string) => cmd === 'PutInlinePolicyToPermissionSetCommand';
      let reads = 0;
      let aReads = 0;
      let bothRead!: () => void;
      let aConfirmed!: () => void;
      const read = new Promise<void>((r) => (bothRead = r));
      const confirmed = new Promise<void>((r) => (aConfirmed = r));
      const count = (cmd: string) => {
        if (isGet(cmd) && ++reads === 2) bothRead();
      };
      const execA = executorOn(
        gatedSsoAdmin(
          async (cmd) => {
            count(cmd);
            if (isPut(cmd)) await Promise.race([read, hook.queued]);
          },
          (cmd) => {
            if (isGet(cmd) && ++aReads === 2) aConfirmed();
          },
        ),
      );
      const execB = executorOn(
        gatedSsoAdmin(async (cmd) => {
          count(cmd);
          if (isPut(cmd)) await Promise.race([confirmed, hook.queued]);
        }),
      );
      const r1 = await issued(execA, s.paramsOf(u1));
      const r2 = await issued(execB, s.paramsOf(u2));
      reads = 0;
      await Promise.all([execA.revoke(r1), execB.revoke(r2)]);
      expect((await s.denies()).sort()).toEqual([u1, u2].sort());
      expect(await execA.verify(r1)).toMatchObject({ status: 'absent' });
      expect(await execB.verify(r2)).toMatchObject({ status: 'absent' });
      expect(policyLocksHeld()).toBe(0);
    });
  },
);
