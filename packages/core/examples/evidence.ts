/**
 * The code docs/evidence.md shows: a signing key and its rotation, proven identities for the approver
 * and the workload, a signed evidence bundle and a checkpoint, verified offline with the public keys
 * only. `test/evidence-example.test.ts` runs it.
 */
import {
  type PolicyInput,
  auditStore,
  createGrantline,
  createJoseSigner,
  createJwks,
  createJwtIdentityVerifier,
  createMemoryCheckpointSink,
  createTokenAuthority,
  generateSigningKey,
  verifyEvidence,
} from '@grantline/core';
import { createMemoryStore } from '@grantline/store-memory';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';

const AUDIENCE = 'https://grantline.example';

/** Stands in for an identity provider or a CI system's OIDC issuer: a key pair that mints JWTs. */
async function demoIssuer(issuer: string) {
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
  const kid = `${new URL(issuer).hostname}-1`;
  return {
    jwks: { keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' }] },
    token: (subject: string, claims: Record<string, unknown>) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: 'ES256', kid })
        .setIssuer(issuer)
        .setAudience(AUDIENCE)
        .setSubject(subject)
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(privateKey),
  };
}

const policy: PolicyInput = {
  id: 'evidence-demo',
  version: '1',
  owner: 'iam-governance',
  rules: [
    {
      id: 'orders-export',
      risk: 'medium',
      match: { systems: ['token'], resources: ['api://orders'] },
      operator: 'platform-ops',
      maxDurationSeconds: 900,
      require: { provenApprovers: true, provenWorkload: true },
      approvals: { count: 1, roles: ['service-owner'] },
    },
  ],
};

export async function main() {
  const idp = await demoIssuer('https://idp.example/realms/staff');
  const ci = await demoIssuer('https://token.actions.githubusercontent.com');
  const store = createMemoryStore();
  const tokens = await createTokenAuthority({ issuer: AUDIENCE });
  // Last year's signing key: it signed older bundles, so it stays in the published JWKS.
  const retired = await createJoseSigner({ privateJwk: (await generateSigningKey()).privateJwk });

  // #region identity
  const identity = createJwtIdentityVerifier({
    approvers: {
      issuer: 'https://idp.example/realms/staff',
      audience: 'https://grantline.example',
      jwks: idp.jwks, // a JWKS object, or its URL: new URL('https://idp.example/realms/staff/…/certs')
      rolesClaim: 'realm_access.roles',
      teamsClaim: 'groups', // proven teams: a member of the rule's operator team cannot approve
    },
    workloads: {
      issuer: 'https://token.actions.githubusercontent.com',
      audience: 'https://grantline.example',
      jwks: ci.jwks,
      requiredClaims: { repository_owner: 'acme' },
    },
    clockToleranceSeconds: 30,
  });
  // #endregion

  // #region keys
  const { privateJwk } = await generateSigningKey(); // Ed25519 (EdDSA); generateSigningKey('ES256') for P-256
  const signer = await createJoseSigner({ privateJwk }); // kid: the RFC 7638 thumbprint unless set
  const sink = createMemoryCheckpointSink(); // in production: storage outside the database, with retention
  const grantline = createGrantline({
    store,
    policy,
    executors: [tokens.executor],
    signer,
    identity,
    checkpoints: { sink },
  });
  const jwks = createJwks(signer, retired.publicJwk); // publish this; private members are stripped
  // #endregion

  // #region proven-parties
  const job = { id: 'repo:acme/orders:ref:refs/heads/main', kind: 'workload' as const, roles: [] };
  const olga = { id: 'olga', kind: 'human' as const, roles: [] }; // her roles come from her IdP token
  const c = await grantline.request({
    requester: job,
    subject: job,
    justification: { reason: 'nightly export' },
    targets: [{ id: 'orders', system: 'token', resource: 'api://orders', permissions: ['orders:read'] }],
    durationSeconds: 600,
    subjectAssertion: await ci.token(job.id, { repository_owner: 'acme' }), // the CI job's OIDC token
  });
  await grantline.approve(c.id, {
    approver: olga,
    assertion: await idp.token('olga', { realm_access: { roles: ['service-owner'] } }),
  });
  // #endregion
  const { credentials } = await grantline.issue(c.id);
  await grantline.complete(c.id, { actor: job, reason: 'export done' });

  // #region verify
  const bundle = await grantline.evidence(c.id); // { payload, protected, signature }
  const checkpoint = (await grantline.checkpoint())!; // the sweeper also signs them, in batches, into `sink`
  const { valid, problems } = await verifyEvidence(JSON.stringify(bundle), { keys: jwks, checkpoint });
  const whole = await auditStore(store, { checkpoint, keys: jwks }); // every case, against the checkpoint
  // #endregion

  // A bundle signed with the retired key verifies with the published JWKS, and not without its key.
  const older = createGrantline({ store, policy, executors: [tokens.executor], signer: retired });
  const oldBundle = await older.evidence(c.id);
  const withRetired = await verifyEvidence(oldBundle, { keys: jwks });
  const withoutRetired = await verifyEvidence(oldBundle, { keys: createJwks(signer) });

  await grantline.close();
  return {
    valid,
    problems,
    payload: JSON.parse(bundle.payload),
    bundleText: JSON.stringify(bundle),
    secrets: Object.values(credentials.orders ?? {}),
    storeProblems: whole.problems,
    jwks,
    signerKid: signer.kid,
    retiredKid: retired.kid,
    withRetired,
    withoutRetired,
    checkpoints: sink.all().length,
  };
}
