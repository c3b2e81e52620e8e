import { createMemoryStore } from '@grantline/store-memory';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  type Executor,
  type PolicyInput,
  createGrantline,
  createMemoryRevocationList,
  createTokenAuthority,
  isGrantlineError,
} from '../src/index.js';
import { autoPolicy, bot, ciJob, manualClock, olga, paymentsRequest, policy, sam, setup } from './helpers.js';

/**
 * Races and deadlines a single caller never meets: extensions that race each other, an executor
 * that answers after its deadline, approvals and issuance after a case's deadline, and option values
 * that used to surface as raw JS errors.
 */

const withExtension: PolicyInput = {
  ...policy,
  rules: policy.rules.map((r) =>
    r.id === 'payments-write' ? { ...r, extension: { requiresApproval: false, maxExtensions: 1 } } : r,
  ),
};

async function extendEnv() {
  const clock = manualClock();
  const store = createMemoryStore({ latencyMs: 2 }); // lets racing callers interleave
  const tokens = await createTokenAuthority({ issuer: 'x', clock });
  const gl = createGrantline({ store, policy: withExtension, executors: [tokens.executor], clock });
  const g = await gl.request(paymentsRequest({ durationSeconds: 1200 }));
  await gl.approve(g.id, { approver: sam });
  await gl.approve(g.id, { approver: olga });
  const issued = await gl.issue(g.id);
  return { clock, tokens, gl, grant: issued.grant };
}

