import { isGrantlineError } from '@grantline/core';
import { describe, expect, it } from 'vitest';
import {
  awsParamsSchema,
  createAwsExecutor,
  DENY_BUCKET_SECONDS,
  DENY_POLICY_NAME,
  denyDocument,
  parseDenyDocument,
  deriveNames,
  type AwsParams,
} from '../src/index.js';
import * as f from './fixtures/aws-responses.js';
import { FixtureHandler, fixtureClients } from './support/fixture-handler.js';
import { awsCase, ctxOf } from './support/grants.js';

const parse = (v: unknown) => awsParamsSchema.parse(v) as AwsParams;
const target = {
  id: 'deploy',
  resource: f.ROLE_ARN,
  permissions: ['iam:ListRoles', 's3:GetObject'],
  params: { roleArn: f.ROLE_ARN },
};

function setup(handler: FixtureHandler, extra: Partial<Parameters<typeof createAwsExecutor>[0]> = {}) {
  const sleeps: number[] = [];
  const { sts, iam } = fixtureClients(handler);
  const executor = createAwsExecutor({
    sts,
    iam,
    probe: { consecutiveRejections: 3, backoffMs: 20, maxBackoffMs: 80 },
    sleep: async (ms) => void sleeps.push(ms),
    ...extra,
  });
  return { executor, sleeps };
}

/** Issues through recorded responses; the session expires at `expiration`. */
async function issued(
  opts: {
    seconds?: number;
    maxSession?: number;
    cidrs?: string[];
    baseline?: 'ok' | 'denied';
    start?: Date;
  } = {},
) {
  const start = opts.start ?? new Date();
  const grant = awsCase(target, {
    start,
    seconds: opts.seconds ?? 1800,
    ...(opts.cidrs ? { sourceCidrs: opts.cidrs } : {}),
  });
  const names = deriveNames(grant, grant.targets[0]!, 'test');
  const seconds = Math.max(900, Math.min(opts.seconds ?? 1800, opts.maxSession ?? 3600));
  const handler = new FixtureHandler({
    GetRole:
      opts.baseline === 'denied'
        ? [
            f.getRole(opts.maxSession),
            f.queryError(
              'AccessDenied',
              'not authorized to perform: iam:GetRole because no identity-based policy allows the iam:GetRole action',
            ),
          ]
        : f.getRole(opts.maxSession),
    AssumeRole: f.assumeRole({
      sessionName: names.principalName,
      expiration: new Date(start.getTime() + seconds * 1000),
      sourceIdentity: 'svc-deploy',
    }),
  });
  const s = setup(handler);
  const ctx = ctxOf(grant, parse, start);
  const res = await s.executor.issue(ctx);
  return { ...s, handler, grant, ctx, res, names };
}

