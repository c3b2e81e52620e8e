import assert from 'node:assert/strict';
import { beforeAll, describe, it } from 'vitest';
import {
  type AuditEvent,
  type EvidenceBundle,
  type IdentityVerifier,
  type Principal,
  EVIDENCE_TYP,
  canonicalJson,
  createJwks,
  eventHash,
  verifyEvidence,
} from '../src/index.js';
import {
  alice,
  bob,
  carol,
  ciJob,
  errorCodes,
  payloadOf,
  rechain,
  runFullCase,
  setEvents,
  setup,
} from './evidence-helpers.js';

/**
 * Forgeries by someone who holds the signing key (or edited the database before the export): every
 * bundle here is re-signed with the real key, so the signature verifies and only the chain and
 * lifecycle checks of `verifyEvidence` stand between the forgery and an auditor. Where a test targets
 * a lifecycle rule, the edited events are re-chained (seq, prevHash, hash recomputed with `eventHash`)
 * so that the chain itself is consistent and the rule alone catches the edit.
 */

type Env = Awaited<ReturnType<typeof setup>>;
type Payload = ReturnType<typeof payloadOf>;
type Event = AuditEvent;

const errors = errorCodes;

const eventsOf = (p: Payload) => p.events as unknown as Event[];
const indexOf = (events: readonly Event[], type: string, nth = 0) => {
  const i = events.map((e, k) => (e.type === type ? k : -1)).filter((k) => k >= 0)[nth];
  assert.ok(i !== undefined, `no ${type} event #${nth}`);
  return i;
};

