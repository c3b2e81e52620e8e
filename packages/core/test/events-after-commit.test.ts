import { type MemoryStore, createMemoryStore } from '@grantline/store-memory';
import { describe, expect, it } from 'vitest';
import {
  ErrorCodes,
  GRANTLINE_EVENTS,
  type Grant,
  type GrantStore,
  GrantlineError,
  type GrantlineEventName,
  type GrantlineEventPayload,
  createGrantline,
  createTokenAuthority,
} from '../src/index.js';
import { ciJob, manualClock, olga, paymentsRequest, policy, sam } from './helpers.js';

// Events are announced only once their transition is durable: a listener that reads the store sees
// the state the event announces, and an attempt that lost a compare-and-set announces nothing.

/**
 * Wraps a store: records every committed version per case (so a listener can tell, synchronously,
 * whether what it is told about has been committed yet) and can make compare-and-set lose once.
 */
function observedStore(inner: MemoryStore) {
  const committed = new Map<string, Grant[]>();
  let conflictsToInject = 0;
  let conflictsSeen = 0;
  const store: GrantStore = {
    ...inner,
    async compareAndSet(grant, expectedVersion, events) {
      if (conflictsToInject > 0) {
        conflictsToInject--;
        conflictsSeen++;
        throw new GrantlineError(ErrorCodes.CONFLICT, 'injected: lost the race', { retryable: true });
      }
      try {
        const stored = await inner.compareAndSet(grant, expectedVersion, events);
        committed.set(stored.id, [...(committed.get(stored.id) ?? []), stored]);
        return stored;
      } catch (err) {
        conflictsSeen++;
        throw err;
      }
    },
  };
  return {
    store,
    committed,
    loseNextCompareAndSet(n = 1) {
      conflictsToInject += n;
    },
    conflicts: () => conflictsSeen,
  };
}

async function service(latencyMs = 0) {
  const clock = manualClock();
  const observed = observedStore(createMemoryStore({ latencyMs }));
  const tokens = await createTokenAuthority({ issuer: 'https://grantline.test', clock });
  const gl = createGrantline({ store: observed.store, policy, executors: [tokens.executor], clock });
  return { clock, gl, tokens, ...observed };
}

interface Seen {
  event: GrantlineEventName;
  version: number;
  state: string;
  /** Was this version already committed when the listener ran (checked synchronously)? */
  committedAtEmit: boolean;
}

function recordAll(env: Awaited<ReturnType<typeof service>>): Seen[] {
  const seen: Seen[] = [];
  for (const event of GRANTLINE_EVENTS) {
    env.gl.on(event, (p: GrantlineEventPayload) => {
      const versions = env.committed.get(p.caseId) ?? [];
      seen.push({
        event,
        version: p.grant.version,
        state: p.grant.state,
        committedAtEmit: versions.some((g) => g.version === p.grant.version && g.state === p.grant.state),
      });
    });
  }
  return seen;
}

