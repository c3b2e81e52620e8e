import assert from 'node:assert/strict';
import { describe, it } from 'vitest';
import {
  type AuditEvent,
  type EvidenceBundle,
  EVIDENCE_TYP,
  canonicalJson,
  createJwks,
  verifyEvidence,
} from '../src/index.js';
import { errorCodes, payloadOf, rechain, runFullCase, setEvents, setup } from './evidence-helpers.js';

/**
 * Bundles whose record or lifecycle is false although the chain is sound, all signed by the real
 * signer: the threat model of evidence-forgery.test.ts (a case row or its events changed in the
 * database before the export; the chain hashes are unkeyed, so re-chaining needs no key).
 */

type Env = Awaited<ReturnType<typeof setup>>;
// biome-ignore lint/suspicious/noExplicitAny: test surgery on a parsed payload
type Payload = any;

/** Edits a copy of the payload, re-signs it with the real key and verifies it. */
async function resigned(env: Env, bundle: EvidenceBundle, edit: (p: Payload) => void) {
  const p = payloadOf(bundle) as Payload;
  edit(p);
  const text = canonicalJson(p);
  return verifyEvidence(
    { payload: text, ...(await env.signer!.sign(text, EVIDENCE_TYP)) },
    { keys: createJwks(env.signer!) },
  );
}
const eventsOf = (p: Payload) => p.events as AuditEvent[];

describe('lifecycle transitions follow the transition table', () => {
  it('refuses access issued and then ended as expired, denied or cancelled, never revoked nor verified', async () => {
    const env = await setup();
    const { caseId } = await runFullCase(env);
    const bundle = await env.service.evidence(caseId);
    for (const end of ['expired', 'denied', 'cancelled']) {
      const r = await resigned(env, bundle, (p) => {
        const all = eventsOf(p);
        const kept = all.slice(0, all.findIndex((e) => e.type === 'usage') + 1); // ... issued, usage
        const last = kept[kept.length - 1]!;
        kept.push({ ...last, type: end, actor: { id: 'grantline', kind: 'system' }, data: { reason: 'x' } });
        setEvents(p, rechain(kept));
        p.record.state = end;
        delete p.record.revocation;
        for (const t of p.record.targets) {
          delete t.revocation;
          delete t.verification;
        }
      });
      assert.equal(r.valid, false, `${end} after issuance accepted: ${JSON.stringify(r.problems)}`);
      assert.ok(errorCodes(r).includes('EVENT_OUT_OF_ORDER'), JSON.stringify(r.problems));
    }
  });
});
