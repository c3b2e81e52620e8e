import { createMemoryStore } from '@grantline/store-memory';
import { z } from 'zod';
import {
  type Executor,
  type Logger,
  type PolicyInput,
  type PrincipalInput,
  createGrantline,
  createTokenAuthority,
} from '../src/index.js';

/** One pre-approved low-risk rule (template `auto`, no approvers): the sweeper and fault tests' policy. */
export const autoPolicy = (id: string) => ({
  id,
  version: '1',
  owner: 'gov',
  rules: [
    {
      id: 'auto',
      risk: 'low' as const,
      template: 'auto',
      // A template spells out what it pre-approves: the test systems, db:// resources, reads.
      match: {
        systems: ['sys', 'flaky', 'broken', 'slow', 'odd', 'late'],
        resources: ['db://*'],
        permissions: ['db:read'],
      },
      operator: 'ops',
      maxDurationSeconds: 3600,
      approvals: { count: 0, roles: [] },
    },
  ],
});
/** The workload that requests (and is the subject of) the sweeper and fault tests' cases. */
export const bot = { id: 'bot', kind: 'workload' as const, roles: [] };

/** Requests (template `auto`, as `bot`) and issues `n` cases with `targets` targets on `system`. */
export async function issueCases(
  gl: ReturnType<typeof createGrantline>,
  n: number,
  opts: { system: string; durationSeconds?: number; targets?: number },
): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const g = await gl.request({
      requester: bot,
      subject: bot,
      justification: { reason: `job ${i}` },
      targets: Array.from({ length: opts.targets ?? 1 }, (_, t) => ({
        id: `t${t}`,
        system: opts.system,
        resource: `db://${i}/${t}`,
        permissions: ['db:read'],
      })),
      durationSeconds: opts.durationSeconds ?? 60,
      template: 'auto',
    });
    await gl.issue(g.id);
    ids.push(g.id);
  }
  return ids;
}

export const policy: PolicyInput = {
  id: 'acme-jit',
  version: '2026-12-01',
  owner: 'iam-governance',
  rules: [
    {
      id: 'payments-write',
      risk: 'high',
      match: { systems: ['token'], resources: ['api://payments*'] },
      operator: 'platform-ops',
      maxDurationSeconds: 3600,
      require: { ticket: { pattern: '^OPS-\\d+$' }, workload: true },
      approvals: { count: 2, roles: ['security-officer', 'service-owner'], distinctRoles: true },
      constraints: { sourceCidrs: ['10.0.0.0/8'], actions: ['payments:*'] },
    },
    {
      id: 'metrics-read',
      risk: 'low',
      template: 'read-metrics',
      match: { systems: ['token'], resources: ['api://metrics'], permissions: ['metrics:read'] },
      operator: 'platform-ops',
      maxDurationSeconds: 900,
      approvals: { count: 0, roles: [] },
    },
    {
      id: 'standard',
      risk: 'medium',
      match: { systems: ['token'], resources: ['api://*'] },
      operator: 'platform-ops',
      maxDurationSeconds: 7200,
      approvals: { count: 1, roles: ['service-owner'] },
    },
  ],
  breakGlass: {
    allowedRoles: ['sre-oncall'],
    maxDurationSeconds: 1800,
    reviewWithinSeconds: 86_400,
    reviewerRoles: ['security-officer'],
    operator: 'platform-ops',
  },
};

export const ciJob: PrincipalInput = { id: 'ci:deploy-payments', kind: 'workload', roles: ['deployer'] };
export const alice: PrincipalInput = { id: 'alice', kind: 'human', roles: ['engineer'], teams: ['payments'] };
export const sam: PrincipalInput = {
  id: 'sam',
  kind: 'human',
  roles: ['security-officer'],
  teams: ['security'],
};
export const olga: PrincipalInput = {
  id: 'olga',
  kind: 'human',
  roles: ['service-owner'],
  teams: ['payments'],
};
export const oscar: PrincipalInput = {
  id: 'oscar',
  kind: 'human',
  roles: ['service-owner', 'security-officer'],
  teams: ['platform-ops'],
};
export const rita: PrincipalInput = { id: 'rita', kind: 'human', roles: ['sre-oncall'], teams: ['sre'] };

export const paymentsRequest = (over: Record<string, unknown> = {}) => ({
  requester: alice,
  subject: ciJob,
  justification: { reason: 'rotate payment webhooks', ticket: 'OPS-4711', workload: 'ci:deploy-payments' },
  targets: [{ id: 'payments', system: 'token', resource: 'api://payments', permissions: ['payments:write'] }],
  durationSeconds: 1800,
  ...over,
});

/** A manual clock for tests. */
export function manualClock(start = '2026-12-01T09:00:00.000Z') {
  let t = Date.parse(start);
  return {
    now: () => new Date(t),
    advance(ms: number) {
      t += ms;
    },
    set(iso: string) {
      t = Date.parse(iso);
    },
  };
}

/** A manual clock that also moves 1 ms on every read: two reads within one step show as two times. */
export function tickingClock(start?: string) {
  const base = manualClock(start);
  return {
    ...base,
    now: () => {
      const at = base.now();
      base.advance(1);
      return at;
    },
  };
}

/** A logger that keeps every line, to search for leaked secrets. */
export function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const rec = (level: string) => (msg: string, data?: Record<string, unknown>) => {
    lines.push(`${level} ${msg} ${JSON.stringify(data ?? {})}`);
  };
  return { lines, debug: rec('debug'), info: rec('info'), warn: rec('warn'), error: rec('error') };
}

export async function setup(opts: { clock?: ReturnType<typeof manualClock> } = {}) {
  const clock = opts.clock ?? manualClock();
  const store = createMemoryStore();
  const tokens = await createTokenAuthority({ issuer: 'https://grantline.test', clock });
  const logger = recordingLogger();
  const gl = createGrantline({
    store,
    policy,
    executors: [tokens.executor],
    clock,
    logger,
    random: () => 0.5,
  });
  return { clock, store, tokens, logger, gl };
}

/**
 * A fake credential system for fault tests: issues a reference (and `secret`, when given) valid for
 * 10 minutes, revokes, and verifies the removal; any method can be replaced.
 */
export function fakeSystem(
  system: string,
  over: Partial<Executor<Record<string, unknown>>> & { secret?: Record<string, string> } = {},
): Executor<Record<string, unknown>> {
  const { secret, ...methods } = over;
  return {
    system,
    paramsSchema: z.record(z.string(), z.unknown()),
    async issue(ctx) {
      return {
        ref: { id: `${system}:${ctx.target.id}` },
        expiresAt: new Date(ctx.now.getTime() + 600_000),
        ...(secret ? { secret } : {}),
      };
    },
    async revoke() {
      return {};
    },
    async verify() {
      return { status: 'absent', method: 'test', observation: { gone: true } };
    },
    ...methods,
  };
}

/** `policy` with one rule governing every target: one approval by a service owner, then `over`. */
export const anyRulePolicy = (over: Record<string, unknown> = {}): PolicyInput => ({
  ...policy,
  rules: [
    {
      id: 'any',
      risk: 'medium',
      operator: 'ops',
      maxDurationSeconds: 3600,
      approvals: { count: 1, roles: ['service-owner'] },
      ...over,
    },
  ],
});
