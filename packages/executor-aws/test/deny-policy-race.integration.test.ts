import {
  DeleteRolePolicyCommand,
  GetRolePolicyCommand,
  IAMClient,
  PutRolePolicyCommand,
} from '@aws-sdk/client-iam';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type AwsParams,
  awsParamsSchema,
  createAwsExecutor,
  DENY_POLICY_NAME,
  denyDocument,
  deriveNames,
  parseDenyDocument,
} from '../src/index.js';
import { awsCase, ctxOf } from './support/grants.js';
import { adminClients, createRole, moto, region, skipWithoutMoto } from './support/moto.js';
import { policyLocksHeld, secondWriterQueued } from './support/policy-lock-hook.js';
import { alice, bob, deployBot, manualClock, service } from './support/service.js';

const parse = (v: unknown) => awsParamsSchema.parse(v) as AwsParams;
const fast = { consecutiveRejections: 3, backoffMs: 20, maxBackoffMs: 80 };

/** A call to the deny policy, as the gates see it. */
interface Call {
  command: string;
  policyName?: string;
}
type Gate = (call: Call) => Promise<void> | void;

/**
 * An IAM client on moto whose calls first pass `gate` and, once answered (or refused), `after`. Why: to order
 * two writers of the deny policy deterministically (promises, no sleeps) while every call still
 * reaches moto.
 */
function gatedIam(gate: Gate, after: (call: Call) => void = () => {}) {
  const m = moto()!;
  const c = new IAMClient({
    region,
    endpoint: m.endpoint,
    credentials: { accessKeyId: m.admin.accessKeyId, secretAccessKey: m.admin.secretAccessKey },
    maxAttempts: 1,
  });
  c.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as { PolicyName?: string };
      const call = {
        command: context.commandName ?? '',
        ...(input.PolicyName ? { policyName: input.PolicyName } : {}),
      };
      await gate(call);
      try {
        return await next(args);
      } finally {
        // Also after an error: a read of a policy that does not exist yet is answered NoSuchEntity.
        after(call);
      }
    },
    { step: 'initialize', name: 'testGate' },
  );
  return c;
}

const isDeny = (c: Call, command: string) =>
  c.command === `${command}Command` && c.policyName === DENY_POLICY_NAME;

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

async function issuedOn(role: { Arn?: string }) {
  const { iam, sts } = adminClients();
  const executor = createAwsExecutor({ iam, sts, probe: fast });
  const grant = awsCase({
    id: 'deploy',
    resource: role.Arn!,
    permissions: ['iam:ListRoles'],
    params: { roleArn: role.Arn! },
  });
  const ctx = ctxOf(grant, parse);
  const res = await executor.issue(ctx);
  return {
    executor,
    rc: {
      ...ctx,
      issuance: { ref: res.ref, issuedAt: ctx.now.toISOString(), expiresAt: res.expiresAt.toISOString() },
      trigger: 'manual',
      reason: 'early',
    },
  };
}

type Revocation = Awaited<ReturnType<typeof issuedOn>>['rc'];
const userIdOf = (roleId: string, rc: Revocation) =>
  `${roleId}:${deriveNames(rc.grant, rc.target, 't').principalName}`;

async function denied(iam: IAMClient, roleName: string) {
  try {
    const out = await iam.send(
      new GetRolePolicyCommand({ RoleName: roleName, PolicyName: DENY_POLICY_NAME }),
    );
    return parseDenyDocument(out.PolicyDocument).map((x) => x.userId);
  } catch {
    return [];
  }
}

/** Drops the role's Deny policy and puts a hand-made `Deny *` on the role (see the verify test). */
async function loseEntryUnderAnotherDeny(iam: IAMClient, roleName: string) {
  await iam.send(new DeleteRolePolicyCommand({ RoleName: roleName, PolicyName: DENY_POLICY_NAME }));
  await iam.send(
    new PutRolePolicyCommand({
      RoleName: roleName,
      PolicyName: 'ops-freeze',
      PolicyDocument: JSON.stringify({
        Version: '2012-10-17',
        Statement: [{ Effect: 'Deny', Action: '*', Resource: '*' }],
      }),
    }),
  );
}

