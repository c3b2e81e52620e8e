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

describe('the record agrees with its events', () => {
  it('refuses a case row rewritten in the store (revocation, ticket, resource, credential ref, approval time)', async () => {
    const env = await setup();
    const { caseId } = await runFullCase(env);
    // A database UPDATE of the case row only: no event is touched, no key is needed.
    const g = structuredClone(await env.store.get(caseId)) as Payload;
    g.revocation.actor = { id: 'security-bot', kind: 'system' };
    g.revocation.trigger = 'violation';
    g.revocation.reason = 'anomaly detector';
    g.justification.ticket = 'OPS-0001';
    g.targets[0].resource = 'api://staging/readonly';
    g.targets[0].issuance.ref = { jti: 'case-9999:api', kid: 'other' };
    g.approvals[0].at = '2026-03-01T09:00:00.000Z';
    g.version += 1;
    await env.store.compareAndSet(g, g.version - 1, []);
    const bundle = await env.service.evidence(caseId);
    const r = await verifyEvidence(bundle, { keys: createJwks(env.signer!) });
    // The events say: revoked manually by alice ('task finished'), ticket OPS-1234, api://prod/payments,
    // jti case-0001:api; each rewritten field is named.
    assert.equal(r.valid, false, `accepted with problems ${JSON.stringify(r.problems)}`);
    const found = r.problems.map((x) => `${x.code} ${(x.path ?? []).join('.')}`);
    for (const f of [
      'RECORD_REVOCATION_MISMATCH record.revocation.actor',
      'RECORD_REVOCATION_MISMATCH record.revocation.trigger',
      'RECORD_REVOCATION_MISMATCH record.revocation.reason',
      'RECORD_JUSTIFICATION_MISMATCH record.justification.ticket',
      'RECORD_TARGETS_MISMATCH record.targets.0.resource',
      'RECORD_TARGETS_MISMATCH record.targets.0.issuance.ref',
      'RECORD_APPROVALS_MISMATCH record.approvals',
    ])
      assert.ok(found.includes(f), `${f} not in ${JSON.stringify(found)}`);
  });
});

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