describe('assumed-role strategy (fixture: recorded AWS responses through the real SDK clients)', () => {
  it('fixture: AssumeRole carries the derived session name, SourceIdentity, case tags, a session policy narrowed to the grant and its source CIDRs', async () => {
    const { handler, res, names, grant } = await issued({ cidrs: ['10.0.0.0/8', '2001:db8::/32'] });
    const call = handler.calls('AssumeRole')[0]!.params;
    expect(call.get('RoleArn')).toBe(f.ROLE_ARN);
    expect(call.get('RoleSessionName')).toBe(names.principalName);
    expect(call.get('SourceIdentity')).toBe('svc-deploy');
    expect(call.get('DurationSeconds')).toBe('1800');
    const tags = Object.fromEntries(
      [1, 2, 3, 4].map((i) => [call.get(`Tags.member.${i}.Key`), call.get(`Tags.member.${i}.Value`)]),
    );
    expect(tags).toEqual({
      'grantline:case': grant.id,
      'grantline:target': 'deploy',
      'grantline:requester': 'ci-bot',
      'grantline:ticket': 'OPS-1',
    });
    const policy = JSON.parse(call.get('Policy')!);
    expect(policy.Statement[0]).toEqual({
      Sid: 'Grant',
      Effect: 'Allow',
      Action: ['iam:ListRoles', 's3:GetObject'],
      Resource: '*',
      Condition: { IpAddress: { 'aws:SourceIp': ['10.0.0.0/8', '2001:db8::/32'] } },
    });
    expect(policy.Statement[1]).toEqual({
      Sid: 'GrantlineProbe',
      Effect: 'Allow',
      Action: 'iam:GetRole',
      Resource: f.ROLE_ARN,
    });
    // The secret parts are returned once, and the reference carries none of them.
    expect(res.secret).toEqual({ secretAccessKey: f.SESSION_SECRET, sessionToken: f.SESSION_TOKEN });
    expect(JSON.stringify(res.ref)).not.toContain(f.SESSION_SECRET);
    expect(res.ref).toMatchObject({
      accessKeyId: f.SESSION_KEY_ID,
      roleId: f.ROLE_ID,
      sessionName: names.principalName,
      probeBaseline: 'accepted',
    });
    // The baseline probe ran with its own user agent, signed with the session's key.
    const probe = handler.calls('GetRole')[1]!;
    expect(probe.headers['user-agent'] + (probe.headers['x-amz-user-agent'] ?? '')).toContain(
      `grantline-probe/${grant.id}`,
    );
    expect(probe.headers.authorization).toContain(`Credential=${f.SESSION_KEY_ID}/`);
  });

  it('fixture: DurationSeconds is clamped to the role maximum and to 900 s for short windows', async () => {
    const long = await issued({ seconds: 7200, maxSession: 3600 });
    expect(long.handler.calls('AssumeRole')[0]!.params.get('DurationSeconds')).toBe('3600');
    expect(long.res.expiresAt.getTime()).toBeLessThan(Date.parse(long.grant.window.expiresAt!));
    const short = await issued({ seconds: 300 });
    expect(short.handler.calls('AssumeRole')[0]!.params.get('DurationSeconds')).toBe('900');
    expect(short.res.expiresAt.toISOString()).toBe(short.grant.window.expiresAt);
    expect(short.res.ref.sessionExpiresAt).not.toBe(short.grant.window.expiresAt);
  });

  it('fixture: input limits are checked before any AWS call', async () => {
    const bad = [
      awsCase(target, { subjectId: 'svc deploy' }),
      awsCase(target, { subjectId: 'aws:impostor' }),
      awsCase(target, { ticket: 'OPS#1' }),
      awsCase({ ...target, permissions: [] }),
      awsCase({
        ...target,
        permissions: Array.from({ length: 90 }, (_, i) => `s3:GetObjectVersionAttributes${i}`),
      }),
      { ...awsCase(target), id: '' },
    ];
    for (const grant of bad) {
      const handler = new FixtureHandler();
      const { executor } = setup(handler);
      const err = await executor.issue(ctxOf(grant, parse)).catch((e: unknown) => e);
      expect(isGrantlineError(err) && err.code).toBe('ERR_VALIDATION');
      expect(handler.seen).toHaveLength(0);
    }
  });

  it('fixture: session expiry: a session ending with the window needs no call at natural expiry; the probe then meets ExpiredToken', async () => {
    const { handler, executor, grant, res } = await issued({ seconds: 1800 });
    const seen = handler.seen.length;
    const rc = {
      ...ctxOf(grant, parse, new Date(res.expiresAt.getTime() + 10)),
      issuance: { ref: res.ref, issuedAt: grant.window.issuedAt!, expiresAt: res.expiresAt.toISOString() },
      trigger: 'expiry',
      reason: 'window ended',
    };
    const out = await executor.revoke(rc);
    expect(out).toMatchObject({ alreadyGone: true, detail: { method: 'natural-expiry' } });
    expect(handler.seen.length).toBe(seen);
    handler.on(
      'GetRole',
      f.queryError('ExpiredToken', 'The security token included in the request is expired'),
    );
    const v = await executor.verify(rc);
    expect(v.status).toBe('absent');
    expect(v.method).toBe('signed-probe');
    const obs = v.observation as { sessions: { observations: { outcome: string }[] }[] };
    expect(obs.sessions[0]!.observations.map((o) => o.outcome)).toEqual(['expired', 'expired', 'expired']);
  });

  it('fixture: a process that holds no credentials reports an expired session from its recorded expiry, without calls', async () => {
    const { grant, res } = await issued({ seconds: 1800 });
    const handler = new FixtureHandler();
    const { executor } = setup(handler);
    const rc = {
      ...ctxOf(grant, parse, new Date(Date.parse(res.ref.sessionExpiresAt!) + 5_000)),
      issuance: { ref: res.ref, issuedAt: grant.window.issuedAt!, expiresAt: res.expiresAt.toISOString() },
      trigger: 'expiry',
      reason: 'x',
    };
    const v = await executor.verify(rc);
    expect(v).toMatchObject({ status: 'absent', method: 'session-expired' });
    expect(handler.seen).toHaveLength(0);
  });

  it('fixture: condition keys: each Deny names exactly one session by aws:userid, lasts past its expiry, and another case on the same role gets its own', async () => {
    const a = await issued();
    const b = await issued();
    const denied: { userId: string; until: number }[][] = [];
    for (const x of [a, b]) {
      // The role has no Deny policy yet (the covering check and the read before the write); after
      // the write, reads answer with what was written.
      const noDenyPolicy = f.queryError('NoSuchEntity', 'The role policy cannot be found.', 404);
      const written = {
        get body() {
          const put = x.handler.calls('PutRolePolicy')[0]!.params;
          return f.getRolePolicy(DENY_POLICY_NAME, put.get('PolicyDocument')!).body;
        },
      };
      x.handler
        .on('ListRolePolicies', f.listRolePolicies(['workload']))
        .on('GetRolePolicy', [noDenyPolicy, noDenyPolicy, written])
        .on('PutRolePolicy', f.empty('PutRolePolicy'));
      const rc = {
        ...x.ctx,
        issuance: {
          ref: x.res.ref,
          issuedAt: x.grant.window.issuedAt!,
          expiresAt: x.res.expiresAt.toISOString(),
        },
        trigger: 'manual',
        reason: 'early',
      };
      const out = await x.executor.revoke(rc);
      expect(out.alreadyGone).toBe(false);
      expect(x.handler.calls('PutRolePolicy')).toHaveLength(1);
      const put = x.handler.calls('PutRolePolicy')[0]!.params;
      expect(put.get('PolicyName')).toBe(DENY_POLICY_NAME);
      const sessions = parseDenyDocument(put.get('PolicyDocument')!);
      expect(sessions).toHaveLength(1);
      expect(sessions[0]!.until * 1000).toBeGreaterThanOrEqual(Date.parse(x.res.ref.sessionExpiresAt!));
      expect(sessions[0]!.until % DENY_BUCKET_SECONDS).toBe(0);
      expect(put.get('PolicyDocument')).toBe(denyDocument(sessions));
      denied.push(sessions);
    }
    expect(a.names.principalName).not.toBe(b.names.principalName);
    expect(denied[0]![0]!.userId).toBe(`${f.ROLE_ID}:${a.names.principalName}`);
    expect(denied[1]![0]!.userId).toBe(`${f.ROLE_ID}:${b.names.principalName}`);
  });

  it('fixture: IAM is eventually consistent: an acceptance after a rejection reports present; three rejections in a row, with backoff, report absent', async () => {
    const { handler, executor, grant, res, sleeps, names } = await issued();
    const rc = {
      ...ctxOf(grant, parse),
      issuance: { ref: res.ref, issuedAt: grant.window.issuedAt!, expiresAt: res.expiresAt.toISOString() },
      trigger: 'manual',
      reason: 'x',
    };
    const explicit =
      'User: arn:aws:sts::123456789012:assumed-role/demo/x is not authorized to perform: iam:GetRole on resource: role demo with an explicit deny in an identity-based policy';
    handler.on('GetRole', [f.queryError('AccessDenied', explicit), f.getRole()]);
    const first = await executor.verify(rc);
    expect(first.status).toBe('present');
    expect(
      (
        first.observation as { sessions: { observations: { outcome: string }[] }[] }
      ).sessions[0]!.observations.map((o) => o.outcome),
    ).toEqual(['denied', 'accepted']);
    handler.on('GetRole', [
      f.queryError('AccessDenied', explicit),
      f.queryError('AccessDenied', explicit),
      f.queryError('AccessDenied', explicit),
    ]);
    // Three explicit denies count once the session's entry is seen in the Deny policy too.
    const until = Math.ceil(Date.parse(res.ref.sessionExpiresAt!) / 1000) + 300;
    handler.on(
      'GetRolePolicy',
      f.getRolePolicy(
        DENY_POLICY_NAME,
        denyDocument([{ userId: `${f.ROLE_ID}:${names.principalName}`, until }]),
      ),
    );
    sleeps.length = 0;
    const second = await executor.verify(rc);
    expect(second.status).toBe('absent');
    const obs = (
      second.observation as { sessions: { observations: { outcome: string; explicitDeny?: boolean }[] }[] }
    ).sessions[0]!.observations;
    expect(obs.map((o) => [o.outcome, o.explicitDeny])).toEqual([
      ['denied', true],
      ['denied', true],
      ['denied', true],
    ]);
    expect(sleeps).toEqual([20, 40]);
  });

  it('fixture: an implicit deny (AWS: "no identity-based policy allows") is not taken as proof of revocation', async () => {
    const { handler, executor, grant, res } = await issued();
    const rc = {
      ...ctxOf(grant, parse),
      issuance: { ref: res.ref, issuedAt: grant.window.issuedAt!, expiresAt: res.expiresAt.toISOString() },
      trigger: 'manual',
      reason: 'x',
    };
    const implicit =
      'User: arn:aws:sts::123456789012:assumed-role/demo/x is not authorized to perform: iam:GetRole on resource: role demo because no identity-based policy allows the iam:GetRole action';
    handler.on('GetRole', f.queryError('AccessDenied', implicit));
    const v = await executor.verify(rc);
    expect(v.status).toBe('present');
    expect(
      (v.observation as { sessions: { observations: { implicitDeny?: boolean }[] }[] }).sessions[0]!
        .observations[0]!.implicitDeny,
    ).toBe(true);
  });

  it('fixture: after a restart, verify checks the Deny policy state, and a Deny naming another session does not count', async () => {
    const { grant, res, names } = await issued();
    const policyName = `grantline-deny.${Math.ceil(Date.parse(res.ref.sessionExpiresAt!) / 1000) + 300}.${names.principalName}`;
    const rc = {
      ...ctxOf(grant, parse),
      issuance: { ref: res.ref, issuedAt: grant.window.issuedAt!, expiresAt: res.expiresAt.toISOString() },
      trigger: 'manual',
      reason: 'x',
    };
    const until = Math.ceil(Date.parse(res.ref.sessionExpiresAt!) / 1000) + 300;
    const noDenyPolicy = f.queryError('NoSuchEntity', 'The role policy cannot be found.', 404);
    const good = new FixtureHandler({
      GetRole: f.getRole(),
      ListRolePolicies: f.listRolePolicies(['workload', DENY_POLICY_NAME]),
      GetRolePolicy: f.getRolePolicy(
        DENY_POLICY_NAME,
        denyDocument([
          { userId: `${f.ROLE_ID}:gl.someone-else`, until },
          { userId: `${f.ROLE_ID}:${names.principalName}`, until },
        ]),
      ),
    });
    const v = await setup(good).executor.verify(rc);
    expect(v).toMatchObject({
      status: 'absent',
      method: 'deny-policy-state',
      observation: { policyName: DENY_POLICY_NAME },
    });
    const forged = new FixtureHandler({
      GetRole: f.getRole(),
      ListRolePolicies: f.listRolePolicies([DENY_POLICY_NAME]),
      GetRolePolicy: f.getRolePolicy(
        DENY_POLICY_NAME,
        denyDocument([{ userId: `${f.ROLE_ID}:gl.someone-else`, until }]),
      ),
    });
    expect((await setup(forged).executor.verify(rc)).status).toBe('present');
    // A per-session Deny policy written by an earlier version still counts.
    const legacy = new FixtureHandler({
      GetRole: f.getRole(),
      ListRolePolicies: f.listRolePolicies(['workload', policyName]),
      GetRolePolicy: [
        noDenyPolicy,
        f.getRolePolicy(
          policyName,
          JSON.stringify({
            Version: '2012-10-17',
            Statement: [
              {
                Sid: 'GrantlineRevokedSession',
                Effect: 'Deny',
                Action: '*',
                Resource: '*',
                Condition: { StringEquals: { 'aws:userid': `${f.ROLE_ID}:${names.principalName}` } },
              },
            ],
          }),
        ),
      ],
    });
    expect(await setup(legacy).executor.verify(rc)).toMatchObject({
      status: 'absent',
      observation: { policyName },
    });
    const missing = new FixtureHandler({
      GetRole: f.getRole(),
      ListRolePolicies: f.listRolePolicies(['workload']),
      GetRolePolicy: noDenyPolicy,
    });
    expect((await setup(missing).executor.verify(rc)).status).toBe('present');
  });

  it('fixture: a baseline probe denied at issue makes verify rely on the Deny policy state, never on a rejection', async () => {
    const { handler, executor, grant, res } = await issued({ baseline: 'denied' });
    expect(res.ref.probeBaseline).toBe('denied');
    handler
      .on('ListRolePolicies', f.listRolePolicies([]))
      .on('GetRolePolicy', f.queryError('NoSuchEntity', 'The role policy cannot be found.', 404))
      .on('GetRole', f.getRole());
    const rc = {
      ...ctxOf(grant, parse),
      issuance: { ref: res.ref, issuedAt: grant.window.issuedAt!, expiresAt: res.expiresAt.toISOString() },
      trigger: 'manual',
      reason: 'x',
    };
    const before = handler.calls('GetRole').length;
    const v = await executor.verify(rc);
    // The probe would have been rejected (AccessDenied), but that proves nothing here.
    expect(v).toMatchObject({ status: 'present', method: 'deny-policy-state' });
    expect(handler.calls('GetRole').length).toBe(before + 1); // the role lookup only, no probe
  });

  it('fixture: garbage collection removes only expired Denies: per-session policies of earlier versions, and sessions of the Deny policy', async () => {
    const past = Math.floor(Date.now() / 1000) - 60;
    const future = Math.floor(Date.now() / 1000) + 3600;
    const handler = new FixtureHandler({
      ListRolePolicies: f.listRolePolicies([
        'workload',
        DENY_POLICY_NAME,
        `grantline-deny.${past}.gl.old`,
        `grantline-deny.${future}.gl.live`,
      ]),
      GetRolePolicy: f.getRolePolicy(
        DENY_POLICY_NAME,
        denyDocument([
          { userId: `${f.ROLE_ID}:gl.old`, until: past },
          { userId: `${f.ROLE_ID}:gl.live`, until: future },
        ]),
      ),
      DeleteRolePolicy: f.empty('DeleteRolePolicy'),
      PutRolePolicy: f.empty('PutRolePolicy'),
    });
    const removed = await setup(handler).executor.collectGarbage(f.ROLE_ARN);
    expect(removed).toBe(2);
    expect(handler.calls('DeleteRolePolicy').map((c) => c.params.get('PolicyName'))).toEqual([
      `grantline-deny.${past}.gl.old`,
    ]);
    const put = handler.calls('PutRolePolicy')[0]!.params;
    expect(put.get('PolicyName')).toBe(DENY_POLICY_NAME);
    expect(parseDenyDocument(put.get('PolicyDocument')!)).toEqual([
      { userId: `${f.ROLE_ID}:gl.live`, until: future },
    ]);
  });
});
