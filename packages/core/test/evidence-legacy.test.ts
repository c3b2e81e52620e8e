import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { JSONWebKeySet } from 'jose';
import { type EvidenceBundle, verifyEvidence } from '../src/index.js';

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
