import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
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
 * verifyEvidence confirms event hashes on the signed text (TextHashes in evidence.ts): on the payload's
 * bytes when it is ASCII, on the string otherwise. Both ways are driven here: each test runs on a
 * bundle with an ASCII payload and on one whose justification holds non-ASCII characters (one of
 * them outside the BMP). A probe first shows that the text path is the one that runs; then tampered
 * and re-signed payloads must still get the canonical verdict (audit.ts `eventHash` over RFC 8785).
 */

type Env = Awaited<ReturnType<typeof setup>>;

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
/** Content that cannot be canonicalised (a lone surrogate) matches no hash. */
const hashMatches = (e: AuditEvent) => {
  try {
    return eventHash(e) === e.hash;
  } catch {
    return false;
  }
};
/** The canonical verdict: seqs of the events whose hash is not the hash of their content. */
const canonicalMismatches = (text: string) =>
  (JSON.parse(text).events as AuditEvent[]).filter((e) => !hashMatches(e)).map((e) => e.seq);
const reported = (r: EvidenceVerification) =>
  r.problems.filter((p) => p.code === 'CHAIN_HASH_MISMATCH').map((p) => p.seq);

/** `data` with its keys in reverse order: not canonical, the same content. */
const reversed = (d: Record<string, unknown>) => Object.fromEntries(Object.entries(d).reverse());

