import { describe, expect, it } from 'vitest';
import { main } from '../examples/evidence.js';

describe('the code of docs/evidence.md', () => {
  it('signs a bundle that verifies offline, with proven parties, a checkpoint and a rotated key', async () => {
    const r = await main();
    expect(r.problems).toEqual([]);
    expect(r.valid).toBe(true);
    expect(r.storeProblems).toEqual([]);
    expect(r.checkpoints).toBeGreaterThanOrEqual(1);

    // The published JWKS holds the current and the retired public key, and no private member.
    expect(r.jwks.keys.map((k) => k.kid)).toEqual([r.signerKid, r.retiredKid]);
    for (const k of r.jwks.keys) expect(k).not.toHaveProperty('d');

    // Both parties are proven, and the proofs are in the signed payload.
    expect(r.payload.signer.kid).toBe(r.signerKid);
    expect(r.payload.record.state).toBe('verified');
    const approval = r.payload.events.find((e: { type: string }) => e.type === 'approval');
    expect(approval.data.proof).toMatchObject({
      issuer: 'https://idp.example/realms/staff',
      subject: 'olga',
    });
    expect(approval.actingRole).toBe('service-owner');
    expect(r.payload.record.subject.claims.proof).toMatchObject({
      issuer: 'https://token.actions.githubusercontent.com',
    });

    // No secret is in the bundle.
    expect(r.secrets.length).toBeGreaterThan(0);
    for (const s of r.secrets) expect(r.bundleText).not.toContain(s);

    // Rotation: the retired key still verifies its bundles; without it in the JWKS they fail.
    expect(r.withRetired.valid).toBe(true);
    expect(r.withRetired.kid).toBe(r.retiredKid);
    expect(r.withoutRetired.valid).toBe(false);
    expect(r.withoutRetired.problems.map((p) => p.code)).toContain('KEY_UNKNOWN');
  });
});
