import { type Grantline, TERMINAL_STATES, createJoseSigner, createJwks } from '@grantline/core';
import type { JWK } from 'jose';

/**
 * The evidence signer of every instance, and the JWKS auditors verify with. On a key rotation every
 * instance gets the new private key as `current` and the old public key moves to `retired`: bundles
 * and checkpoints signed before the rotation keep verifying, because their `kid` stays in the JWKS.
 */
export async function evidenceKeys(current: JWK, retired: JWK[] = []) {
  const signer = await createJoseSigner({ privateJwk: current }); // kid: the JWK's, or its thumbprint
  return { signer, jwks: createJwks(signer, ...retired) }; // private members are stripped
}

/**
 * Exports the signed evidence bundle of every finished case last changed before `before`, e.g. to
 * object storage with a retention lock, before any retention decision about the database. A bundle
 * verifies offline (`verifyEvidence`, `grantline verify`) with the JWKS alone.
 */
export async function archiveEvidence(
  grantline: Grantline,
  before: Date,
  write: (caseId: string, bundleJson: string) => Promise<void>,
): Promise<number> {
  let written = 0;
  let cursor: string | undefined;
  do {
    const page = await grantline.list({ states: [...TERMINAL_STATES], limit: 500, cursor });
    for (const g of page.grants) {
      if (Date.parse(g.updatedAt) >= before.getTime()) continue;
      await write(g.id, JSON.stringify(await grantline.evidence(g.id)));
      written++;
    }
    cursor = page.nextCursor;
  } while (cursor);
  return written;
}
