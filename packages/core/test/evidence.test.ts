import assert from 'node:assert/strict';
import fc from 'fast-check';
import { SignJWT, base64url, generateSecret } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type AuditEvent,
  type EvidenceBundle,
  type EvidenceProblemCode,
  type Signer,
  EVIDENCE_TYP,
  canonicalJson,
  createJoseSigner,
  createJwks,
  generateSigningKey,
  sha256Hex,
  verifyEvidence,
} from '../src/index.js';
import { alice, bob, carol, ciJob, payloadOf, rechain, runFullCase, setup } from './evidence-helpers.js';

type Env = Awaited<ReturnType<typeof setup>>;
type Payload = ReturnType<typeof payloadOf>;

async function resign(payload: unknown, signer: Signer): Promise<EvidenceBundle> {
  const text = canonicalJson(payload);
  const sig = await signer.sign(text, EVIDENCE_TYP);
  return { payload: text, ...sig };
}

/** Replaces the signed payload without re-signing: what an attacker without the key can do. */
function forge(b: EvidenceBundle, edit: (p: Payload) => void): EvidenceBundle {
  const p = payloadOf(b);
  edit(p);
  return { ...b, payload: canonicalJson(p) };
}

const codes = (r: { problems: { code: string; severity: string }[] }) =>
  r.problems.filter((p) => p.severity === 'error').map((p) => p.code);