describe('forged evidence re-signed with the real key', () => {
  let env: Env;
  let bundle: EvidenceBundle;
  let keys: ReturnType<typeof createJwks>;

  /** Edits a copy of the payload, re-signs it with the real key and verifies it. */
  const forge = async (
    edit: (p: Payload) => void,
    from: { bundle: EvidenceBundle; env: Env } = { bundle, env },
  ) => {
    const p = payloadOf(from.bundle);
    edit(p);
    const text = canonicalJson(p);
    const forged = { payload: text, ...(await from.env.signer!.sign(text, EVIDENCE_TYP)) };
    const r = await verifyEvidence(forged, { keys: createJwks(from.env.signer!) });
    assert.ok(!errors(r).includes('SIGNATURE_INVALID'), 'the forgery carries a valid signature');
    assert.equal(r.kid, from.env.signer!.kid);
    return r;
  };
  /** Rewrites the event list and re-chains it. */
  const forgeEvents = (edit: (events: Event[]) => Event[]) =>
    forge((p) => setEvents(p, rechain(edit([...eventsOf(p)]))));

  beforeAll(async () => {
    env = await setup();
    const { caseId } = await runFullCase(env);
    bundle = await env.service.evidence(caseId);
    keys = createJwks(env.signer!);
  });

  it('the untouched bundle verifies, and re-signing it unchanged keeps it valid', async () => {
    const r = await verifyEvidence(bundle, { keys });
    assert.deepEqual(r.problems, []);
    assert.equal(r.valid, true);
    assert.deepEqual((await forge(() => {})).problems, []);
  });

  it('EVENT_OUT_OF_ORDER: a late issuance recorded while the case was still approved', async () => {
    // target.issued-late puts a revoked case back to revoking (lifecycle.ts, lateIssuance); outside a
    // case on its way out it is a forgery.
    const r = await forgeEvents((events) => {
      const i = indexOf(events, 'approved');
      const late: Event = {
        ...events[i]!,
        type: 'target.issued-late',
        data: { targetId: 'api', ref: { id: 'x' }, removed: false },
      };
      return [...events.slice(0, i + 1), late, ...events.slice(i + 1)];
    });
    assert.ok(errors(r).includes('EVENT_OUT_OF_ORDER'), JSON.stringify(r.problems));
  });

  it('REVOKED_BEFORE_ISSUANCE: the issuance events deleted, revocation left in place', async () => {
    // What a cover-up of "access was issued" looks like: the case reads requested → approved → revoked.
    const r = await forgeEvents((events) =>
      events.filter((e) => !['issue.started', 'target.issued', 'issued', 'usage'].includes(e.type)),
    );
    // Both the revocation request and the target's revocation are named; the record, which still
    // tells of the issuance (target issuance, window, usage), disagrees with the events.
    assert.deepEqual(errors(r), [
      'REVOKED_BEFORE_ISSUANCE',
      'REVOKED_BEFORE_ISSUANCE',
      'RECORD_TARGETS_MISMATCH',
      'RECORD_WINDOW_MISMATCH',
      'RECORD_WINDOW_MISMATCH',
      'RECORD_WINDOW_MISMATCH',
      'RECORD_USAGE_MISMATCH',
      'RECORD_USAGE_MISMATCH',
    ]);
    assert.match(r.problems[0]!.message, /revocation requested before anything was issued/);
    assert.match(r.problems[1]!.message, /target api revoked before issuance/);
    assert.equal(r.valid, false);
  });

  it('REVOCATION_INCOMPLETE: case marked revoked with a target that was never revoked', async () => {
    // Two targets; the revocation of the second is deleted along with its verification, and the
    // record still claims the case was revoked and verified.
    const two = await setup();
    const g = await two.service.request({
      requester: alice,
      subject: ciJob,
      justification: { reason: 'two systems', ticket: 'OPS-9' },
      targets: [
        { id: 'api', system: 'token', resource: 'api://prod/payments' },
        { id: 'ledger', system: 'token', resource: 'api://prod/ledger' },
      ],
      durationSeconds: 600,
    });
    await two.service.approve(g.id, { approver: bob });
    await two.service.approve(g.id, { approver: carol });
    await two.service.issue(g.id);
    assert.equal((await two.service.revoke(g.id, { actor: alice, reason: 'done' })).state, 'verified');
    const b2 = await two.service.evidence(g.id);
    const r = await forge(
      (p) =>
        setEvents(
          p,
          rechain(
            eventsOf(p).filter(
              (e) =>
                !(['target.revoked', 'target.verified'].includes(e.type) && e.data.targetId === 'ledger'),
            ),
          ),
        ),
      { bundle: b2, env: two },
    );
    // The missing verification of that target is named too, and the record's revocation and
    // verification of it, which no event states any more.
    assert.deepEqual(errors(r), [
      'REVOCATION_INCOMPLETE',
      'VERIFICATION_INCOMPLETE',
      'RECORD_TARGETS_MISMATCH',
      'RECORD_TARGETS_MISMATCH',
    ]);
    assert.match(
      r.problems.find((x) => x.code === 'REVOCATION_INCOMPLETE')!.message,
      /ledger has no revocation/,
    );
  });

  it('VERIFICATION_INCOMPLETE: case marked verified, the verification of removal deleted', async () => {
    const r = await forgeEvents((events) => events.filter((e) => e.type !== 'target.verified'));
    // And the record's verification of the target, which no event states any more.
    assert.deepEqual(errors(r), ['VERIFICATION_INCOMPLETE', 'RECORD_TARGETS_MISMATCH']);
    assert.match(r.problems[0]!.message, /removal of api was never verified/);
  });

  it('EVENT_OUT_OF_ORDER: a target revoked before revocation was requested', async () => {
    const r = await forgeEvents((events) => {
      const [revoked] = events.splice(indexOf(events, 'target.revoked'), 1);
      events.splice(indexOf(events, 'revoke.requested'), 0, {
        ...revoked!,
        at: events[indexOf(events, 'revoke.requested')]!.at,
      });
      return events;
    });
    assert.deepEqual(errors(r), ['EVENT_OUT_OF_ORDER']);
    assert.match(r.problems[0]!.message, /target revoked while the case was issued/);
  });

  it('CHAIN_PREV_MISMATCH: an event deleted, the rest renumbered and re-hashed but not re-linked', async () => {
    // The usage record deleted (nothing in the lifecycle depends on it, though the record's usage
    // count and last use no longer agree with the events), later events renumbered and
    // their hashes recomputed: each event's own hash is right, but the successor still points at the
    // hash of the deleted event.
    const r = await forge((p) => {
      const events = eventsOf(p);
      const gone = indexOf(events, 'usage');
      const kept = events.filter((_, i) => i !== gone);
      let prevHash = kept[gone - 1]!.hash;
      const out = kept.map((e, i) => {
        if (i < gone) return e;
        const { hash: _old, ...rest } = { ...e, seq: i + 1, prevHash: i === gone ? e.prevHash : prevHash };
        const hash = eventHash(rest);
        prevHash = hash;
        return { ...rest, hash };
      });
      setEvents(p, out);
    });
    assert.deepEqual(errors(r), ['CHAIN_PREV_MISMATCH', 'RECORD_USAGE_MISMATCH', 'RECORD_USAGE_MISMATCH']);
    const usageSeq = eventsOf(payloadOf(bundle))[indexOf(eventsOf(payloadOf(bundle)), 'usage')]!.seq;
    assert.equal(r.problems[0]!.seq, usageSeq, 'reported at the event that follows the gap');
  });

  it('DUPLICATE_APPROVER: the same approver counted twice, in two roles', async () => {
    // carol's approval rewritten as bob's, with bob claiming the second role: roles stay distinct and
    // the quorum counts two roles, so only the duplicate approver gives it away.
    const bobBoth: Principal = { ...bob, roles: ['sre-lead', 'security-officer'] };
    const r = await forge((p) => {
      const events = eventsOf(p).map((e) =>
        e.type === 'approval' && e.data.role === 'security-officer'
          ? { ...e, actor: { id: bob.id, kind: 'human' as const }, data: { ...e.data, approver: bobBoth } }
          : e,
      );
      setEvents(p, rechain(events));
      const approvals = p.record.approvals as { approver: Principal; role: string }[];
      approvals[1]!.approver = bobBoth;
    });
    assert.deepEqual(errors(r), ['DUPLICATE_APPROVER']);
    assert.match(r.problems[0]!.message, /bob approved twice/);
  });

  it('ROLE_NOT_QUALIFIED: two approvers of the same role where the rule requires distinct roles', async () => {
    const dave: Principal = { id: 'dave', kind: 'human', roles: ['sre-lead'], teams: ['sre'] };
    const r = await forge((p) => {
      const events = eventsOf(p).map((e) =>
        e.type === 'approval' && e.data.role === 'security-officer'
          ? {
              ...e,
              actor: { id: dave.id, kind: 'human' as const },
              actingRole: 'sre-lead',
              data: { ...e.data, approver: dave, role: 'sre-lead' },
            }
          : e,
      );
      setEvents(p, rechain(events));
      const approvals = p.record.approvals as { approver: Principal; role: string }[];
      approvals[1]!.approver = dave;
      approvals[1]!.role = 'sre-lead';
    });
    const distinct = r.problems.filter(
      (x) =>
        x.code === 'ROLE_NOT_QUALIFIED' && /approved twice where distinct roles are required/.test(x.message),
    );
    assert.equal(distinct.length, 1, JSON.stringify(r.problems));
    assert.deepEqual(errors(r).sort(), ['QUORUM_NOT_MET', 'ROLE_NOT_QUALIFIED']);
  });

  it('WORKLOAD_NOT_PROVEN: the workload proof stripped from a case whose rule requires it', async () => {
    // A host-side IdentityVerifier stands in for the IdP and the CI issuer (the jose one is tested in
    // identity.test.ts): the case is created for real with a proven workload and a proven approver.
    const identity: IdentityVerifier = {
      async verify(assertion, purpose) {
        return purpose === 'workload'
          ? { subject: assertion, issuer: 'https://ci.test', kid: 'ci-1', roles: [], claims: { run_id: '7' } }
          : { subject: assertion, issuer: 'https://idp.test', kid: 'idp-1', roles: ['sre-lead'], claims: {} };
      },
    };
    const proven = await setup({ identity });
    const g = await proven.service.request({
      requester: alice,
      subject: ciJob,
      justification: { reason: 'deploy', workload: ciJob.id },
      targets: [{ id: 'api', system: 'token', resource: 'api://proven/deploy' }],
      durationSeconds: 600,
      subjectAssertion: ciJob.id,
    });
    await proven.service.approve(g.id, { approver: { ...bob, roles: [] }, assertion: bob.id });
    await proven.service.issue(g.id);
    await proven.service.revoke(g.id, { actor: alice, reason: 'done' });
    const b3 = await proven.service.evidence(g.id);
    assert.deepEqual((await verifyEvidence(b3, { keys: createJwks(proven.signer!) })).problems, []);

    const strip = (x: unknown) => {
      const s = x as { claims?: { proof?: unknown } };
      assert.ok(s.claims?.proof, 'the subject carried a proof');
      delete s.claims!.proof;
    };
    const r = await forge(
      (p) => {
        strip(p.record.subject);
        const events = eventsOf(p);
        strip(events[0]!.data.subject);
        setEvents(p, rechain(events));
      },
      { bundle: b3, env: proven },
    );
    assert.deepEqual(errors(r), ['WORKLOAD_NOT_PROVEN']);
    assert.deepEqual(r.problems[0]!.path, ['record', 'subject', 'claims']);
  });
});
