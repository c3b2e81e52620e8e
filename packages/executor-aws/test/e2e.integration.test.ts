import { randomUUID } from 'node:crypto';
import { GetUserCommand } from '@aws-sdk/client-iam';
import { ListAccountAssignmentsCommand } from '@aws-sdk/client-sso-admin';
import { createMemoryStore } from '@grantline/store-memory';
import { describe, expect, it } from 'vitest';
import { awsCredentialsOf, createAwsExecutor, feedUsage, syncCloudTrailUsage } from '../src/index.js';
import { lookupEvents, trailRecord } from './fixtures/aws-responses.js';
import { FixtureHandler, fixtureClients } from './support/fixture-handler.js';
import {
  adminClients,
  canListRoles,
  createBoundary,
  createPermissionSet,
  createRole,
  skipWithoutMoto,
} from './support/moto.js';
import { alice, bob, deployBot, manualClock, service, storeBackedService } from './support/service.js';

const fast = { consecutiveRejections: 3, backoffMs: 20, maxBackoffMs: 80 };

describe.skipIf(skipWithoutMoto())('end to end on moto_server (IAM enforcement on)', () => {
  it('assumed-role: real STS credentials work, are denied after early revocation, and the case reaches verified', async () => {
    const { iam, sts } = adminClients();
    const role = await createRole(iam);
    const gl = service([createAwsExecutor({ sts, iam, probe: fast })]);
    const requested = await gl.request({
      requester: alice,
      subject: deployBot,
      justification: { reason: 'deploy release 42', ticket: 'OPS-42' },
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
    const { grant, credentials } = await gl.issue(requested.id);
    const issuance = grant.targets[0]!.issuance!;
    expect(issuance.ref.sessionName).toMatch(/^gl\./);
    expect(issuance.ref.sourceIdentity).toBe('svc-deploy');
    const creds = awsCredentialsOf(issuance, credentials.deploy);
    expect(await canListRoles(creds)).toBe(true);

    const after = await gl.revoke(requested.id, { actor: bob, reason: 'task finished early' });
    expect(after.state).toBe('verified');
    expect(await canListRoles(creds)).toBe(false);
    const v = after.targets[0]!.verification!;
    expect(v.method).toBe('signed-probe');
    const sessions = (v.observation as { sessions: { observations: { outcome: string }[] }[] }).sessions;
    expect(sessions[0]!.observations.map((o) => o.outcome)).toEqual(['denied', 'denied', 'denied']);
    expect(after.targets[0]!.revocation!.detail).toMatchObject({
      method: 'session-deny',
      condition: `aws:userid=${issuance.ref.roleId}:${issuance.ref.sessionName}`,
    });

    // Nothing secret reached the case record or its audit trail.
    const stored = JSON.stringify([await gl.get(requested.id), await gl.history(requested.id)]);
    expect(stored).not.toContain(creds.secretAccessKey);
    expect(stored).not.toContain(creds.sessionToken!);
  });

  it('iam-user: the key works, then is rejected after revocation and the user is gone', async () => {
    const { iam, sts } = adminClients();
    const boundary = await createBoundary(iam);
    const gl = service([createAwsExecutor({ sts, iam, probe: fast })]);
    const requested = await gl.request({
      requester: alice,
      subject: deployBot,
      justification: { reason: 'legacy tool needs a key', ticket: 'OPS-43' },
      targets: [
        {
          id: 'legacy',
          system: 'aws',
          resource: 'iam-user',
          permissions: ['iam:ListRoles'],
          params: { strategy: 'iam-user', permissionsBoundaryArn: boundary },
        },
      ],
      durationSeconds: 600,
    });
    await gl.approve(requested.id, { approver: bob });
    const { grant, credentials } = await gl.issue(requested.id);
    const issuance = grant.targets[0]!.issuance!;
    const user = await iam.send(new GetUserCommand({ UserName: issuance.ref.userName! }));
    expect(user.User!.Path).toBe('/grantline/');
    // moto does not keep a user's permissions boundary; a fixture test checks the CreateUser request.
    const creds = awsCredentialsOf(issuance, credentials.legacy);
    expect(await canListRoles(creds)).toBe(true);

    const done = await gl.complete(requested.id, { actor: deployBot, reason: 'job done' });
    expect(done.state).toBe('verified');
    expect(await canListRoles(creds)).toBe(false);
    await expect(iam.send(new GetUserCommand({ UserName: issuance.ref.userName! }))).rejects.toMatchObject({
      name: 'NoSuchEntityException',
    });
    expect(done.targets[0]!.verification!.observation).toMatchObject({
      user: 'NoSuchEntity',
      accessKeyId: creds.accessKeyId,
    });
  });

  it('a window shorter than 900 s gets a 900 s session and a Deny at natural expiry', async () => {
    const { iam, sts } = adminClients();
    const role = await createRole(iam);
    const clock = manualClock();
    const gl = service([createAwsExecutor({ sts, iam, probe: fast })], { clock });
    const requested = await gl.request({
      requester: alice,
      subject: deployBot,
      justification: { reason: 'short task', ticket: 'OPS-44' },
      targets: [
        {
          id: 'deploy',
          system: 'aws',
          resource: role.Arn!,
          permissions: ['iam:ListRoles'],
          params: { roleArn: role.Arn! },
        },
      ],
      durationSeconds: 300,
    });
    await gl.approve(requested.id, { approver: bob });
    const { grant, credentials } = await gl.issue(requested.id);
    const issuance = grant.targets[0]!.issuance!;
    expect(issuance.ref.durationSeconds).toBe('900');
    expect(Date.parse(issuance.expiresAt)).toBe(Date.parse(grant.window.expiresAt!));
    const creds = awsCredentialsOf(issuance, credentials.deploy);
    expect(await canListRoles(creds)).toBe(true);

    clock.advance(301_000);
    await gl.sweep();
    const swept = await gl.get(requested.id);
    expect(swept.state).toBe('verified');
    expect(swept.revocation!.trigger).toBe('expiry');
    expect(swept.targets[0]!.revocation!.detail).toMatchObject({
      method: 'session-deny',
      sessionOutlivesWindow: true,
    });
    expect(await canListRoles(creds)).toBe(false);
  });

  it('an extension past the session renews it (new credentials) and one revocation denies old and new', async () => {
    const { iam, sts } = adminClients();
    const role = await createRole(iam);
    const gl = service([createAwsExecutor({ sts, iam, probe: fast })], { extension: true });
    const requested = await gl.request({
      requester: alice,
      subject: deployBot,
      justification: { reason: 'long deploy', ticket: 'OPS-46' },
      targets: [
        {
          id: 'deploy',
          system: 'aws',
          resource: role.Arn!,
          permissions: ['iam:ListRoles'],
          params: { roleArn: role.Arn! },
        },
      ],
      durationSeconds: 900,
    });
    await gl.approve(requested.id, { approver: bob });
    const first = await gl.issue(requested.id);
    const old = awsCredentialsOf(first.grant.targets[0]!.issuance!, first.credentials.deploy);
    const ext = await gl.extend(requested.id, {
      actor: deployBot,
      seconds: 1200,
      reason: 'migration is slow',
    });
    const renewed = ext.credentials.deploy!;
    expect(renewed.accessKeyId).toMatch(/^ASIA/);
    expect(renewed.accessKeyId).not.toBe(old.accessKeyId);
    const fresh = {
      accessKeyId: renewed.accessKeyId!,
      secretAccessKey: renewed.secretAccessKey!,
      sessionToken: renewed.sessionToken!,
    };
    expect(await canListRoles(fresh)).toBe(true);
    const sessionEnd = Date.parse(ext.grant.targets[0]!.issuance!.expiresAt);
    expect(sessionEnd).toBeGreaterThan(Date.parse(first.grant.targets[0]!.issuance!.expiresAt) + 1_000_000);

    const done = await gl.revoke(requested.id, { actor: bob, reason: 'stop' });
    expect(done.state).toBe('verified');
    const denyUntil = Date.parse(String(done.targets[0]!.revocation!.detail!.denyUntil));
    expect(denyUntil).toBeGreaterThanOrEqual(sessionEnd);
    // Both sessions were probed with their own credentials.
    expect((done.targets[0]!.verification!.observation as { sessions: unknown[] }).sessions).toHaveLength(2);
    expect(await canListRoles(old)).toBe(false);
    expect(await canListRoles(fresh)).toBe(false);
  });

  it('CloudTrail usage from outside the allowed networks revokes the case automatically (records attributed by access key id)', async () => {
    const { iam, sts } = adminClients();
    const role = await createRole(iam);
    const gl = service([createAwsExecutor({ sts, iam, probe: fast })], { sourceCidrs: ['10.0.0.0/8'] });
    const requested = await gl.request({
      requester: alice,
      subject: deployBot,
      justification: { reason: 'deploy', ticket: 'OPS-45' },
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
    const { grant, credentials } = await gl.issue(requested.id);
    const ref = grant.targets[0]!.issuance!.ref;
    const creds = awsCredentialsOf(grant.targets[0]!.issuance!, credentials.deploy);
    // Trail records (as delivered by a trail; moto does not emulate CloudTrail lookups), keyed by the
    // real access key id moto issued.
    const identity = {
      type: 'AssumedRole',
      principalId: `${ref.roleId}:${ref.sessionName}`,
      arn: ref.assumedRoleArn,
      accessKeyId: ref.accessKeyId,
    };
    const records = [
      {
        eventID: randomUUID(),
        eventTime: new Date().toISOString(),
        eventSource: 'iam.amazonaws.com',
        eventName: 'ListRoles',
        sourceIPAddress: '10.1.2.3',
        userAgent: 'aws-cli/2',
        userIdentity: identity,
      },
      {
        eventID: randomUUID(),
        eventTime: new Date().toISOString(),
        eventSource: 'iam.amazonaws.com',
        eventName: 'ListRoles',
        sourceIPAddress: '203.0.113.9',
        userAgent: 'aws-cli/2',
        userIdentity: identity,
      },
      {
        eventID: randomUUID(),
        eventTime: new Date().toISOString(),
        eventSource: 'iam.amazonaws.com',
        eventName: 'ListRoles',
        sourceIPAddress: '203.0.113.10',
        userIdentity: { ...identity, accessKeyId: 'ASIAOTHERCASE0000000', principalId: 'AROAOTHER:other' },
      },
    ];
    const fed = await feedUsage(gl, records, [grant]);
    expect(fed.recorded).toBe(2);
    expect(fed.skipped).toEqual([{ eventId: records[2]!.eventID, reason: 'no-matching-case' }]);
    expect(fed.revoked).toEqual([requested.id]);
    const g = await gl.get(requested.id);
    expect(g.revocation!.trigger).toBe('violation');
    expect(g.state).toBe('verified');
    expect(await canListRoles(creds)).toBe(false);
    const history = await gl.history(requested.id);
    expect(history.filter((e) => e.type === 'usage').map((e) => e.data.sourceIp)).toEqual([
      '10.1.2.3',
      '203.0.113.9',
    ]);
  });
});

describe.skipIf(skipWithoutMoto())('Identity Center end to end on moto_server', () => {
  it('overlap: two active cases share one assignment; it survives the first revocation and goes with the last', async () => {
    const { iam, sts, ssoAdmin } = adminClients();
    const { instanceArn, permissionSetArn } = await createPermissionSet(ssoAdmin);
    const store = createMemoryStore();
    const gl = storeBackedService({ sts, iam, ssoAdmin }, store);
    const principalId = randomUUID();
    const target = {
      id: 'console',
      system: 'aws',
      resource: 'aws-account:123456789012',
      params: {
        strategy: 'identity-center',
        instanceArn,
        permissionSetArn,
        accountId: '123456789012',
        principalType: 'USER',
        principalId,
      },
    };
    const listed = async () =>
      (
        (
          await ssoAdmin.send(
            new ListAccountAssignmentsCommand({
              InstanceArn: instanceArn,
              AccountId: '123456789012',
              PermissionSetArn: permissionSetArn,
            }),
          )
        ).AccountAssignments ?? []
      ).filter((a) => a.PrincipalId === principalId).length;
    const open = async (ticket: string) => {
      const c = await gl.request({
        requester: alice,
        subject: deployBot,
        justification: { reason: 'console access', ticket },
        targets: [target],
        durationSeconds: 900,
      });
      await gl.approve(c.id, { approver: bob });
      return (await gl.issue(c.id)).grant;
    };
    const a = await open('OPS-50');
    const b = await open('OPS-51');
    expect(b.targets[0]!.issuance!.ref.sharedWith).toBe(a.id);
    expect(await listed()).toBe(1);

    const ra = await gl.revoke(a.id, { actor: bob, reason: 'done' });
    expect(ra.state).toBe('verified');
    expect(ra.targets[0]!.verification).toMatchObject({
      method: 'assignment-handoff',
      observation: { heldBy: [b.id] },
    });
    expect(await listed()).toBe(1);

    const rb = await gl.revoke(b.id, { actor: bob, reason: 'done' });
    expect(rb.state).toBe('verified');
    expect(rb.targets[0]!.verification).toMatchObject({
      method: 'assignment-state',
      observation: { assignment: 'absent' },
    });
    expect(await listed()).toBe(0);
  });
});

describe.skipIf(skipWithoutMoto())('crash recovery through the service on moto_server', () => {
  it.each([
    ['assumed-role', false],
    ['assumed-role', true],
    ['iam-user', false],
    ['iam-user', true],
  ] as const)(
    '%s (new process: %s): AWS issued but the case never recorded it; the sweeper rolls back and the credential is dead',
    async (strategy, restart) => {
      const { iam, sts } = adminClients();
      const params =
        strategy === 'iam-user'
          ? { strategy, permissionsBoundaryArn: await createBoundary(iam) }
          : { roleArn: (await createRole(iam)).Arn! };
      const clock = manualClock();
      const store = createMemoryStore();
      // The process dies right at the write that would record the issuance: from then on, until
      // the restart below, neither its store writes nor its AWS calls happen (so the service's own
      // removal of a late issuance cannot run either; a dead process does nothing).
      let crash = true;
      let dead = false;
      const crashing = new Proxy(store, {
        get(target, prop, receiver) {
          if (prop === 'compareAndSet') {
            return async (...args: Parameters<typeof store.compareAndSet>) => {
              if (crash && args[0].state === 'issued') {
                crash = false;
                dead = true;
              }
              if (dead) throw new Error('simulated crash');
              return store.compareAndSet(...args);
            };
          }
          return Reflect.get(target, prop, receiver);
        },
      });
      const seen: Record<string, string>[] = [];
      const executor = createAwsExecutor({ sts, iam, probe: fast });
      const whileAlive =
        <A extends unknown[], R>(fn: (...a: A) => Promise<R>) =>
        async (...a: A) => {
          if (dead) throw new Error('simulated crash');
          return fn(...a);
        };
      const spy = {
        ...executor,
        issue: async (ctx: Parameters<typeof executor.issue>[0]) => {
          const res = await executor.issue(ctx);
          seen.push({ ...res.ref, ...res.secret });
          return res;
        },
        revoke: whileAlive(executor.revoke),
        verify: whileAlive(executor.verify),
      };
      const gl = service([spy], { clock, store: crashing });
      const c = await gl.request({
        requester: alice,
        subject: deployBot,
        justification: { reason: 'crash test', ticket: 'OPS-60' },
        targets: [{ id: 't', system: 'aws', resource: 'x', permissions: ['iam:ListRoles'], params }],
        durationSeconds: 1800,
      });
      await gl.approve(c.id, { approver: bob });
      await expect(gl.issue(c.id)).rejects.toMatchObject({ code: 'ERR_ISSUANCE_FAILED' });
      dead = false;
      const stuck = await gl.get(c.id);
      expect(stuck.state).toBe('issuing');
      expect(stuck.targets[0]!.issuance).toBeUndefined();
      const leaked = {
        accessKeyId: seen[0]!.accessKeyId!,
        secretAccessKey: seen[0]!.secretAccessKey!,
        ...(seen[0]!.sessionToken ? { sessionToken: seen[0]!.sessionToken } : {}),
      };
      expect(await canListRoles(leaked)).toBe(true);

      clock.advance(61_000);
      // A restart loses the executor's memory (the held session credentials) and the service object.
      const sweeper = restart
        ? service([createAwsExecutor({ sts, iam, probe: fast })], { clock, store })
        : gl;
      await sweeper.sweep();
      const after = await sweeper.get(c.id);
      expect(after.revocation?.trigger).toBe('rollback');
      expect(['failed', 'verified']).toContain(after.state);
      const revocation = after.targets[0]!.revocation!;
      if (strategy === 'assumed-role' && restart) {
        // Nothing tells a new process whether AssumeRole ran: the Deny is written as a precaution,
        // and verification observes the Deny's state (there are no credentials left to probe with).
        expect(revocation.detail).toMatchObject({ method: 'session-deny', precautionary: true });
        expect(after.targets[0]!.verification).toMatchObject({
          result: 'absent',
          method: 'deny-policy-state',
        });
      } else {
        expect(revocation.alreadyGone).not.toBe(true);
        expect(after.targets[0]!.verification?.result).toBe('absent');
      }
      expect(await canListRoles(leaked)).toBe(false);
    },
  );
});

describe.skipIf(skipWithoutMoto())(
  'CloudTrail pull on a moto-issued session (fixture: CloudTrail lookups, which moto does not emulate)',
  () => {
    it('fixture: syncCloudTrailUsage looks up the issued key, records each event once across overlapping pulls, and a violation revokes', async () => {
      const { iam, sts } = adminClients();
      const role = await createRole(iam);
      const gl = service([createAwsExecutor({ sts, iam, probe: fast })], {
        sourceCidrs: ['198.51.100.0/24'],
      });
      const c = await gl.request({
        requester: alice,
        subject: deployBot,
        justification: { reason: 'deploy', ticket: 'OPS-70' },
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
      await gl.approve(c.id, { approver: bob });
      const { grant } = await gl.issue(c.id);
      const key = grant.targets[0]!.issuance!.ref.accessKeyId!;
      const inside = trailRecord({
        eventId: 'ev-1',
        eventName: 'ListRoles',
        sourceIp: '198.51.100.20',
        accessKeyId: key,
      });
      const probe = trailRecord({
        eventId: 'ev-2',
        eventName: 'GetRole',
        sourceIp: '192.0.2.50',
        accessKeyId: key,
        userAgent: `aws-sdk-js/3 grantline-probe/${c.id}`,
      });
      const outside = trailRecord({
        eventId: 'ev-3',
        eventName: 'ListRoles',
        sourceIp: '203.0.113.66',
        accessKeyId: key,
      });
      const handler = new FixtureHandler({ LookupEvents: lookupEvents([inside, probe]) });
      const { cloudtrail } = fixtureClients(handler);

      const first = await syncCloudTrailUsage(gl, cloudtrail, [grant], new Date(Date.now() - 60_000));
      expect(first).toMatchObject({
        recorded: 1,
        revoked: [],
        skipped: [{ eventId: 'ev-2', reason: 'probe' }],
      });
      expect(handler.calls('LookupEvents')[0]!.json).toMatchObject({
        LookupAttributes: [{ AttributeKey: 'AccessKeyId', AttributeValue: key }],
      });

      handler.on('LookupEvents', lookupEvents([inside, probe, outside]));
      const second = await syncCloudTrailUsage(
        gl,
        cloudtrail,
        [await gl.get(c.id)],
        new Date(Date.now() - 60_000),
      );
      expect(second.recorded).toBe(1);
      expect(second.skipped).toContainEqual({ eventId: 'ev-1', reason: 'already-recorded' });
      expect(second.revoked).toEqual([c.id]);
      const after = await gl.get(c.id);
      expect(after.revocation!.trigger).toBe('violation');
      expect(after.state).toBe('verified');
      const used = (await gl.history(c.id)).filter((e) => e.type === 'usage').map((e) => e.data.sourceIp);
      expect(used).toEqual(['198.51.100.20', '203.0.113.66']);
    });
  },
);