describe.each([
  ['ASCII payload', ''],
  ['non-ASCII payload', ' für Prüfung – 🔑'],
])('evidence text path, %s', (_name, suffix) => {
  let env: Env;
  let bundle: EvidenceBundle;
  let keys: ReturnType<typeof createJwks>;

  const sign = async (text: string): Promise<EvidenceBundle> => ({
    payload: text,
    ...(await env.signer!.sign(text, EVIDENCE_TYP)),
  });
  /** Signs `text` as is with the real key; the hash verdict must be the canonical one. */
  const signed = async (text: string) => {
    const r = await verifyEvidence(await sign(text), { keys });
    assert.ok(!r.problems.some((p) => p.code === 'SIGNATURE_INVALID'));
    if (!r.problems.some((p) => p.code === 'BUNDLE_MALFORMED'))
      assert.deepEqual(reported(r), canonicalMismatches(text), 'hash verdicts are the canonical ones');
    return r;
  };

  /**
   * The probe: event `k` re-hashed over its text with its data keys reversed (not canonical JSON),
   * the chain after it re-linked and re-hashed canonically. Only the text path confirms that hash
   * (it hashes the text as it stands); the canonical serialiser reports the event. The text path
   * confirms all events or none, so no report at all means it ran through to the end.
   */
  const probe = (k: number, source = bundle.payload) => {
    const p = JSON.parse(source) as {
      events: (AuditEvent & { data: Record<string, unknown> })[];
      chain: { seq: number; head: string };
      record: { audit: { seq: number; head: string } };
    };
    const e = p.events[k]!;
    const data = reversed(e.data);
    const { globalSeq: _g, hash: _h, ...rest } = e;
    // Top-level members in canonical order (as parsed from the canonical text), data reversed.
    const hashedText = JSON.stringify({ ...rest, data, prevHash: e.prevHash, seq: e.seq, type: e.type });
    e.hash = sha256(hashedText);
    for (let i = k + 1; i < p.events.length; i++) {
      const x = p.events[i]!;
      x.prevHash = p.events[i - 1]!.hash;
      x.hash = eventHash(x);
    }
    const last = p.events[p.events.length - 1]!;
    p.chain.head = last.hash;
    p.record.audit.head = last.hash;
    const canonical = canonicalJson(p);
    const from = canonical.indexOf(`"hash":"${e.hash}"`);
    const dataText = JSON.stringify(e.data);
    const at = canonical.lastIndexOf(`"data":${dataText}`, from);
    assert.ok(at > 0 && Object.keys(e.data).length > 1);
    const text = `${canonical.slice(0, at)}"data":${JSON.stringify(data)}${canonical.slice(at + 7 + dataText.length)}`;
    assert.equal(canonicalMismatches(text).join(), String(e.seq), 'the canonical serialiser reports it');
    return { text, seq: e.seq };
  };

  beforeAll(async () => {
    env = await setup();
    const { caseId } = await runFullCase(env, suffix);
    // Usage records of very different lengths, so that each event's hash is not where the previous
    // one's was relative to the event's start (the search guess misses both ways).
    for (const n of [1, 300, 2, 150, 1]) {
      await env.service.recordUsage(caseId, {
        sourceIp: '10.1.2.3',
        action: 'keys:read',
        resource: `api://prod/payments/${'k'.repeat(n)}`,
      });
    }
    bundle = await env.service.evidence(caseId);
    keys = createJwks(env.signer!);
    assert.equal(Buffer.byteLength(bundle.payload) === bundle.payload.length, suffix === '');
  });

  it('the canonical bundle verifies', async () => {
    const r = await verifyEvidence(bundle, { keys });
    assert.deepEqual(r.problems, []);
  });

  it('probe: the text path confirms every event (a non-canonical hash goes unreported only there)', async () => {
    for (const k of [2, 7]) {
      const { text } = probe(k);
      const r = await verifyEvidence(await sign(text), { keys });
      assert.deepEqual(reported(r), [], `event ${k + 1} confirmed on the text`);
    }
  });

  it('probe with a tampered event after it: the text path stops, every hash is recomputed', async () => {
    const { text, seq } = probe(2);
    // Event 8 edited in its data, its hash kept.
    const p = JSON.parse(text);
    const e = p.events[7];
    const needle = `"resource":${JSON.stringify(e.data.resource)}`;
    const at = text.indexOf(needle, text.indexOf(`"hash":"${e.prevHash}"`));
    assert.ok(at > 0);
    const edited = `${text.slice(0, at)}"resource":"api://prod/payments/kX${text.slice(at + needle.length - 1)}`;
    const r = await signed(edited);
    assert.deepEqual(reported(r), [seq, 8]);
    assert.equal(r.valid, false);
  });

  it('an event edited with its hash kept, the previous event re-linked: found', async () => {
    for (const k of [0, 3, 9]) {
      const p = payloadOf(bundle);
      const e = p.events[k]!;
      p.events[k] = { ...e, data: { ...(e.data as object), z: 1 } };
      const r = await signed(canonicalJson(p));
      assert.deepEqual(reported(r), [k + 1]);
      assert.equal(r.valid, false);
    }
  });

  it('numbers spelled otherwise (5.0, 7e0), extra chain members: the canonical verdict decides', async () => {
    const p = payloadOf(bundle);
    const e = p.events[4]!;
    const text = bundle.payload;
    const tail = `"hash":"${e.hash}","prevHash":"${e.prevHash}","seq":${e.seq},`;
    assert.ok(text.includes(tail));
    const variants = [
      text.replace(tail, tail.replace(`"seq":${e.seq},`, `"seq":${e.seq}.0,`)),
      text.replace(
        `"globalSeq":${e.globalSeq},"hash":"${e.hash}"`,
        `"globalSeq":${e.globalSeq}e0,"hash":"${e.hash}"`,
      ),
      text.replace('"chain":{"head"', '"chain":{"extra":1,"head"'),
    ];
    for (const v of variants) {
      assert.notEqual(v, text);
      const r = await signed(v);
      assert.deepEqual(reported(r), []);
      assert.equal(r.valid, true);
    }
  });

  it('a payload over 1 MiB (signature checked on the threadpool): the same verdicts', async () => {
    const p = payloadOf(bundle) as unknown as {
      events: AuditEvent[];
      chain: { seq: number; head: string };
      record: { audit: { seq: number; head: string }; usage: { count: number; lastAt?: string } };
    };
    let prev = p.events[p.events.length - 1]!;
    for (let i = 0; i < 260; i++) {
      const { hash: _h, ...rest } = prev;
      const next = {
        ...rest,
        data: { blob: `${'x'.repeat(4000)}${i}`, n: i },
        globalSeq: (prev.globalSeq ?? 0) + 1,
        prevHash: prev.hash,
        seq: prev.seq + 1,
        type: 'usage',
      };
      const e = { ...next, hash: eventHash(next) };
      p.events.push(e);
      prev = e;
    }
    p.chain = { head: prev.hash, seq: prev.seq };
    p.record.audit = { ...p.record.audit, seq: prev.seq, head: prev.hash };
    p.record.usage = { count: p.record.usage.count + 260, lastAt: prev.at }; // the uses the events add
    const text = canonicalJson(p);
    assert.ok(Buffer.byteLength(text) > 1024 * 1024);
    assert.deepEqual((await signed(text)).problems, []);
    // The text path runs: the probe goes unreported.
    const probed = probe(p.events.length - 3, text);
    assert.deepEqual(reported(await verifyEvidence(await sign(probed.text), { keys })), []);
    // One character of a blob edited, hashes kept: found; the same edit without re-signing: refused.
    const at = text.indexOf('xxxx', text.indexOf(`"seq":${prev.seq - 100}`) - 5000);
    const edited = `${text.slice(0, at)}y${text.slice(at + 1)}`;
    const r = await signed(edited);
    assert.equal(r.valid, false);
    assert.equal(reported(r).length, 1);
    const unsigned = await verifyEvidence({ ...(await sign(text)), payload: edited }, { keys });
    assert.ok(unsigned.problems.some((x) => x.code === 'SIGNATURE_INVALID'));
    assert.equal(unsigned.valid, false);
  });

  it('property: any one-character edit inside the events, re-signed, gets the canonical verdict', async () => {
    const text = bundle.payload;
    const start = text.indexOf('"events":[');
    const end = text.indexOf('],"format"', start);
    const alphabet = ['a', '0', '9', 'f', '"', ',', '{', '}', ':', 'ü', '\\', ' ', 'Z'];
    let parsed = 0;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: start, max: end }), fc.constantFrom(...alphabet), async (i, c) => {
        if (text[i] === c) return;
        const edited = text.slice(0, i) + c + text.slice(i + 1);
        try {
          JSON.parse(edited);
        } catch {
          return;
        }
        const r = await signed(edited);
        if (r.problems.some((p) => p.code === 'BUNDLE_MALFORMED')) return;
        parsed += 1;
        // A hash that no longer matches its content always makes the bundle invalid.
        if (canonicalMismatches(edited).length > 0) assert.equal(r.valid, false);
      }),
      { numRuns: 300, seed: 7 },
    );
    assert.ok(parsed > 20, `${parsed} edits still have the evidence shape`);
  });
});

