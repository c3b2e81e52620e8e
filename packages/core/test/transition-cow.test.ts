import { describe, expect, it } from 'vitest';
import { finalizeGrant, transition } from '../src/index.js';
import { runPaths } from './transition-paths.js';

describe('transition copy-on-write', () => {
  it('never writes to its input, through every command (inputs deep-frozen: a write throws)', () => {
    const steps = runPaths(transition, finalizeGrant);
    expect(steps.length).toBeGreaterThan(30);
    for (const s of steps) expect(s.after, `${s.path} step ${s.step}`).toBe(s.before);
  });

  it('shares the parts a command does not change and copies the ones it does', () => {
    const steps = runPaths(transition, finalizeGrant);
    const approve = steps.find((s) => s.path === 'happy' && s.step === 0)!;
    const input = JSON.parse(approve.before);
    const { next } = approve.result as { next: typeof input };
    expect(next.approvals).toHaveLength(1);
    expect(input.approvals).toHaveLength(0);
    // Walk the happy path's records: a revoked target's record is a new object, the input's is intact.
    const revoked = steps.find((s) => s.path === 'happy' && s.step === 9)!;
    const before = JSON.parse(revoked.before);
    const after = (revoked.result as { next: typeof before }).next;
    expect(before.targets[0].revocation.confirmedAt).toBeUndefined();
    expect(after.targets[0].revocation.confirmedAt).toBeDefined();
    expect(after.targets[1]).toEqual(before.targets[1]);
  });
});
