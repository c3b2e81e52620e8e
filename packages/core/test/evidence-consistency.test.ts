import assert from 'node:assert/strict';
import { createMemoryStore } from '@grantline/store-memory';
import { describe, it } from 'vitest';
import { z } from 'zod';
import {
  type AuditEvent,
  type EvidenceBundle,
  EVIDENCE_TYP,
  type Executor,
  canonicalJson,
  createGrantline,
  createJoseSigner,
  createJwks,
  generateSigningKey,
  sha256Hex,
  verifyEvidence,
} from '../src/index.js';
import {
  alice,
  carol,
  ciJob,
  errorCodes,
  manualClock,
  payloadOf,
  rechain,
  runFullCase,
  setEvents,
  setup,
} from './evidence-helpers.js';

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

  it("refuses a case row whose policy snapshot was loosened (usage constraints, proofs), bound by the request event's hash", async () => {
    const env = await setup();
    const { caseId } = await runFullCase(env);
    const requested = (await env.store.events(caseId))[0]!;
    const bundle0 = await env.service.evidence(caseId);
    assert.equal(
      (requested.data.policy as Payload).snapshotHash,
      (payloadOf(bundle0) as Payload).policy.snapshotHash,
    );
    // A database UPDATE of the case row only: the snapshot's CIDRs opened to the world, proofs dropped.
    const g = structuredClone(await env.store.get(caseId)) as Payload;
    g.policy = { ...g.policy, constraints: { sourceCidrs: ['0.0.0.0/0'] } };
    delete g.policy.requireProvenApprovers;
    g.version += 1;
    await env.store.compareAndSet(g, g.version - 1, []);
    const r = await verifyEvidence(await env.service.evidence(caseId), { keys: createJwks(env.signer!) });
    assert.equal(r.valid, false, `accepted with problems ${JSON.stringify(r.problems)}`);
    // The request event's hash binds it; the embedded policy document also disagrees.
    assert.deepEqual(errorCodes(r).sort(), ['POLICY_DOCUMENT_MISMATCH', 'POLICY_SNAPSHOT_MISMATCH']);
  });

  it('with the policy document embedded, a re-chained case whose snapshot cap was raised (10 h window) is refused', async () => {
    const env = await setup();
    const { caseId } = await runFullCase(env);
    const bundle = await env.service.evidence(caseId);
    assert.ok((payloadOf(bundle) as Payload).policy.document, 'the document is embedded');
    // Everything that states the cap rewritten consistently and re-chained: only the document is left.
    const r = await resigned(env, bundle, (p) => {
      p.policy.snapshot = {
        ...p.policy.snapshot,
        maxDurationSeconds: 36_000,
        extension: { requiresApproval: false, maxExtensions: 9 },
      };
      p.policy.snapshotHash = sha256Hex(canonicalJson(p.policy.snapshot));
      p.record.policy = p.policy.snapshot;
      const evs = eventsOf(p);
      (evs[0]!.data as Payload).policy.snapshotHash = p.policy.snapshotHash;
      (evs[0]!.data as Payload).durationSeconds = 36_000;
      p.record.window.durationSeconds = 36_000;
      const issued = evs.find((e) => e.type === 'issued')!;
      const exp = new Date(Date.parse(issued.at) + 36_000_000).toISOString();
      (issued.data as Payload).expiresAt = exp;
      p.record.window.expiresAt = exp;
      p.record.window.hardLimitAt = exp;
      setEvents(p, rechain(evs));
    });
    assert.equal(r.valid, false, `accepted: ${JSON.stringify(r.problems)}`);
    assert.ok(errorCodes(r).includes('POLICY_DOCUMENT_MISMATCH'), JSON.stringify(r.problems));
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

describe('break-glass follows the break-glass rule and its review is checked', () => {
  it('refuses break-glass on a rule that is not break-glass, replacing the quorum, reviewed by its own actor', async () => {
    const env = await setup();
    const { caseId } = await runFullCase(env);
    const bundle = await env.service.evidence(caseId);
    const r = await resigned(env, bundle, (p) => {
      const list = eventsOf(p).filter((e) => e.type !== 'approval');
      const i = list.findIndex((e) => e.type === 'approved');
      const due = '2026-03-02T11:00:00.000Z';
      list[i] = {
        ...list[i]!,
        type: 'breakglass.used',
        actor: { id: 'alice', kind: 'human' },
        data: { reason: 'x', reviewDueAt: due },
      };
      const last = list[list.length - 1]!;
      list.push({
        ...last,
        type: 'review',
        actor: { id: 'alice', kind: 'human' },
        data: { outcome: 'accepted' },
      });
      setEvents(p, rechain(list));
      p.record.approvals = [];
      p.record.breakGlass = {
        actor: alice,
        reason: 'x',
        at: list[1]!.at,
        reviewDueAt: due,
        reviewerRoles: ['security-officer'],
        review: { reviewer: alice, role: 'oncall', outcome: 'accepted', at: last.at },
      };
    });
    // The snapshot is still rule prod-api (2 approvals in distinct roles); no approval at all; self-review.
    assert.equal(r.valid, false, `accepted: ${JSON.stringify(r.problems)}`);
    for (const code of ['BREAKGLASS_RULE_MISMATCH', 'SELF_REVIEW', 'ROLE_NOT_QUALIFIED'] as const)
      assert.ok(errorCodes(r).includes(code), `${code} not in ${JSON.stringify(r.problems)}`);
  });

  it('refuses a real break-glass case whose review is rewritten as a self-review by its actor', async () => {
    const env = await setup();
    const g = await env.service.breakGlass({
      requester: alice,
      subject: ciJob,
      justification: { reason: 'payments down' },
      targets: [{ id: 'api', system: 'token', resource: 'api://prod/payments' }],
      durationSeconds: 900,
    });
    await env.service.issue(g.id);
    await env.service.review(g.id, { reviewer: carol, outcome: 'accepted' });
    await env.service.revoke(g.id, { actor: alice, reason: 'done' });
    const bundle = await env.service.evidence(g.id);
    assert.deepEqual((await verifyEvidence(bundle, { keys: createJwks(env.signer!) })).problems, []);
    // The service refuses alice reviewing her own break-glass (SELF_REVIEW); so does the verifier.
    const r = await resigned(env, bundle, (p) => {
      const list = eventsOf(p).map((e) =>
        e.type === 'review'
          ? { ...e, actor: { id: 'alice', kind: 'human' as const }, actingRole: 'oncall' }
          : e,
      );
      setEvents(p, rechain(list));
      p.record.breakGlass.review.reviewer = alice;
      p.record.breakGlass.review.role = 'oncall';
    });
    assert.equal(r.valid, false, `self-review accepted: ${JSON.stringify(r.problems)}`);
    assert.deepEqual(errorCodes(r), ['SELF_REVIEW', 'ROLE_NOT_QUALIFIED']);
  });

  it('refuses a rejected review after which the access was neither cancelled nor revoked', async () => {
    const env = await setup();
    const g = await env.service.breakGlass({
      requester: alice,
      subject: ciJob,
      justification: { reason: 'payments down' },
      targets: [{ id: 'api', system: 'token', resource: 'api://prod/payments' }],
      durationSeconds: 900,
    });
    await env.service.issue(g.id);
    await env.service.review(g.id, { reviewer: carol, outcome: 'rejected' });
    const bundle = await env.service.evidence(g.id);
    assert.equal((await verifyEvidence(bundle, { keys: createJwks(env.signer!) })).valid, true);
    const r = await resigned(env, bundle, (p) => {
      const list = eventsOf(p);
      setEvents(p, rechain(list.slice(0, list.findIndex((e) => e.type === 'review') + 1)));
      p.record.state = 'issued';
      delete p.record.revocation;
      for (const t of p.record.targets) {
        delete t.revocation;
        delete t.verification;
      }
    });
    assert.ok(errorCodes(r).includes('BREAKGLASS_REJECTED_NOT_ENDED'), JSON.stringify(r.problems));
  });
});

describe('the window stays within the rule', () => {
  it('refuses a credential window far beyond the rule maxDurationSeconds', async () => {
    const env = await setup();
    const { caseId } = await runFullCase(env);
    const bundle = await env.service.evidence(caseId);
    const far = '2036-03-02T10:31:35.000Z'; // rule prod-api: maxDurationSeconds 3600
    const r = await resigned(env, bundle, (p) => {
      setEvents(
        p,
        rechain(
          eventsOf(p).map((e) =>
            e.type === 'target.issued' || e.type === 'issued'
              ? { ...e, data: { ...e.data, expiresAt: far } }
              : e,
          ),
        ),
      );
      p.record.window.expiresAt = far;
      p.record.targets[0].issuance.expiresAt = far;
    });
    assert.equal(r.valid, false, `accepted: ${JSON.stringify(r.problems)}`);
    assert.deepEqual(errorCodes(r), ['WINDOW_EXCEEDS_MAX']);
  });
});

describe('the snapshot quorum is bound to the events', () => {
  it('refuses a lowered snapshot quorum covering a dropped approval, without the policy document', async () => {
    const env = await setup();
    const { caseId } = await runFullCase(env);
    const bundle = await env.service.evidence(caseId);
    const r = await resigned(env, bundle, (p) => {
      setEvents(
        p,
        rechain(
          eventsOf(p).filter(
            (e) => !(e.type === 'approval' && (e.data as Payload).role === 'security-officer'),
          ),
        ),
      );
      p.record.approvals = p.record.approvals.slice(0, 1);
      delete p.policy.document; // optional: absent whenever the producer runs a newer policy version
      p.policy.snapshot.approvals = { count: 1, roles: ['sre-lead'], distinctRoles: false };
      p.record.policy = p.policy.snapshot;
      p.policy.snapshotHash = sha256Hex(canonicalJson(p.policy.snapshot));
    });
    // The approved event records a quorum of 2 met under rule prod-api, and the request event the hash
    // of the snapshot the case was decided under.
    assert.equal(r.valid, false, `accepted: ${JSON.stringify(r.problems)}`);
    assert.deepEqual(errorCodes(r).sort(), [
      'POLICY_SNAPSHOT_MISMATCH', // the request event's snapshot hash
      'POLICY_SNAPSHOT_MISMATCH', // the approved event's quorum
      'RECORD_APPROVALS_MISMATCH',
    ]);
  });
});

describe('the extension cap runs from the first credential', () => {
  it('refuses an extension past maxDurationSeconds from the first credential, within it from the issued step', async () => {
    const clock = manualClock();
    // Issuing takes 10 minutes (an assignment being polled): the issued step is 600 s after the credential.
    const slow: Executor<Record<string, unknown>> = {
      system: 'slow',
      paramsSchema: z.record(z.string(), z.unknown()),
      async issue(ctx) {
        const expiresAt = new Date(clock.now().getTime() + 1_800_000);
        clock.advance(600_000);
        return { ref: { id: ctx.target.id }, expiresAt };
      },
      async renew(ctx) {
        return { expiresAt: ctx.expiresAt };
      },
      async revoke() {
        return {};
      },
      async verify() {
        return { status: 'absent', method: 'test', observation: {} };
      },
    };
    const signer = await createJoseSigner({ privateJwk: (await generateSigningKey()).privateJwk });
    const gl = createGrantline({
      store: createMemoryStore(),
      clock,
      signer,
      executors: [slow],
      executorTimeoutMs: 10_000,
      issuingTimeoutMs: 20_000,
      policy: {
        id: 'p',
        version: '1',
        owner: 'gov',
        rules: [
          {
            id: 'r',
            risk: 'medium',
            operator: 'ops',
            maxDurationSeconds: 3600,
            approvals: { count: 1, roles: ['sre-lead'] },
            extension: { requiresApproval: false, maxExtensions: 2 },
          },
        ],
      },
    });
    const g = await gl.request({
      requester: alice,
      subject: ciJob,
      justification: { reason: 'slow system' },
      targets: [{ id: 'a', system: 'slow', resource: 'r' }],
      durationSeconds: 1800,
    });
    await gl.approve(g.id, { approver: { id: 'bob', kind: 'human', roles: ['sre-lead'], teams: [] } });
    const { grant } = await gl.issue(g.id);
    await gl.extend(g.id, { actor: ciJob, seconds: 1800, reason: 'to the cap' });
    const bundle = await gl.evidence(g.id);
    const keys = createJwks(signer);
    const honest = await verifyEvidence(bundle, { keys });
    assert.deepEqual(errorCodes(honest), []);
    // The extension rewritten to 5 minutes past the cap from the first credential (still inside the
    // cap counted from the issued step, 10 minutes later), re-chained and re-signed.
    const first = Date.parse(grant.targets[0]!.issuance!.issuedAt);
    const past = new Date(first + 3_900_000).toISOString();
    const p = payloadOf(bundle) as Payload;
    const evs = eventsOf(p);
    const ext = evs.find((e) => e.type === 'extended')!;
    (ext.data as Payload).to = past;
    p.record.window.expiresAt = past;
    setEvents(p, rechain(evs));
    const text = canonicalJson(p);
    const r = await verifyEvidence({ payload: text, ...(await signer.sign(text, EVIDENCE_TYP)) }, { keys });
    assert.ok(errorCodes(r).includes('WINDOW_EXCEEDS_MAX'), JSON.stringify(r.problems));
  });
});
