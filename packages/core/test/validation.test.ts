import { createMemoryStore } from '@grantline/store-memory';
import { describe, expect, it } from 'vitest';
import {
  type CompiledPolicy,
  compilePolicy,
  evaluateRequest,
  createGrantline,
  createTokenAuthority,
  isGrantlineError,
} from '../src/index.js';
import { alice, olga, paymentsRequest, policy, sam, setup } from './helpers.js';

async function validationIssue(p: Promise<unknown>): Promise<{ path: (string | number)[]; message: string }> {
  try {
    await p;
  } catch (err) {
    if (!isGrantlineError(err)) throw err;
    expect(err.code).toBe('ERR_VALIDATION');
    const issues = err.details.issues as { path: (string | number)[]; message: string }[];
    expect(issues.length).toBeGreaterThan(0);
    return issues[0]!;
  }
  throw new Error('expected ERR_VALIDATION');
}

describe('invalid input to every public method: ERR_VALIDATION with the path, nothing written', () => {
  it('covers request, breakGlass, approve, deny, cancel, issue, recordUsage, complete, revoke, review, list and ids', async () => {
    const env = await setup();
    const g = await env.gl.request(paymentsRequest());
    const snapshot = env.store.dump();
    const cases: [string, () => Promise<unknown>, (string | number)[]][] = [
      [
        'request: subject kind',
        () => env.gl.request(paymentsRequest({ subject: { id: 'x', kind: 'robot' } })),
        ['subject', 'kind'],
      ],
      ['request: empty targets', () => env.gl.request(paymentsRequest({ targets: [] })), ['targets']],
      [
        'request: target id charset',
        () => env.gl.request(paymentsRequest({ targets: [{ id: 'a b', system: 'token', resource: 'r' }] })),
        ['targets', 0, 'id'],
      ],
      [
        'request: negative duration',
        () => env.gl.request(paymentsRequest({ durationSeconds: -5 })),
        ['durationSeconds'],
      ],
      ['request: unknown field', () => env.gl.request({ ...paymentsRequest(), admin: true } as never), []],
      [
        'request: bad executor params',
        () =>
          env.gl.request(
            paymentsRequest({
              targets: [
                { id: 't', system: 'token', resource: 'api://payments', params: { maxTtlSeconds: 'long' } },
              ],
            }),
          ),
        ['targets', 0, 'params', 'maxTtlSeconds'],
      ],
      ['request: not an object', () => env.gl.request(null as never), []],
      [
        'breakGlass: missing reason',
        () =>
          env.gl.breakGlass({
            requester: alice,
            subject: alice,
            justification: {} as never,
            targets: [{ id: 't', system: 'token', resource: 'r' }],
            durationSeconds: 60,
          }),
        ['justification', 'reason'],
      ],
      [
        'approve: approver roles type',
        () => env.gl.approve(g.id, { approver: { id: 'x', kind: 'human', roles: 'admin' as never } }),
        ['approver', 'roles'],
      ],
      ['approve: empty id', () => env.gl.approve('', { approver: sam }), ['id']],
      ['deny: empty reason', () => env.gl.deny(g.id, { actor: sam, reason: '' }), ['reason']],
      ['cancel: missing actor', () => env.gl.cancel(g.id, { reason: 'x' } as never), ['actor']],
      [
        'issue: actor kind',
        () => env.gl.issue(g.id, { actor: { id: 'x', kind: 'alien' as never } }),
        ['actor', 'kind'],
      ],
      [
        'recordUsage: bad ip',
        () => env.gl.recordUsage(g.id, { sourceIp: '999.1.1.1', action: 'x' }),
        ['sourceIp'],
      ],
      [
        'recordUsage: missing action',
        () => env.gl.recordUsage(g.id, { sourceIp: '10.0.0.1' } as never),
        ['action'],
      ],
      ['complete: missing reason', () => env.gl.complete(g.id, { actor: olga } as never), ['reason']],
      ['revoke: id type', () => env.gl.revoke(42 as never, { actor: sam, reason: 'x' }), ['id']],
      [
        'review: outcome',
        () => env.gl.review(g.id, { reviewer: sam, outcome: 'maybe' as never }),
        ['outcome'],
      ],
      ['list: limit', () => env.gl.list({ limit: 0 }), ['limit']],
      ['list: state', () => env.gl.list({ states: ['open' as never] }), ['states', 0]],
      ['history: id', () => env.gl.history(undefined as never), ['id']],
      ['get: id', () => env.gl.get({} as never), ['id']],
    ];
    for (const [name, call, path] of cases) {
      const issue = await validationIssue(call());
      expect(issue.path, name).toEqual(path);
    }
    expect(env.store.dump()).toBe(snapshot);
  });

  it('a bad policy is refused at construction with the path of the bad field', () => {
    const bad = (mut: (p: typeof policy) => void) => {
      const p = structuredClone(policy);
      mut(p);
      return p;
    };
    const attempts: [typeof policy, (string | number)[]][] = [
      [
        bad((p) => {
          (p.rules[0] as { approvals: { count: number } }).approvals.count = 1;
        }),
        ['rules', 0, 'approvals', 'count'],
      ],
      [
        bad((p) => {
          p.rules[2]!.id = 'break-glass'; // reserved: it names break-glass cases' snapshot
        }),
        ['rules', 2, 'id'],
      ],
      [
        bad((p) => {
          // A template whose extensions need approval, but no role qualifies: none could extend it.
          Object.assign(p.rules[1]!, { extension: { requiresApproval: true, maxExtensions: 1 } });
        }),
        ['rules', 1, 'approvals', 'roles'],
      ],
      [
        bad((p) => {
          // Crossing midnight: it would have refused (and revoked on) every use.
          p.rules[0]!.constraints = { timeWindow: { startHour: 22, endHour: 6 } };
        }),
        ['rules', 0, 'constraints', 'timeWindow', 'endHour'],
      ],
      [
        bad((p) => {
          (p.rules[1] as { risk: string }).risk = 'high';
        }),
        ['rules', 1, 'template'],
      ],
      [
        bad((p) => {
          (p.rules[0] as { constraints: { sourceCidrs: string[] } }).constraints.sourceCidrs = [
            '10.0.0.0/99',
          ];
        }),
        ['rules', 0, 'constraints', 'sourceCidrs', 0],
      ],
      [
        bad((p) => {
          (p.rules[0] as { require: { ticket: { pattern: string } } }).require.ticket.pattern = '([';
        }),
        ['rules', 0, 'require', 'ticket', 'pattern'],
      ],
      [
        bad((p) => {
          p.rules[2]!.id = 'payments-write';
        }),
        ['rules', 2, 'id'],
      ],
    ];
    for (const [p, path] of attempts) {
      try {
        compilePolicy(p);
        throw new Error('expected a failure');
      } catch (err) {
        expect(isGrantlineError(err) && err.code).toBe('ERR_VALIDATION');
        expect((err as { details: { issues: { path: unknown }[] } }).details.issues[0]!.path).toEqual(path);
      }
    }
    expect(() => createGrantline({ store: undefined as never, policy, executors: [] })).toThrow(
      /store is required/,
    );
  });
});