describe('evidence bundles', () => {
  let env: Env;
  let bundle: EvidenceBundle;
  let token: string;
  let caseId: string;
  let jwks: ReturnType<typeof createJwks>;

  beforeAll(async () => {
    env = await setup();
    ({ caseId, token } = await runFullCase(env));
    bundle = await env.service.evidence(caseId);
    jwks = createJwks(env.signer!);
  });

  it('verifies the untouched bundle of a real case, offline, with only the public JWKS', async () => {
    const text = JSON.stringify(bundle);
    const r = await verifyEvidence(JSON.parse(text), { keys: JSON.parse(JSON.stringify(jwks)) });
    assert.deepEqual(r.problems, []);
    assert.equal(r.valid, true);
    assert.equal(r.kid, env.signer!.kid);
    const p = r.payload!;
    // Who requested, who approved in which role, who used it from where, who removed it, who verified.
    assert.equal(p.record.requester.id, 'alice');
    assert.deepEqual(
      p.record.approvals.map((a) => [a.approver.id, a.role]),
      [
        ['bob', 'sre-lead'],
        ['carol', 'security-officer'],
      ],
    );
    const usage = p.events.find((e) => e.type === 'usage')!;
    assert.equal(usage.data.sourceIp, '10.1.2.3');
    assert.equal(usage.data.action, 'keys:rotate');
    assert.equal(p.events.find((e) => e.type === 'revoke.requested')!.actor.id, 'alice');
    assert.match(p.events.find((e) => e.type === 'target.verified')!.actor.id, /^executor:token@/);
    assert.equal(p.record.state, 'verified');
    assert.equal(p.policy.document?.id, 'acme-jit');
  });

  it('holds no secret: not the issued token, not the signing key', () => {
    const text = JSON.stringify(bundle);
    assert.ok(token.length > 50);
    assert.equal(text.includes(token), false);
    assert.equal(text.includes(token.split('.')[2]!), false, 'token signature must not leak');
    const d = env.keyPair.privateJwk.d!;
    assert.equal(text.includes(d), false);
    assert.equal(JSON.stringify(jwks).includes(d), false, 'the JWKS carries public keys only');
  });

  it('grows linearly with the number of events', async () => {
    const sizes: number[] = [];
    for (const uses of [0, 100, 200]) {
      const e = await setup();
      const g = await e.service.request({
        requester: alice,
        subject: ciJob,
        justification: { reason: 'r', ticket: 'OPS-1' },
        targets: [{ id: 'api', system: 'token', resource: 'api://prod/x' }],
        durationSeconds: 600,
      });
      await e.service.approve(g.id, { approver: bob });
      await e.service.approve(g.id, { approver: carol });
      await e.service.issue(g.id);
      for (let i = 0; i < uses; i++)
        await e.service.recordUsage(g.id, { sourceIp: '10.0.0.1', action: 'read' });
      sizes.push(JSON.stringify(await e.service.evidence(g.id)).length);
    }
    const [s0, s100, s200] = sizes as [number, number, number];
    const first = s100 - s0;
    const second = s200 - s100;
    assert.ok(first > 100 * 200, `each event adds bytes (${first})`);
    assert.ok(Math.abs(second - first) / first < 0.05, `linear growth: +${first} then +${second}`);
  });

  it('exports a consistent bundle while the case keeps changing', async () => {
    const e = await setup({ latencyMs: 1 });
    const g = await e.service.request({
      requester: alice,
      subject: ciJob,
      justification: { reason: 'busy', ticket: 'OPS-2' },
      targets: [{ id: 'api', system: 'token', resource: 'api://prod/x' }],
      durationSeconds: 600,
    });
    await e.service.approve(g.id, { approver: bob });
    await e.service.approve(g.id, { approver: carol });
    await e.service.issue(g.id);
    const writer = (async () => {
      for (let i = 0; i < 25; i++)
        await e.service.recordUsage(g.id, { sourceIp: '10.0.0.1', action: `op-${i}` });
    })();
    const keys = createJwks(e.signer!);
    const results = [];
    for (let i = 0; i < 10; i++) results.push(await verifyEvidence(await e.service.evidence(g.id), { keys }));
    await writer;
    assert.ok(
      results.every((r) => r.valid),
      JSON.stringify(results.flatMap((r) => r.problems)),
    );
    assert.ok(
      new Set(results.map((r) => r.payload!.events.length)).size > 1,
      'bundles were taken while events were appended',
    );
  });

  it('refuses to produce evidence without a signer (ERR_EVIDENCE)', async () => {
    const e = await setup({ signer: null });
    const { caseId: id } = await runFullCase(e);
    await expect(e.service.evidence(id)).rejects.toMatchObject({ code: 'ERR_EVIDENCE' });
  });

  describe('tampering without the key is detected with the matching problem', () => {
    const cases: [string, (p: Payload) => void, EvidenceProblemCode][] = [
      [
        'edit an event field',
        (p) => (p.events[3]!.data = { ...(p.events[3]!.data as object), role: 'security-officer' }),
        'CHAIN_HASH_MISMATCH',
      ],
      ['delete an event', (p) => p.events.splice(2, 1), 'CHAIN_SEQ_GAP'],
      ['delete the last event', (p) => p.events.pop(), 'RECORD_HEAD_MISMATCH'],
      ['insert an event', (p) => p.events.splice(3, 0, { ...p.events[2]! }), 'CHAIN_SEQ_GAP'],
      [
        'reorder two events',
        (p) => ([p.events[2], p.events[3]] = [p.events[3]!, p.events[2]!]),
        'CHAIN_SEQ_GAP',
      ],
      [
        'change the policy snapshot',
        (p) => ((p.policy as { snapshot: { approvals: { count: number } } }).snapshot.approvals.count = 1),
        'POLICY_SNAPSHOT_MISMATCH',
      ],
    ];
    for (const [name, edit, code] of cases) {
      it(name, async () => {
        const r = await verifyEvidence(forge(bundle, edit), { keys: jwks });
        assert.equal(r.valid, false);
        assert.ok(codes(r).includes('SIGNATURE_INVALID'), `signature: ${codes(r)}`);
        assert.ok(codes(r).includes(code), `${code} expected in ${codes(r)}`);
      });
    }

    it('swap the case record for another case', async () => {
      const other = await runFullCase(env, ' again');
      const otherRecord = payloadOf(await env.service.evidence(other.caseId)).record;
      const r = await verifyEvidence(
        forge(bundle, (p) => (p.record = otherRecord)),
        { keys: jwks },
      );
      assert.ok(codes(r).includes('SIGNATURE_INVALID'));
      assert.ok(codes(r).includes('RECORD_CASE_MISMATCH'));
      assert.ok(codes(r).includes('RECORD_HEAD_MISMATCH'));
    });

    it('editing any field of any event, one at a time', async () => {
      const p = payloadOf(bundle);
      let checked = 0;
      for (let i = 0; i < p.events.length; i++) {
        for (const field of Object.keys(p.events[i]!)) {
          const r = await verifyEvidence(
            forge(bundle, (q) => {
              const e = q.events[i]!;
              const v = e[field];
              e[field] =
                typeof v === 'number'
                  ? v + 1
                  : typeof v === 'string'
                    ? `${v}x`
                    : { ...(v as object), tampered: true };
            }),
            { keys: jwks },
          );
          assert.equal(r.valid, false, `event ${i + 1}.${field}`);
          assert.ok(codes(r).includes('SIGNATURE_INVALID'));
          checked += 1;
        }
      }
      assert.ok(checked > 100);
    });

    it('re-signing with a key not in the JWKS', async () => {
      const rogue = await createJoseSigner({ privateJwk: (await generateSigningKey()).privateJwk });
      const p = payloadOf(bundle);
      (p.signer as { kid: string }).kid = rogue.kid;
      const r = await verifyEvidence(await resign(p, rogue), { keys: jwks });
      assert.deepEqual(codes(r), ['KEY_UNKNOWN']);
    });

    it('a rogue key reusing the trusted kid fails the signature', async () => {
      const rogue = await createJoseSigner({
        privateJwk: (await generateSigningKey()).privateJwk,
        kid: env.signer!.kid,
      });
      const r = await verifyEvidence(await resign(payloadOf(bundle), rogue), { keys: jwks });
      assert.deepEqual(codes(r), ['SIGNATURE_INVALID']);
    });

    it('alg none and HMAC with the public key are refused', async () => {
      const none = {
        ...bundle,
        protected: base64url.encode(
          JSON.stringify({ alg: 'none', kid: env.signer!.kid, typ: EVIDENCE_TYP, b64: false, crit: ['b64'] }),
        ),
        signature: '',
      };
      assert.ok(
        codes(await verifyEvidence(none, { keys: jwks })).some(
          (c) => c === 'SIGNATURE_ALG_REFUSED' || c === 'SIGNATURE_MALFORMED',
        ),
      );
      const none2 = { ...none, signature: 'AAAA' };
      assert.deepEqual(codes(await verifyEvidence(none2, { keys: jwks })), ['SIGNATURE_ALG_REFUSED']);
      // HS256 keyed with the public key's bytes: the classic algorithm-confusion forgery.
      const pubBytes = new TextEncoder().encode(JSON.stringify(env.signer!.publicJwk));
      const forged = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).sign(pubBytes);
      const header = base64url.encode(
        JSON.stringify({ alg: 'HS256', kid: env.signer!.kid, typ: EVIDENCE_TYP, b64: false, crit: ['b64'] }),
      );
      const hs = { ...bundle, protected: header, signature: forged.split('.')[2]! };
      assert.deepEqual(codes(await verifyEvidence(hs, { keys: jwks })), ['SIGNATURE_ALG_REFUSED']);
      assert.ok((await generateSecret('HS256')) !== undefined);
    });

    it('a non-canonical spelling of the signature is refused', async () => {
      const sig = bundle.signature;
      const last = sig[sig.length - 1]!;
      // The last base64url character of a 64-byte signature carries 4 unused bits.
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      const idx = alphabet.indexOf(last);
      const twin = alphabet[(idx & ~0b1111) | ((idx + 1) & 0b1111)]!;
      assert.equal(
        Buffer.from(sig.slice(0, -1) + twin, 'base64url').equals(Buffer.from(sig, 'base64url')),
        true,
      );
      const r = await verifyEvidence({ ...bundle, signature: sig.slice(0, -1) + twin }, { keys: jwks });
      assert.equal(r.valid, false);
    });

    it('extra members and non-JSON are malformed', async () => {
      assert.deepEqual(codes(await verifyEvidence({ ...bundle, note: 'x' }, { keys: jwks })), [
        'BUNDLE_MALFORMED',
      ]);
      assert.deepEqual(codes(await verifyEvidence('{not json', { keys: jwks })), ['BUNDLE_MALFORMED']);
      assert.deepEqual(codes(await verifyEvidence(null, { keys: jwks })), ['BUNDLE_MALFORMED']);
    });

    it('property: any single-byte edit anywhere in the bundle is detected', async () => {
      const bytes = Buffer.from(JSON.stringify(bundle), 'utf8');
      await fc.assert(
        fc.asyncProperty(
          fc.nat({ max: bytes.length - 1 }),
          fc.integer({ min: 1, max: 255 }),
          async (at, delta) => {
            const copy = Buffer.from(bytes);
            copy[at] = (copy[at]! + delta) % 256;
            const r = await verifyEvidence(copy.toString('utf8'), { keys: jwks });
            return r.valid === false;
          },
        ),
        { numRuns: 400 },
      );
    });
  });

  describe('a trusted signer over inconsistent content is still caught (database tampered before export)', () => {
    const bad = async (edit: (p: Payload) => void) => {
      const p = payloadOf(bundle);
      edit(p);
      return verifyEvidence(await resign(p, env.signer!), { keys: jwks });
    };
    const withEvents = (p: Payload, events: AuditEvent[]) => {
      const chained = rechain(events);
      p.events = chained as never;
      const last = chained[chained.length - 1]!;
      p.chain = { seq: last.seq, head: last.hash };
      (p.record as { audit: unknown }).audit = { seq: last.seq, head: last.hash };
    };
    const evs = (p: Payload) => p.events as unknown as AuditEvent[];

    it('an edited event in the store', async () => {
      const r = await bad((p) => ((p.events[4]!.data as Record<string, unknown>).sourceIp = '8.8.8.8'));
      assert.ok(codes(r).includes('CHAIN_HASH_MISMATCH'));
      assert.equal(codes(r).includes('SIGNATURE_INVALID'), false);
    });

    it('an approval removed and the chain recomputed: quorum not met, record disagrees', async () => {
      const r = await bad((p) =>
        withEvents(
          p,
          evs(p).filter((e) => !(e.type === 'approval' && e.data.role === 'security-officer')),
        ),
      );
      assert.ok(codes(r).includes('QUORUM_NOT_MET'), String(codes(r)));
      assert.ok(codes(r).includes('RECORD_APPROVALS_MISMATCH'));
    });

    it('the requester approving their own case', async () => {
      const r = await bad((p) =>
        withEvents(
          p,
          evs(p).map((e) =>
            e.type === 'approval' && e.data.role === 'sre-lead'
              ? {
                  ...e,
                  actor: { id: 'alice', kind: 'human' },
                  data: { ...e.data, approver: { ...alice, roles: ['sre-lead'] } },
                }
              : e,
          ),
        ),
      );
      assert.ok(codes(r).includes('SELF_APPROVAL'), String(codes(r)));
    });

    it('an approver from the operator team, a role not held, a non-qualifying role', async () => {
      const r = await bad((p) =>
        withEvents(
          p,
          evs(p).map((e) =>
            e.type === 'approval' && e.data.role === 'sre-lead'
              ? {
                  ...e,
                  data: { ...e.data, approver: { ...bob, teams: ['platform-team'], roles: ['developer'] } },
                }
              : e,
          ),
        ),
      );
      assert.ok(codes(r).includes('OPERATOR_APPROVAL'));
      assert.ok(codes(r).includes('ROLE_NOT_QUALIFIED'));
    });

    it('issuance before approval', async () => {
      const r = await bad((p) => {
        const list = evs(p);
        const approved = list.findIndex((e) => e.type === 'approved');
        const started = list.findIndex((e) => e.type === 'issue.started');
        const [a] = list.splice(approved, 1);
        list.splice(started, 0, a!);
        withEvents(p, list);
      });
      assert.ok(codes(r).includes('ISSUED_WITHOUT_APPROVAL'), String(codes(r)));
    });

    it('verification before revocation', async () => {
      const r = await bad((p) => {
        const list = evs(p);
        const rv = list.findIndex((e) => e.type === 'target.revoked');
        const vf = list.findIndex((e) => e.type === 'target.verified');
        [list[rv], list[vf]] = [list[vf]!, list[rv]!];
        withEvents(p, list);
      });
      assert.ok(codes(r).includes('VERIFIED_BEFORE_REVOCATION'), String(codes(r)));
    });

    it('record state or approvals that disagree with the events', async () => {
      assert.ok(
        codes(await bad((p) => ((p.record as { state: string }).state = 'issued'))).includes(
          'RECORD_STATE_MISMATCH',
        ),
      );
      assert.ok(
        codes(await bad((p) => (p.record as { approvals: unknown[] }).approvals.pop())).includes(
          'RECORD_APPROVALS_MISMATCH',
        ),
      );
    });

    it('a snapshot that no longer matches the embedded policy document', async () => {
      const r = await bad((p) => {
        const pol = p.policy as { snapshot: { approvals: { count: number } }; snapshotHash: string };
        pol.snapshot.approvals.count = 1;
        (p.record as { policy: unknown }).policy = pol.snapshot;
        pol.snapshotHash = sha256Hex(canonicalJson(pol.snapshot));
      });
      assert.ok(codes(r).includes('POLICY_DOCUMENT_MISMATCH'), String(codes(r)));
    });

    it('content of the wrong type is reported as malformed, never thrown', async () => {
      const edits: ((p: Payload) => void)[] = [
        (p) => ((p.record as { state: string }).state = 'bogus'),
        (p) => ((p.record as { requester: unknown }).requester = 'alice'),
        (p) => ((p.record as { approvals: unknown }).approvals = [{ approver: null, role: 1 }]),
        (p) => ((p.events[1] as { data: unknown }).data = null),
        (p) => ((p.events[1] as { extra?: unknown }).extra = 1),
        (p) => ((p.events[3]!.data as { approver: unknown }).approver = 42),
        (p) => ((p.policy as { snapshot: unknown }).snapshot = []),
        (p) => delete (p as { chain?: unknown }).chain,
      ];
      for (const edit of edits) {
        const r = await bad(edit);
        assert.equal(r.valid, false);
        assert.ok(codes(r).length > 0);
      }
      const r = await bad((p) => ((p.record as { state: string }).state = 'bogus'));
      assert.deepEqual(codes(r), ['BUNDLE_MALFORMED']);
    });

    it('a store event replaced in the database shows in the signed export', async () => {
      const e2 = await setup();
      const { caseId: id } = await runFullCase(e2);
      const events = await e2.store.events(id);
      const usage = events.find((e) => e.type === 'usage')!;
      e2.store.tamperReplaceEvent(id, usage.seq, { ...usage, data: { ...usage.data, sourceIp: '10.9.9.9' } });
      const r = await verifyEvidence(await e2.service.evidence(id), { keys: createJwks(e2.signer!) });
      assert.equal(r.valid, false);
      assert.deepEqual(codes(r), ['CHAIN_HASH_MISMATCH']);
    });
  });

  describe('key rotation', () => {
    it('old bundles verify with the old public key kept in the JWKS', async () => {
      const oldKey = env.signer!;
      const newKey = await createJoseSigner({ privateJwk: (await generateSigningKey('ES256')).privateJwk });
      assert.equal(newKey.alg, 'ES256');
      const e2 = await setup({ signer: newKey });
      const { caseId: id } = await runFullCase(e2);
      const fresh = await e2.service.evidence(id);
      const both = createJwks(oldKey, newKey);
      assert.equal((await verifyEvidence(bundle, { keys: both })).valid, true);
      assert.equal((await verifyEvidence(fresh, { keys: both })).valid, true);
      const onlyNew = createJwks(newKey);
      assert.deepEqual(codes(await verifyEvidence(bundle, { keys: onlyNew })), ['KEY_UNKNOWN']);
      assert.match(JSON.parse(Buffer.from(fresh.protected, 'base64url').toString()).kid, /.+/);
    });
  });

  describe('break-glass', () => {
    const glass = async (env2: Env) =>
      env2.service.breakGlass({
        requester: alice,
        subject: ciJob,
        justification: { reason: 'payments down' },
        targets: [{ id: 'api', system: 'token', resource: 'api://prod/payments' }],
        durationSeconds: 900,
      });

    it('an unreviewed case past its deadline, never reported overdue, is an error', async () => {
      const e2 = await setup();
      const g = await glass(e2);
      await e2.service.issue(g.id);
      e2.clock.advance(2 * 3600_000);
      const r = await verifyEvidence(await e2.service.evidence(g.id), { keys: createJwks(e2.signer!) });
      assert.ok(codes(r).includes('BREAKGLASS_REVIEW_UNREPORTED'), String(codes(r)));
    });

    it('reported overdue by the sweeper is a warning; reviewed is clean', async () => {
      const e2 = await setup();
      const g = await glass(e2);
      await e2.service.issue(g.id);
      e2.clock.advance(2 * 3600_000);
      await e2.service.sweep();
      const r = await verifyEvidence(await e2.service.evidence(g.id), { keys: createJwks(e2.signer!) });
      assert.equal(r.valid, true, String(codes(r)));
      assert.ok(r.problems.some((p) => p.code === 'BREAKGLASS_REVIEW_OVERDUE' && p.severity === 'warning'));
      await e2.service.review(g.id, { reviewer: carol, outcome: 'accepted', notes: 'justified' });
      const r2 = await verifyEvidence(await e2.service.evidence(g.id), { keys: createJwks(e2.signer!) });
      assert.equal(r2.valid, true);
      assert.equal(
        r2.problems.some((p) => p.code.startsWith('BREAKGLASS')),
        false,
      );
    });
  });
});
