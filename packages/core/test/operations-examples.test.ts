import { createMemoryStore } from '@grantline/store-memory';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { archiveEvidence, evidenceKeys } from '../examples/evidence-keys.js';
import { exposedCases, lastDay, watchGrantline } from '../examples/monitoring.js';
import {
  type Executor,
  type GrantStore,
  GrantlineError,
  createGrantline,
  createJwks,
  generateSigningKey,
  verifyEvidence,
} from '../src/index.js';
import { manualClock } from './helpers.js';

// The operations recipes of docs/operations.md, run against the real service on the memory store.

const policy = {
  id: 'ops',
  version: '1',
  owner: 'iam-governance',
  rules: [
    {
      id: 'auto',
      risk: 'low' as const,
      template: 'auto',
      match: { systems: ['sys'], resources: ['db://*'], permissions: ['db:read'] },
      operator: 'platform-ops',
      maxDurationSeconds: 3600,
      approvals: { count: 0, roles: [] },
    },
  ],
  breakGlass: {
    allowedRoles: ['sre-oncall'],
    maxDurationSeconds: 1800,
    reviewWithinSeconds: 3600,
    reviewerRoles: ['security-officer'],
    operator: 'platform-ops',
  },
};
const bot = { id: 'ci:nightly', kind: 'workload' as const, roles: [] };
const rita = { id: 'rita', kind: 'human' as const, roles: ['sre-oncall'] };

/** A credential system with real state; revocation of cases in `broken` is refused (not retryable). */
function system() {
  const live = new Set<string>();
  const broken = new Set<string>();
  const executor: Executor<Record<string, unknown>> = {
    system: 'sys',
    paramsSchema: z.record(z.string(), z.unknown()),
    async issue(ctx) {
      live.add(ctx.grant.id);
      return { ref: { key: ctx.grant.id }, expiresAt: new Date(ctx.grant.window.expiresAt!) };
    },
    async revoke(ctx) {
      if (broken.has(ctx.grant.id))
        throw new GrantlineError('ERR_EXECUTOR', 'access denied to the revocation API', { retryable: false });
      return { alreadyGone: !live.delete(ctx.grant.id) };
    },
    async verify(ctx) {
      return live.has(ctx.grant.id)
        ? { status: 'present', method: 'lookup', observation: { live: true } }
        : { status: 'absent', method: 'lookup', observation: { live: false } };
    },
  };
  return { executor, live, broken };
}

const open = (gl: ReturnType<typeof createGrantline>, durationSeconds = 60) =>
  gl.request({
    requester: bot,
    subject: bot,
    justification: { reason: 'nightly export' },
    targets: [{ id: 't', system: 'sys', resource: 'db://orders', permissions: ['db:read'] }],
    durationSeconds,
    template: 'auto',
  });

