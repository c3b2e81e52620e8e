import { createMemoryStore } from '@grantline/store-memory';
import { describe, expect, it } from 'vitest';
import {
  type DecisionReason,
  type PolicyInput,
  type PrincipalInput,
  compilePolicy,
  createGrantline,
  createTokenAuthority,
  isGrantlineError,
} from '../src/index.js';
import { ciJob, manualClock, setup } from './helpers.js';

// Policy features the service tests do not reach: rule matching by requester roles and subject kind,
// the change-record reference, and the usage time window. Each test asserts the machine-readable
// reasons (code and path), not just that something was refused.

const policy: PolicyInput = {
  id: 'db-jit',
  version: '1',
  owner: 'iam-governance',
  rules: [
    {
      // A DBA may get access for a human (themselves or a colleague): one owner approval.
      id: 'db-human',
      risk: 'medium',
      match: {
        systems: ['token'],
        resources: ['api://db*'],
        subjectKinds: ['human'],
        requesterRoles: ['dba'],
      },
      operator: 'platform-ops',
      maxDurationSeconds: 3600,
      approvals: { count: 1, roles: ['service-owner'] },
    },
    {
      // Anyone may ask for a workload's access to the database, but it needs dual control.
      id: 'db-workload',
      risk: 'high',
      match: { systems: ['token'], resources: ['api://db*'], subjectKinds: ['workload'] },
      operator: 'platform-ops',
      maxDurationSeconds: 900,
      approvals: { count: 2, roles: ['security-officer', 'service-owner'], distinctRoles: true },
    },
    {
      // Production changes need a change record in the CHG format.
      id: 'prod-change',
      risk: 'medium',
      match: { systems: ['token'], resources: ['api://prod/*'] },
      operator: 'platform-ops',
      maxDurationSeconds: 3600 * 12,
      require: { changeRecord: { pattern: '^CHG\\d{7}$' } },
      approvals: { count: 1, roles: ['service-owner'] },
    },
    {
      // Staging needs a change record of any shape.
      id: 'staging-change',
      risk: 'low',
      match: { systems: ['token'], resources: ['api://staging/*'] },
      operator: 'platform-ops',
      maxDurationSeconds: 3600,
      require: { changeRecord: {} },
      approvals: { count: 1, roles: ['service-owner'] },
    },
    {
      // Reporting access may be used on weekdays during office hours (UTC) only.
      id: 'reporting',
      risk: 'medium',
      match: { systems: ['token'], resources: ['api://reports'] },
      operator: 'platform-ops',
      maxDurationSeconds: 3600 * 24 * 7,
      approvals: { count: 1, roles: ['service-owner'] },
      constraints: { timeWindow: { days: [1, 2, 3, 4, 5], startHour: 8, endHour: 18 } },
    },
  ],
};

const dana: PrincipalInput = { id: 'dana', kind: 'human', roles: ['dba'], teams: ['data'] };
const eve: PrincipalInput = { id: 'eve', kind: 'human', roles: ['engineer'], teams: ['payments'] };
const bob: PrincipalInput = { id: 'bob', kind: 'human', roles: ['analyst'], teams: ['finance'] };
const job: PrincipalInput = { id: 'ci:etl', kind: 'workload', roles: ['etl'] };
const olga: PrincipalInput = { id: 'olga', kind: 'human', roles: ['service-owner'], teams: ['data'] };

const db = { id: 'db', system: 'token', resource: 'api://db/orders' };

async function env(start?: string) {
  const clock = manualClock(start);
  const store = createMemoryStore();
  const tokens = await createTokenAuthority({ issuer: 'https://grantline.test', clock });
  const gl = createGrantline({ store, policy, executors: [tokens.executor], clock });
  return { clock, store, tokens, gl };
}

/** The error code and the reasons (code and path) of a refused call. */
async function refusal(
  p: Promise<unknown>,
): Promise<{ code: string; reasons: Omit<DecisionReason, 'message'>[] }> {
  try {
    await p;
  } catch (err) {
    if (!isGrantlineError(err)) throw err;
    const reasons = ((err.details.reasons as DecisionReason[] | undefined) ?? []).map((r) => ({
      code: r.code,
      ...(r.path ? { path: r.path } : {}),
    }));
    return { code: err.code, reasons };
  }
  throw new Error('expected a rejection');
}