describe('extensions that race', () => {
  it('at most maxExtensions commit, whatever the number of racing calls', async () => {
    const { gl, grant } = await extendEnv();
    const results = await Promise.allSettled(
      [1, 2, 3].map((i) => gl.extend(grant.id, { actor: ciJob, seconds: 300 * i, reason: 'r' })),
    );
    const ok = results.filter((r) => r.status === 'fulfilled');
    expect(ok).toHaveLength(1);
    for (const r of results) {
      if (r.status === 'rejected') {
        expect(isGrantlineError(r.reason)).toBe(true);
        expect(['ERR_CONFLICT', 'ERR_POLICY_DENIED']).toContain(r.reason.code);
      }
    }
    const after = await gl.get(grant.id);
    expect(after.window.extensions).toBe(1);
    expect((await gl.history(grant.id)).filter((e) => e.type === 'extended')).toHaveLength(1);
  });

  it('a token renewed by a losing extension is rejected after revocation, also once the deny-list is pruned', async () => {
    const { clock, tokens, gl, grant } = await extendEnv();
    const results = await Promise.allSettled([
      gl.extend(grant.id, { actor: ciJob, seconds: 1800, reason: 'long' }),
      gl.extend(grant.id, { actor: ciJob, seconds: 60, reason: 'short' }),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const recorded = await gl.get(grant.id);
    // Every token signed for this jti, recorded or not: the verifier must refuse all of them.
    const longToken = await tokens.executor.renew!({
      grant: recorded,
      target: { ...recorded.targets[0]!, params: {} },
      now: clock.now(),
      issuance: recorded.targets[0]!.issuance!,
      expiresAt: new Date(Date.parse(recorded.window.hardLimitAt!)),
    });
    await gl.revoke(grant.id, { actor: sam, reason: 'done' });
    expect((await gl.get(grant.id)).state).toBe('verified');
    // Past the recorded expiry plus the list's 60 s grace, with a prune (any issue prunes).
    clock.set(new Date(Date.parse(recorded.window.expiresAt!) + 120_000).toISOString());
    await tokens.revocations.issued('other', new Date(clock.now().getTime() + 1000));
    await expect(
      tokens.verifier.verify(longToken.secret!.token!, { audience: 'api://payments' }),
    ).rejects.toMatchObject({
      details: { reason: 'revoked' },
    });
  });

  it('the memory revocation list keeps an entry until the last token signed for the jti expires', async () => {
    const clock = manualClock();
    const list = createMemoryRevocationList(clock);
    const t0 = clock.now().getTime();
    await list.issued('j', new Date(t0 + 600_000));
    await list.issued('j', new Date(t0 + 3_600_000)); // a renewal
    expect(await list.add('j', new Date(t0 + 600_000))).toBe(true);
    clock.advance(1_800_000);
    await list.issued('prune', new Date(clock.now().getTime()));
    expect(await list.has('j')).toBe(true);
    clock.advance(1_900_000);
    await list.issued('prune2', new Date(clock.now().getTime()));
    expect(await list.has('j')).toBe(false);
  });
});

describe('an executor that answers after its deadline', () => {
  it('a credential made by an issue call abandoned at executorTimeoutMs is removed with its refs and recorded', async () => {
    const live = new Set<string>();
    let release: (() => void) | undefined;
    const late: Executor<Record<string, unknown>> = {
      system: 'late',
      paramsSchema: z.record(z.string(), z.unknown()),
      async issue(ctx) {
        await new Promise<void>((r) => {
          release = r;
        });
        const key = `${ctx.grant.id}:${ctx.target.id}`;
        live.add(key); // the system did the work, whatever the caller thinks
        return { ref: { key }, expiresAt: new Date(ctx.grant.window.expiresAt!) };
      },
      async revoke(ctx) {
        // Without a ref, this system cannot find what it made (as with a random key id).
        if (!ctx.issuance) return { alreadyGone: true };
        return { alreadyGone: !live.delete(ctx.issuance.ref.key!) };
      },
      async verify(ctx) {
        const key = ctx.issuance?.ref.key;
        return {
          status: key && live.has(key) ? 'present' : 'absent',
          method: 'lookup',
          observation: { key: key ?? null },
        };
      },
    };
    const gl = createGrantline({
      store: createMemoryStore(),
      policy: { ...autoPolicy('late'), rules: [{ ...autoPolicy('late').rules[0]!, id: 'auto' }] },
      executors: [late],
      executorTimeoutMs: 20,
      issuingTimeoutMs: 60_000,
    });
    const g = await gl.request({
      requester: bot,
      subject: bot,
      justification: { reason: 'job' },
      targets: [{ id: 't', system: 'late', resource: 'db://x', permissions: ['db:read'] }],
      durationSeconds: 60,
      template: 'auto',
    });
    await expect(gl.issue(g.id)).rejects.toMatchObject({ code: 'ERR_ISSUANCE_FAILED' });
    expect((await gl.get(g.id)).state).toBe('failed');
    release!(); // the executor finishes now, after the rollback
    for (let i = 0; i < 50 && !(await gl.history(g.id)).some((e) => e.type === 'target.issued-late'); i++)
      await new Promise((r) => setTimeout(r, 5));
    expect(live.size).toBe(0);
    const lateEvent = (await gl.history(g.id)).find((e) => e.type === 'target.issued-late');
    expect(lateEvent?.data).toMatchObject({ targetId: 't', removed: true, ref: { key: `${g.id}:t` } });
    const after = await gl.get(g.id);
    expect(after.revocation?.exposed).toBeUndefined();
  });
});

describe('deadlines', () => {
  it('an approval after the request deadline expires the case instead, and says so', async () => {
    const { gl, clock } = await setup();
    const g = await gl.request(paymentsRequest());
    clock.advance(25 * 3600 * 1000); // the policy's request TTL is 24 h
    await expect(gl.approve(g.id, { approver: sam })).rejects.toMatchObject({
      code: 'ERR_INVALID_TRANSITION',
      details: { state: 'expired', command: 'approve' },
    });
    const after = await gl.get(g.id);
    expect(after.state).toBe('expired');
    expect(after.approvals).toEqual([]);
  });

  it('an issue after the deadline of an approved case expires it, and issues nothing', async () => {
    const { gl, clock, store } = await setup();
    const g = await gl.request(paymentsRequest());
    await gl.approve(g.id, { approver: sam });
    await gl.approve(g.id, { approver: olga });
    clock.advance(25 * 3600 * 1000);
    await expect(gl.issue(g.id)).rejects.toMatchObject({ code: 'ERR_INVALID_TRANSITION' });
    expect((await gl.get(g.id)).state).toBe('expired');
    expect(store.dump()).not.toContain('"issued"');
  });
});

describe('the activation deadline', () => {
  it('runs from the approval: an approved case not issued within activationTtlSeconds expires', async () => {
    const { gl, clock } = await setup();
    const g = await gl.request(paymentsRequest());
    clock.advance(2 * 3600 * 1000);
    await gl.approve(g.id, { approver: sam });
    const approved = await gl.approve(g.id, { approver: olga });
    // The policy's activation TTL is the default hour; the request TTL (24 h) no longer applies.
    expect(approved.window.requestExpiresAt).toBe(new Date(clock.now().getTime() + 3_600_000).toISOString());
    expect(approved.dueAt).toBe(approved.window.requestExpiresAt);
    clock.advance(3_600_000 + 1);
    await expect(gl.issue(g.id)).rejects.toMatchObject({ code: 'ERR_INVALID_TRANSITION' });
    expect((await gl.get(g.id)).state).toBe('expired');
  });
});

describe('the activation deadline of a scheduled case', () => {
  it('runs from notBefore when that is later than the approval: the case can be issued then', async () => {
    const { gl, clock } = await setup();
    const notBefore = new Date(clock.now().getTime() + 6 * 3600 * 1000);
    const g = await gl.request(paymentsRequest({ notBefore }));
    await gl.approve(g.id, { approver: sam });
    const approved = await gl.approve(g.id, { approver: olga });
    expect(approved.window.requestExpiresAt).toBe(new Date(notBefore.getTime() + 3_600_000).toISOString());
    clock.set(new Date(notBefore.getTime() + 60_000).toISOString());
    expect((await gl.issue(g.id)).grant.state).toBe('issued');
  });
});

describe('bad values that used to be raw JS errors', () => {
  it('a cursor this store never returned is ERR_VALIDATION', async () => {
    const { gl } = await setup();
    for (const cursor of ['garbage', Buffer.from('{"a":1}').toString('base64url')]) {
      await expect(gl.list({ cursor })).rejects.toMatchObject({
        code: 'ERR_VALIDATION',
        details: { path: ['cursor'] },
      });
    }
  });

  it('a notBefore past what a Date holds after adding the duration is ERR_VALIDATION', async () => {
    const { gl } = await setup();
    await expect(gl.request(paymentsRequest({ notBefore: new Date(8.64e15) }))).rejects.toMatchObject({
      code: 'ERR_VALIDATION',
    });
  });

  it('a policy duration past a year and a negative retry backoff are refused at createGrantline', () => {
    const store = createMemoryStore();
    const rule = autoPolicy('p').rules[0]!;
    expect(() =>
      createGrantline({
        store,
        executors: [],
        policy: { ...autoPolicy('p'), rules: [{ ...rule, maxDurationSeconds: 1e13 }] },
      }),
    ).toThrow(expect.objectContaining({ code: 'ERR_VALIDATION' }));
    for (const retry of [{ baseMs: -1 }, { maxAttempts: 0 }, { baseMs: 5000, maxMs: 10 }]) {
      expect(() => createGrantline({ store, executors: [], policy: autoPolicy('p'), retry })).toThrow(
        expect.objectContaining({ code: 'ERR_VALIDATION' }),
      );
    }
  });
});

describe('the case snapshot governs, not the policy of the instance that acts later', () => {
  it("the activation deadline set at approval is the case's policy's, not the approving instance's newer one", async () => {
    const clock = manualClock();
    const store = createMemoryStore();
    const tokens = await createTokenAuthority({ issuer: 'x', clock });
    const v1: PolicyInput = { ...policy, activationTtlSeconds: 600 };
    const v2: PolicyInput = { ...v1, version: 'v2', activationTtlSeconds: 30 * 24 * 3600 };
    const old = createGrantline({ store, policy: v1, executors: [tokens.executor], clock });
    const upgraded = createGrantline({ store, policy: v2, executors: [tokens.executor], clock });
    const g = await old.request(paymentsRequest()); // decided under v1: issue within 600 s of approval
    expect(g.policy.activationTtlSeconds).toBe(600);
    await upgraded.approve(g.id, { approver: sam });
    const approved = await upgraded.approve(g.id, { approver: olga });
    expect(approved.state).toBe('approved');
    expect(Date.parse(approved.window.requestExpiresAt) - clock.now().getTime()).toBe(600_000);
    clock.advance(601_000);
    await expect(upgraded.issue(g.id)).rejects.toMatchObject({ code: 'ERR_INVALID_TRANSITION' });
    expect((await upgraded.get(g.id)).state).toBe('expired');
  });
});