let hook: ReturnType<typeof secondWriterQueued> | undefined;
afterEach(() => {
  hook?.stop();
  hook = undefined;
});

describe.skipIf(skipWithoutMoto())('concurrent writers of one role’s Deny policy (moto_server)', () => {
  it('two revocations on one role both read the policy before either writes: both entries survive', async () => {
    const { iam, sts } = adminClients();
    const role = await createRole(iam);
    const a = await issuedOn(role);
    const b = await issuedOn(role);
    hook = secondWriterQueued();
    // The reviewer's path: A and B read {}; A writes {A}, re-reads and sees A; only then B writes.
    // A's write waits until B has read too, B's until A saw its entry (code without a lock); with
    // the lock, either waits only until the other writer queued behind it.
    let reads = 0;
    let aReads = 0;
    const bothRead = deferred();
    const aConfirmed = deferred();
    const countRead = (c: Call) => {
      if (isDeny(c, 'GetRolePolicy') && ++reads === 4) bothRead.resolve();
    };
    let aPuts = 0;
    const execA = createAwsExecutor({
      iam: gatedIam(
        async (c) => {
          countRead(c);
          if (isDeny(c, 'PutRolePolicy') && ++aPuts === 1)
            await Promise.race([bothRead.promise, hook!.queued]);
        },
        // A's reads: the revoke's check, the read before the write, the re-read after it.
        (c) => {
          if (isDeny(c, 'GetRolePolicy') && ++aReads === 3) aConfirmed.resolve();
        },
      ),
      sts,
      probe: fast,
    });
    const execB = createAwsExecutor({
      iam: gatedIam(async (c) => {
        countRead(c);
        if (isDeny(c, 'PutRolePolicy')) await Promise.race([aConfirmed.promise, hook!.queued]);
      }),
      sts,
      probe: fast,
    });
    const [ra, rb] = await Promise.all([execA.revoke(a.rc), execB.revoke(b.rc)]);
    expect(ra.detail).toMatchObject({ method: 'session-deny' });
    expect(rb.detail).toMatchObject({ method: 'session-deny' });
    expect((await denied(iam, role.RoleName!)).sort()).toEqual(
      [userIdOf(role.RoleId!, a.rc), userIdOf(role.RoleId!, b.rc)].sort(),
    );
    // Each session verifies: by its probe (credentials held) and by the Deny's state (a fresh executor).
    const fresh = createAwsExecutor({ iam, sts, probe: fast });
    for (const x of [a, b]) {
      expect(await x.executor.verify(x.rc)).toMatchObject({ status: 'absent', method: 'signed-probe' });
      expect(await fresh.verify(x.rc)).toMatchObject({ status: 'absent', method: 'deny-policy-state' });
    }
    expect(policyLocksHeld()).toBe(0);
  });

  it('garbage collection that read the policy before a revocation added its entry does not remove it', async () => {
    const { iam, sts } = adminClients();
    const role = await createRole(iam);
    const b = await issuedOn(role);
    const now = Math.floor(Date.now() / 1000);
    // Only an expired entry: collecting it deletes the policy (live entries would be rewritten).
    await iam.send(
      new PutRolePolicyCommand({
        RoleName: role.RoleName!,
        PolicyName: DENY_POLICY_NAME,
        PolicyDocument: denyDocument([{ userId: `${role.RoleId!}:gl.long-gone`, until: now - 60 }]),
      }),
    );
    hook = secondWriterQueued();
    const gcRead = deferred();
    const bDone = deferred();
    const gc = createAwsExecutor({
      iam: gatedIam(
        async (c) => {
          // GC's write waits until B's revocation finished (no lock) or B queued behind GC's lock.
          if (isDeny(c, 'DeleteRolePolicy') || isDeny(c, 'PutRolePolicy'))
            await Promise.race([bDone.promise, hook!.queued]);
        },
        (c) => {
          if (isDeny(c, 'GetRolePolicy')) gcRead.resolve();
        },
      ),
      sts,
      probe: fast,
    });
    const collecting = gc.collectGarbage(role.Arn!);
    await gcRead.promise;
    const execB = createAwsExecutor({ iam: adminClients().iam, sts, probe: fast });
    const revoking = execB.revoke(b.rc).finally(() => bDone.resolve());
    const [removed, rb] = await Promise.all([collecting, revoking]);
    expect(removed).toBe(1);
    expect(rb.detail).toMatchObject({ method: 'session-deny' });
    expect(await denied(iam, role.RoleName!)).toEqual([userIdOf(role.RoleId!, b.rc)]);
    expect(await execB.verify(b.rc)).toMatchObject({ status: 'absent', method: 'deny-policy-state' });
    expect(await b.executor.verify(b.rc)).toMatchObject({ status: 'absent', method: 'signed-probe' });
    expect(policyLocksHeld()).toBe(0);
  });

  it('verify reports present when the session’s entry was removed behind its back, even while the probe is refused by another Deny; a revoke puts it back', async () => {
    const { iam, sts } = adminClients();
    const role = await createRole(iam);
    const a = await issuedOn(role);
    await a.executor.revoke(a.rc);
    // A writer in another process (no compare-and-set across processes) dropped the entry; a
    // hand-made Deny on the role still refuses the probe (as IAM's propagation delay would for a
    // while after the loss). It may be lifted any time, so it proves nothing about this case.
    await loseEntryUnderAnotherDeny(iam, role.RoleName!);
    expect(await a.executor.verify(a.rc)).toMatchObject({
      status: 'present',
      method: 'deny-policy-state',
      observation: { denyPolicy: 'missing' },
    });
    // Without the credentials (another process): the Deny's state says the same.
    const fresh = createAwsExecutor({ iam, sts, probe: fast });
    expect(await fresh.verify(a.rc)).toMatchObject({ status: 'present', method: 'deny-policy-state' });
    // The service's answer to `present` is another revoke: it writes the entry again.
    await a.executor.revoke(a.rc);
    expect(await denied(iam, role.RoleName!)).toEqual([userIdOf(role.RoleId!, a.rc)]);
    expect(await a.executor.verify(a.rc)).toMatchObject({ status: 'absent', method: 'signed-probe' });
  });

  it('through the service: an entry lost right after the revoke keeps the case from verified; verify retries run out, the target is revoked again and then verified', async () => {
    const { iam, sts } = adminClients();
    const role = await createRole(iam);
    const clock = manualClock();
    const inner = createAwsExecutor({ iam, sts, probe: fast });
    let lost = false;
    const executor: typeof inner = {
      ...inner,
      // Between the revoke (which confirmed its entry) and the first verify, another process's
      // stale write drops the entry; an unrelated Deny still refuses the probe.
      verify: async (ctx) => {
        if (!lost) {
          lost = true;
          await loseEntryUnderAnotherDeny(iam, role.RoleName!);
        }
        return inner.verify(ctx);
      },
    };
    const gl = service([executor], { clock });
    const requested = await gl.request({
      requester: alice,
      subject: deployBot,
      justification: { reason: 'deploy release 43', ticket: 'OPS-43' },
      targets: [
        {
          id: 'deploy',
          system: 'aws',
          resource: role.Arn!,
          permissions: ['iam:ListRoles'],
          params: { roleArn: role.Arn! },
        },
      ],
      durationSeconds: 1800,
    });
    await gl.approve(requested.id, { approver: bob });
    const { grant } = await gl.issue(requested.id);
    const userId = `${grant.targets[0]!.issuance!.ref.roleId}:${grant.targets[0]!.issuance!.ref.sessionName}`;
    const after = await gl.revoke(requested.id, { actor: bob, reason: 'task finished early' });
    expect(after.state).toBe('revoked');
    expect(after.targets[0]!.verification).toMatchObject({ result: 'present', method: 'deny-policy-state' });
    let g = after;
    for (let i = 0; i < 30 && g.state !== 'verified'; i++) {
      clock.advance(1000);
      await gl.sweep();
      g = (await gl.get(requested.id))!;
    }
    expect(g.state).toBe('verified');
    expect(await denied(iam, role.RoleName!)).toEqual([userId]);
    const types = (await gl.history(requested.id)).map((e) => e.type);
    expect(types.filter((t) => t === 'target.revoked').length).toBeGreaterThanOrEqual(2);
  });
});