describe('rule matching by requester roles and subject kind', () => {
  it('a DBA asking for a human subject is governed by the human rule', async () => {
    const { gl } = await env();
    const g = await gl.request({
      requester: dana,
      subject: bob,
      justification: { reason: 'fix a report query' },
      targets: [db],
      durationSeconds: 1800,
    });
    expect(g.policy.ruleId).toBe('db-human');
    expect(g.policy.approvals).toEqual({ count: 1, roles: ['service-owner'], distinctRoles: false });
  });

  it('the same DBA asking for a workload skips the human-only rule (subjectKinds) and gets dual control', async () => {
    const { gl } = await env();
    const g = await gl.request({
      requester: dana,
      subject: job,
      justification: { reason: 'backfill' },
      targets: [db],
      durationSeconds: 900,
    });
    expect(g.policy.ruleId).toBe('db-workload');
    expect(g.policy.risk).toBe('high');
    expect(g.policy.approvals.count).toBe(2);
    // The workload rule's cap applies, not the human rule's.
    expect(
      await refusal(
        gl.request({
          requester: dana,
          subject: job,
          justification: { reason: 'backfill' },
          targets: [db],
          durationSeconds: 1800,
        }),
      ),
    ).toEqual({
      code: 'ERR_POLICY_DENIED',
      reasons: [{ code: 'DURATION_EXCEEDS_MAX', path: ['durationSeconds'] }],
    });
  });

  it('a requester without a matching role (requesterRoles) finds no rule for a human subject; nothing is written', async () => {
    const { gl, store } = await env();
    const before = store.dump();
    expect(
      await refusal(
        gl.request({
          requester: eve,
          subject: bob,
          justification: { reason: 'curious' },
          targets: [db],
          durationSeconds: 600,
        }),
      ),
    ).toEqual({ code: 'ERR_POLICY_DENIED', reasons: [{ code: 'NO_MATCHING_RULE', path: ['targets', 0] }] });
    // Asking for oneself does not help: the requester's roles are what matter, not the subject's.
    expect(
      await refusal(
        gl.request({
          requester: eve,
          subject: { ...dana, id: 'dana-as-subject' },
          justification: { reason: 'curious' },
          targets: [db],
          durationSeconds: 600,
        }),
      ),
    ).toEqual({ code: 'ERR_POLICY_DENIED', reasons: [{ code: 'NO_MATCHING_RULE', path: ['targets', 0] }] });
    expect(store.dump()).toBe(before);
  });

  it('in a multi-target case the reason names the target no rule admits', async () => {
    const { gl } = await env();
    expect(
      await refusal(
        gl.request({
          requester: eve,
          subject: bob,
          justification: { reason: 'quarter close', changeRecord: 'CHG0000001' },
          targets: [{ id: 'prod', system: 'token', resource: 'api://prod/ledger' }, db],
          durationSeconds: 600,
        }),
      ),
    ).toEqual({ code: 'ERR_POLICY_DENIED', reasons: [{ code: 'NO_MATCHING_RULE', path: ['targets', 1] }] });
  });
});

describe('a target that names no permissions', () => {
  // It asks for whatever its executor grants by default, which is not "only the listed
  // permissions": a rule or template that limits permissions never governs it.
  it('is governed by the unrestricted dual-control rule, not by a read-only rule listed before it', async () => {
    const tokens = await createTokenAuthority({ issuer: 'x' });
    const gl = createGrantline({
      store: createMemoryStore(),
      executors: [tokens.executor],
      policy: {
        id: 'p',
        version: '1',
        owner: 'gov',
        rules: [
          {
            id: 'read-only',
            risk: 'medium',
            match: { systems: ['token'], resources: ['api://payments'], permissions: ['payments:read'] },
            operator: 'ops',
            maxDurationSeconds: 3600,
            approvals: { count: 1, roles: ['service-owner'] },
          },
          {
            id: 'everything-else',
            risk: 'high',
            match: { systems: ['token'], resources: ['api://payments'] },
            operator: 'ops',
            maxDurationSeconds: 3600,
            approvals: { count: 2, roles: ['service-owner', 'security-officer'], distinctRoles: true },
          },
        ],
      },
    });
    const ask = (permissions?: string[]) =>
      gl.request({
        requester: eve,
        subject: job,
        justification: { reason: 'unspecified access' },
        targets: [
          { id: 'p', system: 'token', resource: 'api://payments', ...(permissions ? { permissions } : {}) },
        ],
        durationSeconds: 600,
      });
    expect((await ask()).policy.ruleId).toBe('everything-else');
    expect((await ask([])).policy.ruleId).toBe('everything-else');
    expect((await ask(['payments:read'])).policy.ruleId).toBe('read-only');
  });

  for (const [label, target] of [
    ['omitted', { id: 'm', system: 'token', resource: 'api://metrics' }],
    ['empty', { id: 'm', system: 'token', resource: 'api://metrics', permissions: [] as string[] }],
  ] as const) {
    it(`(permissions ${label}) is not pre-approved by a template that lists permissions; nothing is written`, async () => {
      const { gl, store } = await setup();
      const before = store.dump();
      expect(
        await refusal(
          gl.request({
            requester: ciJob,
            subject: ciJob,
            justification: { reason: 'scrape' },
            targets: [target],
            durationSeconds: 60,
            template: 'read-metrics',
          }),
        ),
      ).toEqual({
        code: 'ERR_POLICY_DENIED',
        reasons: [{ code: 'TEMPLATE_NOT_APPLICABLE', path: ['targets', 0] }],
      });
      expect(store.dump()).toBe(before);
    });
  }
});