describe('monitoring recipe', () => {
  it('records revocation lag, alerts on exposed cases and overdue reviews, and finds them in the store', async () => {
    const clock = manualClock();
    const sys = system();
    const gl = createGrantline({
      store: createMemoryStore(),
      policy,
      executors: [sys.executor],
      clock,
      retry: { baseMs: 1_000, maxMs: 10_000, maxAttempts: 2 },
    });
    const histograms: [string, number, Record<string, string>][] = [];
    const counters: [string, Record<string, string>][] = [];
    const alerts: [string, Record<string, unknown>][] = [];
    watchGrantline(
      gl,
      {
        histogram: (n, v, l) => histograms.push([n, v, l]),
        counter: (n, l) => counters.push([n, l]),
      },
      (title, facts) => alerts.push([title, facts]),
    );

    const fine = await open(gl);
    const stuck = await open(gl);
    sys.broken.add(stuck.id);
    await gl.issue(fine.id);
    await gl.issue(stuck.id);
    const glass = await gl.breakGlass({
      requester: rita,
      subject: rita,
      justification: { reason: 'INC-1 outage' },
      targets: [{ id: 't', system: 'sys', resource: 'db://orders' }],
      durationSeconds: 600,
    });
    await gl.issue(glass.id);

    clock.advance(61_000);
    await gl.sweep();
    expect(histograms.map(([n, v, l]) => [n, v, l.trigger])).toEqual([
      ['grantline_revocation_lag_ms', 1_000, 'expiry'],
      ['grantline_verification_lag_ms', 1_000, 'expiry'],
    ]);
    expect(alerts).toEqual([
      [
        'Revocation failed: access may still be live',
        expect.objectContaining({ caseId: stuck.id, targetId: 't' }),
      ],
    ]);
    expect((await exposedCases(gl)).map((g) => g.id)).toEqual([stuck.id]);

    clock.advance(3_600_000); // past the break-glass review deadline
    await gl.sweep();
    expect(alerts.map(([t]) => t)).toContain('Break-glass use not reviewed in time');
    expect(counters).toContainEqual(['grantline_exposed_total', { stage: 'revocation' }]);

    const day = await lastDay(gl, clock.now());
    expect(day.revocationLagP99Ms).toBeGreaterThanOrEqual(1_000);
    expect(day.gaps.map((g) => g.code)).toEqual(
      expect.arrayContaining(['REVOCATION_FAILED', 'BREAKGLASS_REVIEW_OVERDUE']),
    );

    sys.broken.delete(stuck.id); // fixed at the target: the next retry succeeds and clears the flag
    clock.advance(60_000);
    await gl.sweep();
    expect(await exposedCases(gl)).toEqual([]);
  });
});

describe('evidence keys recipe', () => {
  it('after a rotation, old and new bundles verify with one JWKS that holds no private key', async () => {
    const store: GrantStore = createMemoryStore();
    const sys = system();
    const before = await generateSigningKey();
    const v1 = await evidenceKeys(before.privateJwk);
    const gl1 = createGrantline({ store, policy, executors: [sys.executor], signer: v1.signer });
    const c1 = await open(gl1);
    await gl1.issue(c1.id);
    await gl1.revoke(c1.id, { actor: bot, reason: 'done' });
    const oldBundle = await gl1.evidence(c1.id);

    const after = await generateSigningKey();
    const v2 = await evidenceKeys(after.privateJwk, [before.publicJwk]);
    const gl2 = createGrantline({ store, policy, executors: [sys.executor], signer: v2.signer });
    const newBundle = await gl2.evidence(c1.id);

    expect(v2.signer.kid).not.toBe(v1.signer.kid);
    expect(JSON.stringify(v2.jwks)).not.toContain('"d"');
    expect((await verifyEvidence(oldBundle, { keys: v2.jwks })).valid).toBe(true);
    expect((await verifyEvidence(newBundle, { keys: v2.jwks })).valid).toBe(true);
    const onlyNew = await verifyEvidence(oldBundle, { keys: createJwks(v2.signer) });
    expect(onlyNew.problems.map((p) => p.code)).toEqual(['KEY_UNKNOWN']);
  });

  it('archives the bundles of finished cases older than the cut-off, each verifiable offline', async () => {
    const clock = manualClock();
    const sys = system();
    const { signer, jwks } = await evidenceKeys((await generateSigningKey()).privateJwk);
    const gl = createGrantline({
      store: createMemoryStore(),
      policy,
      executors: [sys.executor],
      clock,
      signer,
    });
    const old = await open(gl);
    await gl.issue(old.id);
    await gl.revoke(old.id, { actor: bot, reason: 'done' });
    clock.advance(86_400_000);
    const cutOff = clock.now();
    const live = await open(gl);
    await gl.issue(live.id);

    const written = new Map<string, string>();
    const n = await archiveEvidence(gl, cutOff, async (id, json) => {
      written.set(id, json);
    });
    expect(n).toBe(1);
    expect([...written.keys()]).toEqual([old.id]);
    const verdict = await verifyEvidence(written.get(old.id)!, { keys: jwks });
    expect(verdict.valid).toBe(true);
    expect(verdict.payload?.record.state).toBe('verified');
  });
});
