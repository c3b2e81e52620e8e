import { describe, expect, it } from 'vitest';
import {
  type AuditEvent,
  canonicalJson,
  chainEvents,
  eventHash,
  hashedPart,
  sha256Hex,
  verifyChain,
} from '../src/index.js';

// Drafts covering what canonical JSON must get right: key order, escapes, number forms, undefined.
const drafts = [
  {
    type: 'requested',
    actor: { id: 'req', kind: 'human' as const },
    data: {
      requester: { id: 'req', kind: 'human', roles: [], teams: [] },
      targets: [{ id: 't', system: 'noop', resource: 'db://x' }],
      durationSeconds: 600,
      reasons: [{ code: 'RULE_MATCHED', message: 'rule r (high risk) governs; 2 approval(s) required' }],
    },
  },
  {
    type: 'approval',
    actor: { id: 'x', kind: 'human' as const },
    actingRole: 'a',
    data: {
      approver: { id: 'x', kind: 'human', roles: ['a'], teams: [] },
      role: 'a',
      reason: 'ok \u00e9 \u2028 "q" \\ \u0001',
    },
  },
  {
    type: 'usage',
    actor: { id: 'svc', kind: 'workload' as const },
    actingRole: undefined,
    data: {
      at: '2026-12-01T09:00:00.000Z',
      n: 1.5e-7,
      big: 1e21,
      neg: -0,
      skip: undefined,
      arr: [1, undefined, 'z'],
      nested: { b: 2, a: 1, '\u00e9': 3, A: 4 },
    },
  },
];

describe('chainEvents', () => {
  const prev = { seq: 7, hash: 'a'.repeat(64) } as AuditEvent;
  const events = chainEvents('case-golden', '2026-12-01T09:00:00.000Z', prev, drafts);

  it('hashes exactly as before (stored chains and signed bundles depend on these bytes)', () => {
    // Computed with the implementation before chainEvents stopped building intermediate objects.
    expect(events.map((e) => e.hash)).toEqual([
      '948ad98cc7eacc7e9ae4f43837228609ead4dd585f8b249222949cff353e5663',
      'b1b158d451c630677c93a871c2736a073560db2520dcf4138431f8ed1dbb212a',
      'aadf06403416ac34bc0ac354ec618d7c4e0872e4587427286daf8a6835018f51',
    ]);
    // The events themselves, key order included.
    expect(sha256Hex(events.map((e) => JSON.stringify(e)).join('\n'))).toBe(
      'e57c7afea1c35ba02ef2cca7ee384963eba3d349803ad74f28e47b5647081c94',
    );
  });

  it('gives each event the hash of its hashed part, linked to its predecessor', () => {
    let prevHash = prev.hash;
    events.forEach((e, i) => {
      expect(e.seq).toBe(8 + i);
      expect(e.prevHash).toBe(prevHash);
      expect(e.hash).toBe(eventHash(e));
      expect(e.hash).toBe(sha256Hex(canonicalJson(hashedPart(e))));
      prevHash = e.hash;
    });
    expect(Object.keys(events[1]!)).toEqual([
      'seq',
      'caseId',
      'type',
      'at',
      'actor',
      'actingRole',
      'data',
      'prevHash',
      'hash',
    ]);
    expect('actingRole' in events[2]!).toBe(false);
  });

  it('starts a new case at seq 1 after the genesis hash, and verifyChain accepts it', () => {
    const fresh = chainEvents('c', '2026-12-01T09:00:00.000Z', undefined, drafts);
    expect(fresh[0]!.seq).toBe(1);
    expect(verifyChain('c', fresh).valid).toBe(true);
  });
});