describe('required change record', () => {
  const prod = { id: 'prod', system: 'token', resource: 'api://prod/ledger' };
  const ask = (justification: Record<string, string>, targets = [prod]) => ({
    requester: eve,
    subject: bob,
    justification: { reason: 'apply migration', ...justification },
    targets,
    durationSeconds: 1800,
  });

  it('a missing change record is refused with CHANGE_RECORD_REQUIRED at justification.changeRecord', async () => {
    const { gl, store } = await env();
    const before = store.dump();
    expect(await refusal(gl.request(ask({ ticket: 'OPS-1' })))).toEqual({
      code: 'ERR_POLICY_DENIED',
      reasons: [{ code: 'CHANGE_RECORD_REQUIRED', path: ['justification', 'changeRecord'] }],
    });
    expect(store.dump()).toBe(before);
  });

  it('a change record that does not match the pattern is refused with CHANGE_RECORD_PATTERN', async () => {
    const { gl } = await env();
    for (const bad of ['CHG123', 'chg0000001', 'CHG00000011', 'x CHG0000001']) {
      expect(await refusal(gl.request(ask({ changeRecord: bad })))).toEqual({
        code: 'ERR_POLICY_DENIED',
        reasons: [{ code: 'CHANGE_RECORD_PATTERN', path: ['justification', 'changeRecord'] }],
      });
    }
  });

  it('a matching change record is accepted and kept in the case', async () => {
    const { gl } = await env();
    const g = await gl.request(ask({ changeRecord: 'CHG0004711' }));
    expect(g.state).toBe('requested');
    expect(g.policy.ruleId).toBe('prod-change');
    expect(g.justification.changeRecord).toBe('CHG0004711');
  });

  it('a rule without a pattern still requires presence; any value passes', async () => {
    const { gl } = await env();
    const staging = { id: 'stg', system: 'token', resource: 'api://staging/api' };
    expect(await refusal(gl.request(ask({}, [staging])))).toEqual({
      code: 'ERR_POLICY_DENIED',
      reasons: [{ code: 'CHANGE_RECORD_REQUIRED', path: ['justification', 'changeRecord'] }],
    });
    const g = await gl.request(ask({ changeRecord: 'whatever-42' }, [staging]));
    expect(g.policy.ruleId).toBe('staging-change');
  });

  it('a multi-target case whose targets match different rules is refused, whatever the references', async () => {
    const { gl, store } = await env();
    // db-workload (high risk) and prod-change (its change record) would both govern: refused, not merged.
    const both = (justification: Record<string, string>) => ({
      ...ask(justification, [db, prod]),
      requester: dana,
      subject: job,
      durationSeconds: 900,
    });
    const before = store.dump();
    for (const j of [{ changeRecord: 'free text' }, {}, { changeRecord: 'CHG0000042' }] as Record<
      string,
      string
    >[]) {
      expect(await refusal(gl.request(both(j)))).toEqual({
        code: 'ERR_POLICY_DENIED',
        reasons: [{ code: 'RULES_DIFFER', path: ['targets'] }],
      });
    }
    expect(store.dump()).toBe(before);
  });
});

