import assert from 'node:assert/strict';
import { beforeAll, describe, it } from 'vitest';
import {
  type AuditEvent,
  type EvidenceBundle,
  type EvidenceVerification,
  EVIDENCE_TYP,
  canonicalJson,
  createJwks,
  eventHash,
  verifyEvidence,
} from '../src/index.js';
import { payloadOf, runFullCase, setup } from './evidence-helpers.js';

/**
 * verifyEvidence confirms event hashes on the signed payload text when it can (no re-serialisation).
 * Every payload here is signed with the real key, so that path is taken, and each is built to mislead
 * it: the hash verdict must always be the canonical one (audit.ts `eventHash` over RFC 8785 JSON) of
 * the events as `JSON.parse` reads them, whatever the text looks like.
 */

type Env = Awaited<ReturnType<typeof setup>>;

/** The canonical verdict: seqs of the events whose hash is not the hash of their content. */
const canonicalMismatches = (text: string) =>
  (JSON.parse(text).events as AuditEvent[]).filter((e) => eventHash(e) !== e.hash).map((e) => e.seq);
const reported = (r: EvidenceVerification) =>
  r.problems.filter((p) => p.code === 'CHAIN_HASH_MISMATCH').map((p) => p.seq);

describe('evidence: hashes confirmed on the signed text agree with the canonical serialiser', () => {
  let env: Env;
  let bundle: EvidenceBundle;
  let keys: ReturnType<typeof createJwks>;

  /** Signs `text` as is with the real key and verifies it. */
  const signed = async (text: string) => {
    const b = { payload: text, ...(await env.signer!.sign(text, EVIDENCE_TYP)) };
    const r = await verifyEvidence(b, { keys });
    assert.ok(!r.problems.some((p) => p.code === 'SIGNATURE_INVALID'));
    // A malformed payload stops before the chain is checked.
    if (!r.problems.some((p) => p.code === 'BUNDLE_MALFORMED'))
      assert.deepEqual(reported(r), canonicalMismatches(text), 'hash verdicts are the canonical ones');
    return r;
  };

  beforeAll(async () => {
    env = await setup();
    const { caseId } = await runFullCase(env);
    bundle = await env.service.evidence(caseId);
    keys = createJwks(env.signer!);
  });

  it('the canonical bundle verifies', async () => {
    const r = await signed(bundle.payload);
    assert.deepEqual(r.problems, []);
  });

  it('whitespace and reordered keys: not the signed canonical text, same content, still valid', async () => {
    const p = payloadOf(bundle);
    assert.deepEqual((await signed(JSON.stringify(p, null, 1))).problems, []);
    // Event 3 with its keys reversed (type first, hash before globalSeq, ...).
    const e = p.events[2]!;
    p.events[2] = Object.fromEntries(Object.entries(e).reverse());
    const text = JSON.stringify(p);
    assert.ok(!text.includes(canonicalJson(e)), 'event 3 is not in canonical form');
    assert.deepEqual((await signed(text)).problems, []);
  });

  it('an edited event carrying its original text inside its own data: the edit is found', async () => {
    const p = payloadOf(bundle);
    const original = { ...p.events[3]! };
    // The original event, hash and tail included, is nested in the edited event's data, so the first
    // `,"globalSeq":…,"hash":…,"type":…}` after the event's start is the copy's, not its own.
    p.events[3] = { ...original, data: { ...(original.data as object), a: original, z: 'edited' } };
    const r = await signed(canonicalJson(p));
    assert.deepEqual(reported(r), [4]);
    assert.equal(r.valid, false);
  });

  it('an edited event whose original text sits in the previous event: both are found', async () => {
    const p = payloadOf(bundle);
    const original = p.events[4]!;
    p.events[3] = { ...p.events[3]!, data: { ...(p.events[3]!.data as object), copy: [original] } };
    p.events[4] = { ...original, data: { ...(original.data as object), reason: 'edited' } };
    const r = await signed(canonicalJson(p));
    assert.deepEqual(reported(r), [4, 5]);
  });

  it('events reordered or an event duplicated, without re-chaining', async () => {
    const p = payloadOf(bundle);
    [p.events[2], p.events[3]] = [p.events[3]!, p.events[2]!];
    const r = await signed(canonicalJson(p));
    assert.ok(r.problems.some((x) => x.code === 'CHAIN_SEQ_GAP'));
    const q = payloadOf(bundle);
    q.events.splice(2, 0, q.events[2]!);
    assert.ok((await signed(canonicalJson(q))).problems.some((x) => x.code === 'CHAIN_SEQ_GAP'));
  });

  it('a second events member after the first: JSON.parse keeps the last, and so does the verdict', async () => {
    const p = payloadOf(bundle);
    const edited = p.events.map((e, i) => (i === 2 ? { ...e, data: { edited: true } } : e));
    // The canonical text of the untouched events stays where a canonical payload has them.
    for (const key of ['"events"', '"\\u0065vents"']) {
      const text = `${bundle.payload.slice(0, -1)},${key}:${canonicalJson(edited)}}`;
      assert.equal((JSON.parse(text) as { events: unknown[] }).events.length, edited.length);
      const r = await signed(text);
      assert.deepEqual(reported(r), [3]);
      assert.equal(r.valid, false);
    }
  });

  it('a hash kept while the hashed text is edited by one character, anywhere in an event', async () => {
    const p = payloadOf(bundle);
    const start = bundle.payload.indexOf('{"act', bundle.payload.indexOf('"events":['));
    const end = bundle.payload.indexOf('"hash":"', start);
    let checked = 0;
    for (let i = start + 2; i < end; i += 7) {
      const c = bundle.payload[i]!;
      if (!/[a-z0-9]/.test(c)) continue;
      const text = bundle.payload.slice(0, i) + (c === 'a' ? 'b' : 'a') + bundle.payload.slice(i + 1);
      try {
        JSON.parse(text);
      } catch {
        continue;
      }
      const r = await signed(text);
      checked += r.problems.some((x) => x.code === 'BUNDLE_MALFORMED') ? 0 : 1;
    }
    assert.ok(p.events.length > 3 && checked > 10);
  });
});