describe('events are emitted only after commit', () => {
  it('a grant:approved listener reading the store sees the committed approved case', async () => {
    const env = await service();
    const reads: { payload: Grant; stored: Grant | null; viaService: Grant }[] = [];
    const pending: Promise<void>[] = [];
    env.gl.on('grant:approved', (p: GrantlineEventPayload) => {
      pending.push(
        (async () => {
          const stored = await env.store.get(p.caseId);
          const viaService = await env.gl.get(p.caseId);
          reads.push({ payload: p.grant, stored, viaService });
        })(),
      );
    });
    const g = await env.gl.request(paymentsRequest());
    await env.gl.approve(g.id, { approver: sam });
    expect(pending).toHaveLength(0); // one approval of two is not a quorum
    const approved = await env.gl.approve(g.id, { approver: olga });
    await Promise.all(pending);
    expect(reads).toHaveLength(1);
    const [r] = reads;
    expect(r!.payload.version).toBe(approved.version);
    expect(r!.stored).toMatchObject({ state: 'approved', version: approved.version });
    expect(r!.stored!.approvals.map((a) => a.approver.id)).toEqual(['sam', 'olga']);
    expect(r!.viaService).toMatchObject({ state: 'approved', version: approved.version });
  });

  it('every event of a whole case names a version that was committed when the listener ran', async () => {
    const env = await service();
    const seen = recordAll(env);
    const g = await env.gl.request(paymentsRequest());
    await env.gl.approve(g.id, { approver: sam });
    await env.gl.approve(g.id, { approver: olga });
    await env.gl.issue(g.id);
    await env.gl.recordUsage(g.id, { sourceIp: '10.0.0.1', action: 'payments:write' });
    const done = await env.gl.complete(g.id, { actor: ciJob, reason: 'done' });
    expect(done.state).toBe('verified');
    const names = seen.map((s) => s.event);
    for (const e of [
      'grant:approval',
      'grant:approved',
      'grant:issued',
      'grant:used',
      'grant:revoked',
      'grant:verified',
    ])
      expect(names).toContain(e);
    // grant:requested is emitted by create, not compare-and-set; everything else must be committed.
    expect(seen.filter((s) => s.event !== 'grant:requested' && !s.committedAtEmit)).toEqual([]);
  });

  it('an attempt whose compare-and-set lost emits nothing; the retry emits exactly once', async () => {
    const env = await service();
    const seen = recordAll(env);
    const g = await env.gl.request(paymentsRequest());
    env.loseNextCompareAndSet();
    const after = await env.gl.approve(g.id, { approver: sam });
    expect(env.conflicts()).toBe(1);
    expect(after.version).toBe(2);
    expect(seen.filter((s) => s.event === 'grant:approval')).toEqual([
      { event: 'grant:approval', version: 2, state: 'requested', committedAtEmit: true },
    ]);

    // The quorum-completing approval loses twice; still one grant:approval and one grant:approved.
    env.loseNextCompareAndSet(2);
    const approved = await env.gl.approve(g.id, { approver: olga });
    expect(env.conflicts()).toBe(3);
    expect(approved).toMatchObject({ state: 'approved', version: 3 });
    expect(seen.filter((s) => s.event === 'grant:approval').map((s) => s.version)).toEqual([2, 3]);
    expect(seen.filter((s) => s.event === 'grant:approved')).toEqual([
      { event: 'grant:approved', version: 3, state: 'approved', committedAtEmit: true },
    ]);
  });

  it('two approvals racing on a slow store: one set of events per committed version, none for the loser', async () => {
    const env = await service(3);
    const seen = recordAll(env);
    const g = await env.gl.request(paymentsRequest());
    await Promise.all([env.gl.approve(g.id, { approver: sam }), env.gl.approve(g.id, { approver: olga })]);
    // Both read version 1, so one of them lost a compare-and-set and re-derived its approval.
    expect(env.conflicts()).toBeGreaterThanOrEqual(1);
    const final = await env.gl.get(g.id);
    expect(final).toMatchObject({ state: 'approved', version: 3 });

    const perVersion = new Map<string, number>();
    for (const s of seen) {
      if (s.event === 'grant:requested') continue;
      const key = `${s.event}@${s.version}`;
      perVersion.set(key, (perVersion.get(key) ?? 0) + 1);
    }
    expect(Object.fromEntries(perVersion)).toEqual({
      'grant:approval@2': 1,
      'grant:approval@3': 1,
      'grant:approved@3': 1,
    });
    expect(seen.every((s) => s.event === 'grant:requested' || s.committedAtEmit)).toBe(true);
    // The committed history agrees: two approvals, versions 2 and 3, nothing else.
    expect(env.committed.get(g.id)!.map((c) => [c.version, c.state])).toEqual([
      [2, 'requested'],
      [3, 'approved'],
    ]);
  });
});
