import { createMemoryStore } from '@grantline/store-memory';
import { describe, expect, it } from 'vitest';
import {
  type AuditEvent,
  type Clock,
  createGrantline,
  createJoseSigner,
  createJwks,
  createTokenAuthority,
  generateSigningKey,
  verifyEvidence,
} from '../src/index.js';
import { alice, bob, carol, ciJob, manualClock, policy } from './evidence-helpers.js';

/**
 * Instances whose clocks differ share one store (the documented way to scale), and a host's clock can
 * step back. A case's event times must still never decrease, or its honest evidence fails the
 * verifier's time-order check: each step takes the later of its clock and the case's last recorded time.
 */

const request = (ticket: string, durationSeconds = 600) => ({
  requester: alice,
  subject: ciJob,
  justification: { reason: 'rotate keys', ticket },
  targets: [{ id: 'api', system: 'token', resource: 'api://prod/payments' }],
  durationSeconds,
});

async function twoInstances(skewMs: number) {
  const store = createMemoryStore();
  const ahead = manualClock(new Date(Date.parse('2026-03-02T10:00:00.000Z') + skewMs).toISOString());
  const behind = manualClock('2026-03-02T10:00:00.000Z');
  const tokens = await createTokenAuthority({ issuer: 'https://grantline.test', clock: behind });
  const signer = await createJoseSigner({ privateJwk: (await generateSigningKey()).privateJwk });
  const make = (clock: Clock) =>
    createGrantline({ store, policy, executors: [tokens.executor], clock, signer });
  const advance = (ms: number) => {
    ahead.advance(ms);
    behind.advance(ms);
  };
  return { a: make(ahead), b: make(behind), advance, keys: createJwks(signer) };
}

function expectNonDecreasing(events: AuditEvent[]) {
  for (let i = 1; i < events.length; i++) {
    expect(Date.parse(events[i]!.at), `event ${events[i]!.seq} (${events[i]!.type})`).toBeGreaterThanOrEqual(
      Date.parse(events[i - 1]!.at),
    );
  }
}