describe('targets governed by different rules (combining targets never weakens a rule)', () => {
  // `db` is high risk (dual control); `net` is medium but demands a proven workload, has its own
  // operator team and usage constraints. A case for both must not be governed by `db` alone.
  const mixed: PolicyInput = {
    id: 'mixed',
    version: '1',
    owner: 'gov',
    rules: [
      {
        id: 'db',
        risk: 'high',
        match: { resources: ['db://*'] },
        operator: 'ops-db',
        maxDurationSeconds: 3600,
        approvals: { count: 2, roles: ['a', 'b'], distinctRoles: true },
      },
      {
        id: 'net',
        risk: 'medium',
        match: { resources: ['net://*'] },
        operator: 'ops-net',
        maxDurationSeconds: 3600,
        require: { provenWorkload: true, provenApprovers: true },
        approvals: { count: 1, roles: ['netowner'] },
        constraints: { sourceCidrs: ['10.0.0.0/8'], actions: ['net:read'] },
      },
    ],
  };
  const dbT = { id: 'd', system: 'token', resource: 'db://x' };
  const netT = { id: 'n', system: 'token', resource: 'net://core' };
  const ask = (targets: { id: string; system: string; resource: string }[]) => ({
    requester: { id: 'alice', kind: 'human' as const },
    subject: { id: 'ci', kind: 'workload' as const },
    justification: { reason: 'x' },
    targets,
    durationSeconds: 60,
  });
  async function mixedEnv() {
    const clock = manualClock();
    const store = createMemoryStore();
    const tokens = await createTokenAuthority({ issuer: 'https://grantline.test', clock });
    return { store, gl: createGrantline({ store, policy: mixed, executors: [tokens.executor], clock }) };
  }

  it('db + net in one case is refused with RULES_DIFFER (in either order), nothing written', async () => {
    const { gl, store } = await mixedEnv();
    const before = store.dump();
    for (const targets of [
      [dbT, netT],
      [netT, dbT],
      [dbT, { ...netT, id: 'n2' }, { ...dbT, id: 'd2' }],
    ]) {
      expect(await refusal(gl.request(ask(targets)))).toEqual({
        code: 'ERR_POLICY_DENIED',
        reasons: [{ code: 'RULES_DIFFER', path: ['targets'] }],
      });
    }
    expect(store.dump()).toBe(before);
  });

  it("net's own requirements still hold when asked for alone; db alone and several db targets are one case", async () => {
    const { gl } = await mixedEnv();
    // The unproven workload is refused for net (what combining with db used to skip).
    await expect(gl.request(ask([netT]))).rejects.toMatchObject({ code: 'ERR_POLICY_DENIED' });
    const g = await gl.request(ask([dbT, { ...dbT, id: 'd2', resource: 'db://y' }]));
    expect(g.policy.ruleId).toBe('db');
    expect(g.policy.operator).toBe('ops-db');
    expect(g.policy.approvals.count).toBe(2);
  });
});

describe('usage time window (weekdays 08:00-18:00 UTC)', () => {
  const reports = { id: 'reports', system: 'token', resource: 'api://reports' };

  /** Requests, approves and issues a reporting case at the clock's current time. */
  async function issued(e: Awaited<ReturnType<typeof env>>) {
    const g = await e.gl.request({
      requester: eve,
      subject: bob,
      justification: { reason: 'month-end reports' },
      targets: [reports],
      durationSeconds: 3600 * 24 * 6,
    });
    await e.gl.approve(g.id, { approver: olga });
    const { grant, credentials } = await e.gl.issue(g.id);
    expect(grant.state).toBe('issued');
    return { id: g.id, token: credentials.reports!.token! };
  }

  it('use inside the window is recorded and changes nothing; the first use at 18:00 revokes with violation', async () => {
    // 2026-12-01 is a Tuesday.
    const e = await env('2026-12-01T08:00:00.000Z');
    const { id, token } = await issued(e);
    for (const at of ['2026-12-01T08:00:00.000Z', '2026-12-01T12:30:00.000Z', '2026-12-01T17:59:59.999Z']) {
      e.clock.set(at);
      const g = await e.gl.recordUsage(id, { sourceIp: '10.1.2.3', action: 'reports:read' });
      expect(g.state).toBe('issued');
    }
    expect((await e.gl.history(id)).filter((h) => h.type === 'violation')).toEqual([]);
    await expect(e.tokens.verifier.verify(token, { audience: 'api://reports' })).resolves.toBeDefined();

    e.clock.set('2026-12-01T18:00:00.000Z');
    const after = await e.gl.recordUsage(id, { sourceIp: '10.1.2.3', action: 'reports:read' });
    expect(after.state).toBe('verified');
    expect(after.revocation?.trigger).toBe('violation');
    const violations = (await e.gl.history(id)).filter((h) => h.type === 'violation');
    expect(violations).toHaveLength(1);
    expect(
      (violations[0]!.data.reasons as DecisionReason[]).map((r) => ({ code: r.code, path: r.path })),
    ).toEqual([{ code: 'OUTSIDE_TIME_WINDOW', path: ['at'] }]);
    await expect(e.tokens.verifier.verify(token, { audience: 'api://reports' })).rejects.toMatchObject({
      details: { reason: 'revoked' },
    });
  });

  it('use before the window opens is a violation', async () => {
    const e = await env('2026-12-02T07:00:00.000Z'); // Wednesday
    const { id } = await issued(e);
    e.clock.set('2026-12-02T07:59:59.000Z');
    const g = await e.gl.recordUsage(id, { sourceIp: '10.1.2.3', action: 'reports:read' });
    expect(g.revocation?.trigger).toBe('violation');
    expect(g.state).toBe('verified');
  });

  it('use at an allowed hour on a day outside the window (Saturday) is a violation', async () => {
    const e = await env('2026-12-04T10:00:00.000Z'); // Friday
    const { id } = await issued(e);
    e.clock.set('2026-12-05T10:00:00.000Z'); // Saturday
    const g = await e.gl.recordUsage(id, { sourceIp: '10.1.2.3', action: 'reports:read' });
    expect(g.state).toBe('verified');
    expect(g.revocation?.trigger).toBe('violation');
    const v = (await e.gl.history(id)).find((h) => h.type === 'violation')!;
    expect((v.data.reasons as DecisionReason[]).map((r) => r.code)).toEqual(['OUTSIDE_TIME_WINDOW']);
  });

  it('a rule without a time window accepts use at any hour', async () => {
    const e = await env('2026-12-05T03:00:00.000Z'); // Saturday night
    const g = await e.gl.request({
      requester: dana,
      subject: bob,
      justification: { reason: 'night fix' },
      targets: [db],
      durationSeconds: 3600,
    });
    await e.gl.approve(g.id, { approver: olga });
    await e.gl.issue(g.id);
    const used = await e.gl.recordUsage(g.id, { sourceIp: '10.1.2.3', action: 'db:read' });
    expect(used.state).toBe('issued');
  });
});