describe('evidence: bundle shape and protected header checked by hand when they are the common case', () => {
  let env: Env;
  let bundle: EvidenceBundle;
  let keys: ReturnType<typeof createJwks>;

  beforeAll(async () => {
    env = await setup();
    const { caseId } = await runFullCase(env);
    bundle = await env.service.evidence(caseId);
    keys = createJwks(env.signer!);
  });

  it('a header seen before is still checked against the signature, the key set and its own members', async () => {
    assert.equal((await verifyEvidence(bundle, { keys })).valid, true); // the header is now known
    const sig = bundle.signature;
    const flipped = `${sig[0] === 'A' ? 'B' : 'A'}${sig.slice(1)}`;
    const r = await verifyEvidence({ ...bundle, signature: flipped }, { keys });
    assert.deepEqual(
      r.problems.map((p) => p.code),
      ['SIGNATURE_INVALID'],
    );
    const other = createJwks((await setup()).signer!);
    assert.ok((await verifyEvidence(bundle, { keys: other })).problems.some((p) => p.code === 'KEY_UNKNOWN'));
    // The same header re-encoded with its last character's unused bits set: another string, refused.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const h = bundle.protected;
    const idx = alphabet.indexOf(h[h.length - 1]!);
    const twin = alphabet[(idx & ~0b11) | ((idx + 1) & 0b11)]!;
    if (h.length % 4 !== 0 && twin !== h[h.length - 1]) {
      const r2 = await verifyEvidence({ ...bundle, protected: h.slice(0, -1) + twin }, { keys });
      assert.ok(r2.problems.some((p) => p.code === 'SIGNATURE_MALFORMED'));
    }
    // Another typ in an otherwise equal header: refused.
    const header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
    const typ = Buffer.from(JSON.stringify({ ...header, typ: 'other+jws' })).toString('base64url');
    const r3 = await verifyEvidence({ ...bundle, protected: typ }, { keys });
    assert.ok(r3.problems.some((p) => p.code === 'SIGNATURE_TYPE_MISMATCH'));
  });

  it('bundles that are not exactly three own string members go to the schema, as before', async () => {
    for (const b of [
      { ...bundle, extra: 1 },
      { ...bundle, signature: 1 },
      { payload: bundle.payload, protected: bundle.protected },
    ]) {
      const r = await verifyEvidence(b, { keys });
      assert.equal(r.valid, false);
      assert.ok(r.problems.some((p) => p.code === 'BUNDLE_MALFORMED'));
    }
    // What the schema accepts besides plain objects stays accepted: inherited members, no prototype,
    // a class instance.
    class Carrier {
      payload = bundle.payload;
      protected = bundle.protected;
      signature = bundle.signature;
    }
    for (const b of [
      Object.assign(Object.create({ signature: bundle.signature }), {
        payload: bundle.payload,
        protected: bundle.protected,
      }),
      Object.assign(Object.create(null), bundle),
      new Carrier(),
    ]) {
      assert.equal((await verifyEvidence(b, { keys })).valid, true);
    }
  });
});
