import { readFileSync } from 'node:fs';
import { createMemoryStore } from '@grantline/store-memory';
import type { JSONWebKeySet } from 'jose';
import { describe, expect, it } from 'vitest';
import {
  type EvidenceBundle,
  type Executor,
  createGrantline,
  createJoseSigner,
  createJwks,
  createTokenAuthority,
  generateSigningKey,
  verifyEvidence,
} from '../src/index.js';
import { alice, bob, carol, ciJob, errorCodes, manualClock, policy, rechain } from './evidence-helpers.js';

/**
 * Bundles exported by the previous release (commit 6ca3499), before the request event recorded the
 * policy snapshot's hash and before the extension cap ran from the first credential's issue time:
 * a dual-control case, one whose executor took minutes to issue, and a break-glass case. Evidence
 * already handed to auditors must keep verifying.
 */
const fixtures = JSON.parse(
  readFileSync(new URL('./fixtures/bundles-6ca3499.json', import.meta.url), 'utf8'),
) as Record<string, { bundle: EvidenceBundle; keys: JSONWebKeySet }>;

describe('evidence from the previous release', () => {
  for (const [name, { bundle, keys }] of Object.entries(fixtures)) {
    it(`${name}: still verifies, and still fails when tampered with`, async () => {
      const r = await verifyEvidence(bundle, { keys });
      expect(r.problems.filter((p) => p.severity === 'error')).toEqual([]);
      expect(r.valid).toBe(true);
      const tampered = { ...bundle, payload: bundle.payload.replace('"verified"', '"issued"') };
      expect(tampered.payload).not.toBe(bundle.payload);
      expect((await verifyEvidence(tampered, { keys })).valid).toBe(false);
    });
  }
});

describe('a case requested by the previous release and moved on by this one', () => {
  it('verifies, whichever release issued it (its request event records no snapshot hash)', async () => {
    const clock = manualClock();
    const inner = createMemoryStore();
    // What the previous release wrote at request time: no policy.snapshotHash in the request event.
    const store: typeof inner = {
      ...inner,
      create(grant, events) {
        const evs = structuredClone(events);
        delete (evs[0]!.data.policy as Record<string, unknown>).snapshotHash;
        const chained = rechain(evs);
        const last = chained.at(-1)!;
        return inner.create({ ...grant, audit: { seq: last.seq, head: last.hash } }, chained);
      },
    };
    const authority = await createTokenAuthority({ issuer: 'https://grantline.test', clock });
    // Issuing takes 3 s, so the first credential and the issued step are 3 s apart.
    const slow: Executor<Record<string, unknown>> = {
      ...(authority.executor as unknown as Executor<Record<string, unknown>>),
      async issue(ctx) {
        clock.advance(3_000);
        return authority.executor.issue(ctx);
      },
    };
    const signer = await createJoseSigner({ privateJwk: (await generateSigningKey()).privateJwk });
    const gl = createGrantline({ store, policy, executors: [slow], clock, signer });
    const g = await gl.request({
      requester: alice,
      subject: ciJob,
      justification: { reason: 'rotate', ticket: 'OPS-1234' },
      targets: [{ id: 'api', system: 'token', resource: 'api://prod/payments' }],
      durationSeconds: 1800,
    });
    // The upgrade: everything from here on is this release.
    clock.advance(60_000);
    await gl.approve(g.id, { approver: bob });
    await gl.approve(g.id, { approver: carol });
    await gl.issue(g.id);
    clock.advance(60_000);
    await gl.revoke(g.id, { actor: alice, reason: 'done' });
    const r = await verifyEvidence(await gl.evidence(g.id), { keys: createJwks(signer) });
    expect(errorCodes(r)).toEqual([]);
  });
});