describe('pre-approved templates name what they cover', () => {
  const templateRule = {
    id: 'tpl',
    risk: 'low' as const,
    template: 'tpl',
    operator: 'ops',
    maxDurationSeconds: 600,
    approvals: { count: 0, roles: [] },
  };
  const full = { systems: ['token'], resources: ['api://metrics'], permissions: ['metrics:read'] };
  const withMatch = (match: Record<string, string[]>): PolicyInput => ({
    id: 'p',
    version: '1',
    owner: 'gov',
    rules: [{ ...templateRule, match }],
  });
  /** The validation issues (path and message) of a policy refused by compilePolicy. */
  function issues(p: PolicyInput): { code: string; paths: (string | number)[][] } {
    try {
      compilePolicy(p);
    } catch (err) {
      if (!isGrantlineError(err)) throw err;
      const list = err.details.issues as { path: (string | number)[] }[];
      return { code: err.code, paths: list.map((i) => i.path) };
    }
    throw new Error('expected the policy to be refused');
  }

  it('a template rule without match.systems, match.resources or match.permissions is refused with the path', () => {
    for (const key of ['systems', 'resources', 'permissions'] as const) {
      const { [key]: _dropped, ...rest } = full;
      expect(issues(withMatch(rest))).toEqual({
        code: 'ERR_VALIDATION',
        paths: [['rules', 0, 'match', key]],
      });
      expect(issues(withMatch({ ...full, [key]: [] }))).toEqual({
        code: 'ERR_VALIDATION',
        paths: [['rules', 0, 'match', key]],
      });
    }
    expect(issues({ id: 'p', version: '1', owner: 'gov', rules: [templateRule] })).toEqual({
      code: 'ERR_VALIDATION',
      paths: [
        ['rules', 0, 'match', 'systems'],
        ['rules', 0, 'match', 'resources'],
        ['rules', 0, 'match', 'permissions'],
      ],
    });
    expect(compilePolicy(withMatch(full)).policy.rules[0]!.template).toBe('tpl');
  });

  it('a complete template pre-approves only its permissions: any other permission is not covered', async () => {
    const clock = manualClock();
    const tokens = await createTokenAuthority({ issuer: 'https://grantline.test', clock });
    const gl = createGrantline({
      store: createMemoryStore(),
      policy: withMatch(full),
      executors: [tokens.executor],
      clock,
    });
    const ask = (permissions: string[]) =>
      gl.request({
        requester: job,
        subject: job,
        justification: { reason: 'scrape' },
        targets: [{ id: 'm', system: 'token', resource: 'api://metrics', permissions }],
        durationSeconds: 60,
        template: 'tpl',
      });
    for (const bad of [['payments:write'], ['metrics:read', '*'], ['metrics:read:all']]) {
      expect(await refusal(ask(bad))).toEqual({
        code: 'ERR_POLICY_DENIED',
        reasons: [{ code: 'TEMPLATE_NOT_APPLICABLE', path: ['targets', 0] }],
      });
    }
    expect((await ask(['metrics:read'])).state).toBe('approved');
  });
});