describe('clock skew between instances', () => {
  it('a case moved on by two instances 50 ms apart keeps ordered times and verifies', async () => {
    const { a, b, advance, keys } = await twoInstances(50);
    const g = await a.request(request('OPS-1'));
    await a.approve(g.id, { approver: bob });
    await b.approve(g.id, { approver: carol }); // b's clock reads 50 ms before a's last event
    await b.issue(g.id);
    advance(10);
    await a.recordUsage(g.id, { sourceIp: '10.1.2.3', action: 'payments:rotate' });
    await b.complete(g.id, { actor: ciJob, reason: 'done' });
    const events = await a.history(g.id);
    expect(events.at(-1)!.type).toBe('verified');
    expectNonDecreasing(events);
    const r = await verifyEvidence(await b.evidence(g.id), { keys });
    expect(r.problems).toEqual([]);
    expect(r.valid).toBe(true);
  });

  it("expiry by the instance behind, on the sweeper's grouped path, is recorded after the case's last event and verifies", async () => {
    const { a, b, advance, keys } = await twoInstances(2_000);
    const g = await a.request(request('OPS-2', 60));
    await a.approve(g.id, { approver: bob });
    await a.approve(g.id, { approver: carol });
    await a.issue(g.id); // expires 60 s after a's clock, 62 s after b's
    advance(63_000);
    const swept = await b.sweep();
    expect(swept.revoked).toBeGreaterThanOrEqual(1);
    const after = await b.get(g.id);
    expect(after.state).toBe('verified');
    const events = await b.history(g.id);
    expectNonDecreasing(events);
    expect(Date.parse(after.updatedAt)).toBeGreaterThanOrEqual(Date.parse(events.at(-1)!.at));
    const r = await verifyEvidence(await a.evidence(g.id), { keys });
    expect(r.problems).toEqual([]);
  });

  it('a clock that steps back 5 s in the middle of a case does not reorder its events', async () => {
    const store = createMemoryStore();
    const clock = manualClock();
    const tokens = await createTokenAuthority({ issuer: 'https://grantline.test', clock });
    const signer = await createJoseSigner({ privateJwk: (await generateSigningKey()).privateJwk });
    const gl = createGrantline({ store, policy, executors: [tokens.executor], clock, signer });
    const g = await gl.request(request('OPS-3'));
    await gl.approve(g.id, { approver: bob });
    clock.advance(-5_000); // e.g. NTP stepping the host's clock back
    const approved = await gl.approve(g.id, { approver: carol });
    const events = await gl.history(g.id);
    expectNonDecreasing(events);
    // The approval's recorded time is its event's time: one instant per step.
    expect(approved.approvals[1]!.at).toBe(events.find((e) => e.type === 'approved')!.at);
    await gl.issue(g.id);
    await gl.revoke(g.id, { actor: alice, reason: 'done' });
    expectNonDecreasing(await gl.history(g.id));
    const r = await verifyEvidence(await gl.evidence(g.id), { keys: createJwks(signer) });
    expect(r.problems).toEqual([]);
  });

  it('an instance 1 h fast that recorded the last step does not lengthen the credentials a correct instance issues', async () => {
    const store = createMemoryStore();
    const fast = manualClock('2026-03-02T11:00:00.000Z');
    const right = manualClock('2026-03-02T10:00:00.000Z');
    const tokens = await createTokenAuthority({ issuer: 'https://grantline.test', clock: right });
    const make = (clock: Clock) => createGrantline({ store, policy, executors: [tokens.executor], clock });
    const a = make(fast);
    const b = make(right);
    const g = await b.request(request('OPS-4'));
    await b.approve(g.id, { approver: bob });
    await a.approve(g.id, { approver: carol }); // the fast instance records the last step
    const { grant, credentials } = await b.issue(g.id);
    const claims = await tokens.verifier.verify(credentials.api!.token!, { audience: 'api://prod/payments' });
    expect(claims.expiresAt.getTime() - right.now().getTime()).toBe(600_000);
    expect(Date.parse(grant.window.expiresAt!) - right.now().getTime()).toBe(600_000);
    expect(Date.parse(grant.window.hardLimitAt!) - right.now().getTime()).toBe(3_600_000);
    expectNonDecreasing(await b.history(g.id)); // the events still never go back in time
  });

  it('a clock stepped back during the executor call leaves honest evidence that verifies', async () => {
    const inner = createMemoryStore();
    const clock = manualClock();
    const tokens = await createTokenAuthority({ issuer: 'https://grantline.test', clock });
    const signer = await createJoseSigner({ privateJwk: (await generateSigningKey()).privateJwk });
    // Writing `issuing` takes 50 ms; during the executor call NTP steps the clock back 1 s.
    const store: typeof inner = {
      ...inner,
      async compareAndSet(g, v, ev) {
        const r = await inner.compareAndSet(g, v, ev);
        if (g.state === 'issuing') clock.advance(50);
        return r;
      },
    };
    const executor: typeof tokens.executor = {
      ...tokens.executor,
      async issue(ctx) {
        const r = await tokens.executor.issue(ctx);
        clock.advance(20 - 1000);
        return r;
      },
    };
    const gl = createGrantline({ store, policy, executors: [executor], clock, signer });
    const g = await gl.request(request('OPS-5'));
    await gl.approve(g.id, { approver: bob });
    await gl.approve(g.id, { approver: carol });
    clock.advance(1000);
    await gl.issue(g.id);
    await gl.revoke(g.id, { actor: alice, reason: 'done' });
    expectNonDecreasing(await gl.history(g.id));
    const r = await verifyEvidence(await gl.evidence(g.id), { keys: createJwks(signer) });
    expect(r.problems).toEqual([]);
  });

  it('an instance behind a fast one can still extend, and record uses on, the access it issued', async () => {
    const store = createMemoryStore();
    const fast = manualClock('2026-03-02T11:00:00.000Z');
    const right = manualClock('2026-03-02T10:00:00.000Z');
    const tokens = await createTokenAuthority({ issuer: 'https://grantline.test', clock: right });
    const withRules = {
      ...policy,
      rules: policy.rules.map((r) =>
        r.id === 'prod-api'
          ? {
              ...r,
              extension: { requiresApproval: false, maxExtensions: 1 },
              constraints: { timeWindow: { startHour: 9, endHour: 11 } }, // 09:00-11:00 UTC
            }
          : r,
      ),
    };
    const make = (clock: Clock) =>
      createGrantline({ store, policy: withRules, executors: [tokens.executor], clock });
    const a = make(fast);
    const b = make(right);
    const g = await b.request(request('OPS-6'));
    await b.approve(g.id, { approver: bob });
    await a.approve(g.id, { approver: carol }); // the fast instance (11:00) records the last step
    await b.issue(g.id); // 10:00, until 10:10 by b's clock
    right.advance(60_000);
    // A use at 10:01 by b's clock is inside the 09:00-11:00 window, whatever the floored step time.
    const used = await b.recordUsage(g.id, { sourceIp: '10.1.2.3', action: 'payments:read' });
    expect(used.state).toBe('issued');
    const ext = await b.extend(g.id, { actor: ciJob, seconds: 300, reason: 'more' });
    expect(ext.grant.window.extensions).toBe(1);
    expectNonDecreasing(await b.history(g.id));
  });
});
