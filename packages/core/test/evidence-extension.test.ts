import assert from 'node:assert/strict';
import { createMemoryStore } from '@grantline/store-memory';
import { beforeAll, describe, it } from 'vitest';
import {
  type AuditEvent,
  type EvidenceBundle,
  EVIDENCE_TYP,
  type PolicyInput,
  canonicalJson,
  createGrantline,
  createJoseSigner,
  createJwks,
  createTokenAuthority,
  generateSigningKey,
  verifyEvidence,
} from '../src/index.js';
import {
  alice,
  bob,
  carol,
  ciJob,
  errorCodes,
  manualClock,
  payloadOf,
  rechain,
  setEvents,
} from './evidence-helpers.js';

/**
 * Evidence of a case whose access was extended. An extension's approvals are its own quorum, kept in
 * the `extended` event (the record's approvals are those that allowed issuance): the untouched bundle
 * verifies, and a forged extension (re-signed with the real key, chain recomputed) is caught by the
 * rule it breaks.
 */

const policy: PolicyInput = {
  id: 'acme-jit',
  version: '2026-03',
  owner: 'security-governance',
  rules: [
    {
      id: 'prod-api',
      risk: 'high',
      match: { systems: ['token'] },
      operator: 'platform-team',
      maxDurationSeconds: 7200,
      approvals: { count: 2, roles: ['sre-lead', 'security-officer'], distinctRoles: true },
      extension: { requiresApproval: true, maxExtensions: 2 },
    },
  ],
};

describe('evidence of an extended case', () => {
  let bundle: EvidenceBundle;
  let signer: Awaited<ReturnType<typeof createJoseSigner>>;

  beforeAll(async () => {
    const clock = manualClock();
    const authority = await createTokenAuthority({ issuer: 'https://grantline.test', clock });
    signer = await createJoseSigner({ privateJwk: (await generateSigningKey()).privateJwk });
    const gl = createGrantline({
      store: createMemoryStore(),
      policy,
      executors: [authority.executor],
      clock,
      signer,
    });
    const g = await gl.request({
      requester: alice,
      subject: ciJob,
      justification: { reason: 'rotate keys', ticket: 'OPS-1' },
      targets: [{ id: 'api', system: 'token', resource: 'api://prod/payments' }],
      durationSeconds: 1800,
    });
    await gl.approve(g.id, { approver: bob });
    await gl.approve(g.id, { approver: carol });
    await gl.issue(g.id);
    clock.advance(60_000);
    const ext = await gl.extend(g.id, {
      actor: alice,
      seconds: 600,
      reason: 'migration runs long',
      approvals: [{ approver: bob }, { approver: carol }],
    });
    assert.equal(ext.grant.window.extensions, 1);
    assert.equal(ext.grant.approvals.length, 2, 'the record keeps the case approvals only');
    clock.advance(60_000);
    const done = await gl.revoke(g.id, { actor: alice, reason: 'done' });
    assert.equal(done.state, 'verified');
    bundle = await gl.evidence(g.id);
  });

  /** Edits the events of a copy of the payload, re-chains them, re-signs with the real key, verifies. */
  const forge = async (edit: (events: AuditEvent[]) => void) => {
    const p = payloadOf(bundle);
    const events = structuredClone(p.events) as unknown as AuditEvent[];
    edit(events);
    setEvents(p, rechain(events));
    const text = canonicalJson(p);
    const r = await verifyEvidence(
      { payload: text, ...(await signer.sign(text, EVIDENCE_TYP)) },
      {
        keys: createJwks(signer),
      },
    );
    assert.ok(!errorCodes(r).includes('SIGNATURE_INVALID'));
    return r;
  };
  const extension = (events: AuditEvent[]) => {
    const e = events.find((x) => x.type === 'extended');
    assert.ok(e, 'the case has an extended event');
    return e.data as { approvals: { approver: Record<string, unknown>; role: string }[] };
  };

  it('the untouched bundle verifies (extension approvals are not counted as case approvals)', async () => {
    const r = await verifyEvidence(bundle, { keys: createJwks(signer) });
    assert.deepEqual(r.problems, []);
    assert.deepEqual((await forge(() => {})).problems, []);
  });

  it('QUORUM_NOT_MET: an extension with one of its two approvals removed', async () => {
    const r = await forge((events) => {
      extension(events).approvals.pop();
    });
    assert.deepEqual(errorCodes(r), ['QUORUM_NOT_MET']);
  });

  it('SELF_APPROVAL: an extension approved by its own requester', async () => {
    const r = await forge((events) => {
      extension(events).approvals[0]!.approver = { ...alice, roles: ['sre-lead'] };
    });
    assert.ok(errorCodes(r).includes('SELF_APPROVAL'), JSON.stringify(r.problems));
  });

  it('ROLE_NOT_QUALIFIED: an extension approver who does not hold the role', async () => {
    const r = await forge((events) => {
      extension(events).approvals[1]!.approver.roles = ['developer'];
    });
    assert.deepEqual(errorCodes(r), ['ROLE_NOT_QUALIFIED']);
  });

  it('EXTENSION_NOT_ALLOWED: more extensions than the rule allows', async () => {
    const r = await forge((events) => {
      const i = events.findIndex((x) => x.type === 'extended');
      events.splice(i, 0, structuredClone(events[i]!), structuredClone(events[i]!));
    });
    // The record, which counts one extension, disagrees with the three events too.
    assert.deepEqual(errorCodes(r), ['EXTENSION_NOT_ALLOWED', 'RECORD_WINDOW_MISMATCH']);
  });

  it('EVENT_OUT_OF_ORDER: an extension recorded before issuance', async () => {
    const r = await forge((events) => {
      const i = events.findIndex((x) => x.type === 'extended');
      const [ext] = events.splice(i, 1);
      events.splice(
        events.findIndex((x) => x.type === 'issue.started'),
        0,
        ext!,
      );
    });
    assert.ok(errorCodes(r).includes('EVENT_OUT_OF_ORDER'), JSON.stringify(r.problems));
  });
});
