import assert from 'node:assert/strict';
import {
  type DetachedSignature,
  createJoseSigner,
  createJwks,
  createMemoryCheckpointSink,
  generateSigningKey,
  verifyCheckpoint,
  verifyDetached,
  verifyEvidence,
} from '@grantline/core';
import { describe, it } from 'vitest';
import { runFullCase, setup } from './evidence-helpers.js';

/** Order n of the P-256 group. */
const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

const sOf = (signature: string) =>
  BigInt(`0x${Buffer.from(signature, 'base64url').subarray(32).toString('hex')}`);

/** The other ECDSA signature of the same content: (r, n − s). */
function flipS(signature: string): string {
  const bytes = Buffer.from(signature, 'base64url');
  const s = Buffer.from((N - sOf(signature)).toString(16).padStart(64, '0'), 'hex');
  return Buffer.concat([bytes.subarray(0, 32), s]).toString('base64url');
}

describe('ES256 signatures are not malleable', () => {
  it('a bundle and a checkpoint with s flipped to n − s are refused', async () => {
    const signer = await createJoseSigner({ privateJwk: (await generateSigningKey('ES256')).privateJwk });
    const env = await setup({ signer, checkpoints: { sink: createMemoryCheckpointSink() } });
    const keys = createJwks(signer);
    const { caseId } = await runFullCase(env);
    const bundle = await env.service.evidence(caseId);
    const checkpoint = (await env.service.checkpoint())!;
    assert.equal((await verifyEvidence(bundle, { keys, checkpoint })).valid, true);
    assert.equal((await verifyCheckpoint(checkpoint, keys)).valid, true);

    const mauled = { ...bundle, signature: flipS(bundle.signature) };
    assert.notEqual(mauled.signature, bundle.signature);
    const v = await verifyEvidence(mauled, { keys });
    assert.equal(v.valid, false);
    assert.deepEqual(
      v.problems.map((p) => p.code),
      ['SIGNATURE_MALFORMED'],
    );
    const c = await verifyCheckpoint({ ...checkpoint, signature: flipS(checkpoint.signature) }, keys);
    assert.equal(c.valid, false);
    assert.deepEqual(
      c.problems.map((p) => p.code),
      ['SIGNATURE_MALFORMED'],
    );
    // And offered as the checkpoint of a bundle check, it is not a valid checkpoint either.
    const withCp = await verifyEvidence(bundle, {
      keys,
      checkpoint: { ...checkpoint, signature: flipS(checkpoint.signature) },
    });
    assert.equal(withCp.valid, false);
  });

  it('fresh ES256 signatures are always low-S, and verify', async () => {
    const signer = await createJoseSigner({ privateJwk: (await generateSigningKey('ES256')).privateJwk });
    const keys = createJwks(signer);
    // Unnormalised, about half would be high-S: 200 in a row low-S by chance is 2^-200.
    for (let i = 0; i < 200; i++) {
      const payload = `{"n":${i}}`;
      const sig: DetachedSignature = await signer.sign(payload, 'grantline-test+jws');
      assert.ok(sOf(sig.signature) <= N >> 1n, `signature ${i} is high-S`);
      assert.ok(sOf(sig.signature) > 0n);
      assert.deepEqual(await verifyDetached(payload, sig, keys, 'grantline-test+jws'), {
        ok: true,
        kid: signer.kid,
        alg: 'ES256',
      });
      const flipped = await verifyDetached(
        payload,
        { ...sig, signature: flipS(sig.signature) },
        keys,
        'grantline-test+jws',
      );
      assert.equal(flipped.ok, false);
    }
  });
});