describe('only policies compilePolicy made are taken as compiled', () => {
  it('an unvalidated { policy, hash } with a high-risk pre-approved template is refused at construction', async () => {
    const tokens = await createTokenAuthority({ issuer: 'x' });
    const forged = {
      hash: 'not-a-hash',
      policy: {
        id: 'p',
        version: '1',
        owner: 'gov',
        requestTtlSeconds: 3600,
        activationTtlSeconds: 3600,
        rules: [
          {
            id: 'prod-admin',
            risk: 'high',
            template: 'yolo',
            match: {},
            require: {},
            operator: 'ops',
            maxDurationSeconds: 3600,
            approvals: { count: 0, roles: [], distinctRoles: false },
          },
        ],
      },
    } as unknown as CompiledPolicy;
    // Before, it was accepted: any target of any system was pre-approved by a high-risk template,
    // with the hash 'not-a-hash' frozen into the case.
    expect(() =>
      createGrantline({ store: createMemoryStore(), policy: forged, executors: [tokens.executor] }),
    ).toThrow(expect.objectContaining({ code: 'ERR_VALIDATION' }));
    const issue = await validationIssue(
      Promise.resolve().then(() =>
        createGrantline({ store: createMemoryStore(), policy: forged, executors: [] }),
      ),
    );
    expect(issue.path).toEqual(['policy', 'rules', 0, 'template']);
  });

  it('a valid policy under a hash that is not its own is refused at hash; under its own hash it is compiled again', async () => {
    const compiled = compilePolicy(policy);
    const copy = structuredClone(compiled);
    const store = createMemoryStore();
    expect(
      await validationIssue(
        Promise.resolve().then(() =>
          createGrantline({ store, policy: { ...copy, hash: '0'.repeat(64) }, executors: [] }),
        ),
      ),
    ).toMatchObject({ path: ['hash'] });
    // A copy with the right hash (as from another installed copy of the package) is the same policy.
    const gl = createGrantline({ store, policy: copy, executors: [] });
    expect(gl.policy.hash).toBe(compiled.hash);
    expect(gl.policy).not.toBe(copy);
    expect(Object.isFrozen(gl.policy.policy)).toBe(true);
    // The compiler's own result is used as is.
    expect(createGrantline({ store, policy: compiled, executors: [] }).policy).toBe(compiled);
  });

  it('a compiled policy is deep-frozen: a host cannot change it after it was hashed', async () => {
    const input = structuredClone(policy);
    const compiled = compilePolicy(input);
    const rule = compiled.policy.rules[0]!;
    expect(() => {
      (rule.approvals as { count: number }).count = 0;
    }).toThrow(TypeError);
    expect(() => {
      rule.approvals.roles.push('anyone');
    }).toThrow(TypeError);
    expect(() => {
      (compiled as { hash: string }).hash = 'x';
    }).toThrow(TypeError);
    expect(() => {
      compiled.policy.rules.push({ ...rule, id: 'more' });
    }).toThrow(TypeError);
    // The host's input is not frozen, and changing it changes nothing compiled.
    input.rules[0]!.maxDurationSeconds = 1;
    expect(rule.maxDurationSeconds).toBe(3600);
    expect(compilePolicy(policy).hash).toBe(compiled.hash);
  });
});

describe('policy snapshots', () => {
  it('a CompiledPolicy-shaped object sharing rule objects with a compiled one gets its own version and hash', () => {
    const v1 = compilePolicy(policy);
    const v2 = { policy: { ...v1.policy, version: 'v2' }, hash: 'f'.repeat(64) } as CompiledPolicy;
    const facts = {
      requester: { id: 'alice', kind: 'human' as const, roles: ['engineer'], teams: [] },
      subject: { id: 'ci:x', kind: 'workload' as const, roles: [], teams: [] },
      justification: { reason: 'r', ticket: 'OPS-1' },
      targets: [{ id: 't', system: 'token', resource: 'api://other' }],
      durationSeconds: 60,
    };
    const s1 = evaluateRequest(v1, facts).value!;
    const s2 = evaluateRequest(v2, facts).value!;
    expect([s1.policyVersion, s1.policyHash]).toEqual([policy.version, v1.hash]);
    expect([s2.policyVersion, s2.policyHash]).toEqual(['v2', 'f'.repeat(64)]);
    expect(Object.isFrozen(s1)).toBe(true); // one shared frozen snapshot per rule of a compiled policy
    expect(evaluateRequest(v1, facts).value).toBe(s1);
  });
});
