import { describe, expect, it } from 'vitest';
import {
  GRANT_STATES,
  type Grant,
  TERMINAL_STATES,
  TRANSITIONS,
  can,
  computeDue,
  transition,
  transitionEdges,
} from '../src/index.js';
import { paymentsRequest, olga, sam, setup } from './helpers.js';

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object') {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

describe('the transition table', () => {
  it('only names known states, and no edge leaves a terminal state', () => {
    for (const e of transitionEdges()) {
      expect(GRANT_STATES).toContain(e.from);
      expect(GRANT_STATES).toContain(e.to);
      if (TERMINAL_STATES.includes(e.from)) expect(e.to).toBe(e.from);
    }
  });

  it('refuses every command the table does not list, for every state', async () => {
    const env = await setup();
    const g = await env.gl.request(paymentsRequest());
    for (const state of GRANT_STATES) {
      for (const command of Object.keys(TRANSITIONS) as (keyof typeof TRANSITIONS)[]) {
        if (can(state, command)) continue;
        const rec: Grant = { ...g, state };
        expect(
          () => transition(rec, { type: command } as never, new Date()),
          `${command} from ${state}`,
        ).toThrow(/cannot/);
      }
    }
  });

  it('transition never mutates its input (records are shared copy-on-write)', async () => {
    const env = await setup();
    const g = await env.gl.request(paymentsRequest());
    await env.gl.approve(g.id, { approver: sam });
    const approved = await env.gl.approve(g.id, { approver: olga });
    const { grant: issued } = await env.gl.issue(g.id);
    const frozen = deepFreeze(structuredClone(issued));
    const before = JSON.stringify(frozen);
    const now = new Date(Date.parse(issued.window.expiresAt!) + 1);
    const r = transition(
      frozen,
      {
        type: 'requestRevoke',
        trigger: 'expiry',
        actor: { id: 's', kind: 'system' },
        reason: 'x',
        resumeAt: now.toISOString(),
      },
      now,
    );
    const r2 = transition(
      deepFreeze(r.next),
      { type: 'targetRevoked', targetId: 'payments', alreadyGone: false, resumeAt: now.toISOString() },
      now,
    );
    const r3 = transition(
      deepFreeze(r2.next),
      {
        type: 'targetVerifyFailed',
        targetId: 'payments',
        present: true,
        nextAt: now.toISOString(),
        exhausted: true,
      },
      now,
    );
    expect(r3.next.state).toBe('revoking');
    expect(JSON.stringify(frozen)).toBe(before);
    expect(approved.state).toBe('approved');
  });

  it('computes when the sweeper must look next', async () => {
    const env = await setup();
    const g = await env.gl.request(paymentsRequest());
    expect(computeDue(g)).toBe(g.window.requestExpiresAt);
    expect(computeDue({ ...g, state: 'verified' })).toBeNull();
    expect(
      computeDue({ ...g, state: 'issued', window: { ...g.window, expiresAt: '2030-01-01T00:00:00.000Z' } }),
    ).toBe('2030-01-01T00:00:00.000Z');
  });
});
