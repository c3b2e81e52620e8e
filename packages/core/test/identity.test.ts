import assert from 'node:assert/strict';
import { type CryptoKey, type JWK, SignJWT, UnsecuredJWT, exportJWK, generateKeyPair } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { createMemoryStore } from '@grantline/store-memory';
import {
  type IdentityVerifier,
  canonicalJson,
  createGrantline,
  createJwks,
  createJwtIdentityVerifier,
  createTokenAuthority,
  EVIDENCE_TYP,
  isGrantlineError,
  verifyEvidence,
} from '../src/index.js';
import { alice, bob, ciJob, manualClock, payloadOf, setup } from './evidence-helpers.js';

const IDP = 'https://idp.acme.test/realms/staff';
const CI = 'https://token.actions.githubusercontent.com';
const AUD = 'https://grantline.acme.test';

interface Issuer {
  kid: string;
  alg: 'EdDSA' | 'ES256';
  key: CryptoKey;
  jwk: JWK;
}

async function issuer(alg: 'EdDSA' | 'ES256', kid: string): Promise<Issuer> {
  const pair = await generateKeyPair(alg, { extractable: true });
  return {
    kid,
    alg,
    key: pair.privateKey as CryptoKey,
    jwk: { ...(await exportJWK(pair.publicKey)), kid, alg, use: 'sig' },
  };
}

const clock = manualClock('2026-03-02T10:00:00.000Z');
const nowS = () => Math.floor(clock.now().getTime() / 1000);

function token(
  by: Issuer,
  claims: Record<string, unknown>,
  opts: { iss?: string; aud?: string; sub?: string; exp?: number; nbf?: number; kid?: string } = {},
) {
  const t = new SignJWT(claims)
    .setProtectedHeader({ alg: by.alg, kid: opts.kid ?? by.kid, typ: 'JWT' })
    .setIssuer(opts.iss ?? IDP)
    .setAudience(opts.aud ?? AUD)
    .setSubject(opts.sub ?? 'bob')
    .setIssuedAt(nowS())
    .setExpirationTime(opts.exp ?? nowS() + 300);
  if (opts.nbf !== undefined) t.setNotBefore(opts.nbf);
  return t.sign(by.key);
}

const githubClaims = {
  repository: 'acme/payments',
  ref: 'refs/heads/main',
  run_id: '8812345',
  workflow: 'deploy',
  repository_owner: 'acme',
};

describe('createJwtIdentityVerifier', () => {
  let idp: Issuer;
  let ci: Issuer;
  let verifier: IdentityVerifier;

  beforeAll(async () => {
    idp = await issuer('EdDSA', 'idp-2026');
    ci = await issuer('ES256', 'gh-1');
    verifier = createJwtIdentityVerifier({
      approvers: { issuer: IDP, audience: AUD, jwks: { keys: [idp.jwk] }, rolesClaim: 'realm_access.roles' },
      workloads: {
        issuer: CI,
        audience: AUD,
        jwks: { keys: [ci.jwk] },
        requiredClaims: { repository_owner: 'acme' },
      },
      clockToleranceSeconds: 30,
      clock,
    });
  });

  const rejected = async (p: Promise<unknown>, reason: string) => {
    await expect(p).rejects.toMatchObject({ code: 'ERR_IDENTITY', details: { reason } });
  };

  it('accepts an IdP token for an approver, with roles from a nested claim and the issuer and kid', async () => {
    const t = await token(idp, { realm_access: { roles: ['sre-lead', 'staff'] }, email: 'bob@acme.test' });
    const v = await verifier.verify(t, 'approver');
    assert.equal(v.subject, 'bob');
    assert.equal(v.issuer, IDP);
    assert.equal(v.kid, 'idp-2026');
    assert.deepEqual(v.roles, ['sre-lead', 'staff']);
    assert.equal(v.claims.email, 'bob@acme.test');
  });

  it('accepts a CI workload token with repository, ref and run id claims', async () => {
    const t = await token(ci, githubClaims, { iss: CI, sub: ciJob.id });
    const v = await verifier.verify(t, 'workload');
    assert.equal(v.subject, ciJob.id);
    assert.equal(v.claims.repository, 'acme/payments');
    assert.equal(v.claims.run_id, '8812345');
    assert.deepEqual(v.roles, []);
  });

  it('rejects an expired token, but tolerates bounded clock skew', async () => {
    await rejected(verifier.verify(await token(idp, {}, { exp: nowS() - 120 }), 'approver'), 'expired');
    const skewed = await token(idp, {}, { exp: nowS() - 10 });
    assert.equal((await verifier.verify(skewed, 'approver')).subject, 'bob');
    await rejected(verifier.verify(await token(idp, {}, { nbf: nowS() + 600 }), 'approver'), 'not-yet-valid');
  });

  it('rejects a wrong audience and a wrong issuer', async () => {
    await rejected(
      verifier.verify(await token(idp, {}, { aud: 'https://other.test' }), 'approver'),
      'audience',
    );
    await rejected(verifier.verify(await token(idp, {}, { iss: 'https://evil.test' }), 'approver'), 'issuer');
    // An IdP token is not a workload token: keys and issuers are separate per purpose.
    await rejected(verifier.verify(await token(idp, githubClaims, { sub: ciJob.id }), 'workload'), 'key');
    await rejected(
      verifier.verify(await token(ci, githubClaims, { sub: ciJob.id, iss: IDP }), 'workload'),
      'issuer',
    );
  });

  it('rejects unsigned tokens (alg none)', async () => {
    const none = new UnsecuredJWT({ realm_access: { roles: ['sre-lead'] } })
      .setIssuer(IDP)
      .setAudience(AUD)
      .setSubject('bob')
      .setExpirationTime(nowS() + 300)
      .encode();
    await rejected(verifier.verify(none, 'approver'), 'unsigned');
    const err = (await verifier.verify(none, 'approver').catch((e: unknown) => e)) as Error;
    assert.match(err.message, /alg none/);
    assert.equal(err.message.includes(none), false, 'the assertion is never echoed');
  });

  it('rejects HS256 keyed with the public key (algorithm confusion)', async () => {
    const secret = new TextEncoder().encode(canonicalJson(idp.jwk));
    const hs = await new SignJWT({ realm_access: { roles: ['sre-lead'] } })
      .setProtectedHeader({ alg: 'HS256', kid: idp.kid })
      .setIssuer(IDP)
      .setAudience(AUD)
      .setSubject('bob')
      .setExpirationTime(nowS() + 300)
      .sign(secret);
    await rejected(verifier.verify(hs, 'approver'), 'algorithm');
  });

  it('rejects a token signed by an untrusted key, or by another key under a trusted kid', async () => {
    const rogue = await issuer('EdDSA', 'rogue');
    await rejected(verifier.verify(await token(rogue, {}), 'approver'), 'key');
    await rejected(verifier.verify(await token(rogue, {}, { kid: 'idp-2026' }), 'approver'), 'signature');
  });

  it('rejects garbage, missing subject, a required claim that does not hold, and an unconfigured purpose', async () => {
    await rejected(verifier.verify('not-a-token', 'approver'), 'malformed');
    await rejected(verifier.verify('a.b.c', 'approver'), 'malformed');
    const noSub = await new SignJWT({})
      .setProtectedHeader({ alg: 'EdDSA', kid: idp.kid })
      .setIssuer(IDP)
      .setAudience(AUD)
      .setExpirationTime(nowS() + 300)
      .sign(idp.key);
    await rejected(verifier.verify(noSub, 'approver'), 'claims');
    const otherOrg = await token(
      ci,
      { ...githubClaims, repository_owner: 'mallory' },
      { iss: CI, sub: ciJob.id },
    );
    await rejected(verifier.verify(otherOrg, 'workload'), 'claims');
    const onlyApprovers = createJwtIdentityVerifier({
      approvers: { issuer: IDP, audience: AUD, jwks: { keys: [idp.jwk] } },
      clock,
    });
    await rejected(
      onlyApprovers.verify(await token(ci, githubClaims, { iss: CI }), 'workload'),
      'not-configured',
    );
  });

  describe('end to end: a rule that requires proven approvers and a proven workload', () => {
    const request = (env: Awaited<ReturnType<typeof setup>>, subjectAssertion?: string) =>
      env.service.request({
        requester: alice,
        subject: ciJob,
        justification: { reason: 'deploy', workload: ciJob.id },
        targets: [{ id: 'api', system: 'token', resource: 'api://proven/deploy' }],
        durationSeconds: 600,
        ...(subjectAssertion ? { subjectAssertion } : {}),
      });

    it('refuses unproven parties, accepts proven ones, and the proof is signed into the evidence', async () => {
      const env = await setup({ identity: verifier });
      env.clock.set(clock.now().toISOString());
      await expect(request(env)).rejects.toMatchObject({ code: 'ERR_POLICY_DENIED' });
      const expiredCi = await token(ci, githubClaims, { iss: CI, sub: ciJob.id, exp: nowS() - 600 });
      await expect(request(env, expiredCi)).rejects.toMatchObject({ code: 'ERR_IDENTITY' });
      const wrongSubject = await token(ci, githubClaims, {
        iss: CI,
        sub: 'repo:acme/other:ref:refs/heads/main',
      });
      await expect(request(env, wrongSubject)).rejects.toMatchObject({ code: 'ERR_IDENTITY' });

      const ciToken = await token(ci, githubClaims, { iss: CI, sub: ciJob.id });
      const g = await request(env, ciToken);
      assert.deepEqual((g.subject.claims as { proof: unknown }).proof, {
        issuer: CI,
        subject: ciJob.id,
        kid: 'gh-1',
      });
      assert.equal(g.subject.claims?.repository, 'acme/payments');

      // Host-asserted roles do not count where proof is required.
      await expect(env.service.approve(g.id, { approver: bob })).rejects.toMatchObject({
        code: 'ERR_APPROVAL_REFUSED',
      });
      const wrongAud = await token(
        idp,
        { realm_access: { roles: ['sre-lead'] } },
        { aud: 'https://elsewhere.test' },
      );
      await expect(env.service.approve(g.id, { approver: bob, assertion: wrongAud })).rejects.toMatchObject({
        code: 'ERR_IDENTITY',
        details: { reason: 'audience' },
      });
      // The token's roles replace the roles the host claimed: without sre-lead in the token, no approval.
      const noRole = await token(idp, { realm_access: { roles: ['staff'] } });
      await expect(env.service.approve(g.id, { approver: bob, assertion: noRole })).rejects.toMatchObject({
        code: 'ERR_APPROVAL_REFUSED',
      });

      const idpToken = await token(idp, { realm_access: { roles: ['sre-lead'] } });
      const approved = await env.service.approve(g.id, {
        approver: { ...bob, roles: [] },
        assertion: idpToken,
      });
      assert.equal(approved.state, 'approved');
      assert.deepEqual(approved.approvals[0]!.proof, { issuer: IDP, subject: 'bob', kid: 'idp-2026' });
      await env.service.issue(g.id);
      await env.service.revoke(g.id, { actor: alice, reason: 'done' });

      const bundle = await env.service.evidence(g.id);
      const keys = createJwks(env.signer!);
      const r = await verifyEvidence(bundle, { keys });
      assert.equal(r.valid, true, JSON.stringify(r.problems));
      const text = JSON.stringify(bundle) + env.store.dump();
      assert.equal(text.includes(idpToken), false, 'bearer assertions are never stored');
      assert.equal(text.includes(ciToken), false);
      assert.ok(bundle.payload.includes('"kid":"idp-2026"'));

      // Strip the approver's proof from a re-signed export: the verifier names it.
      const p = payloadOf(bundle);
      const ev = p.events.find((e) => e.type === 'approval')! as { data: { proof?: unknown } };
      delete ev.data.proof;
      const text2 = canonicalJson(p);
      const forged = { payload: text2, ...(await env.signer!.sign(text2, EVIDENCE_TYP)) };
      const r2 = await verifyEvidence(forged, { keys });
      assert.ok(r2.problems.some((x) => x.code === 'APPROVER_NOT_PROVEN'));
    });
  });

  describe('proof cannot be claimed by the caller', () => {
    const base = {
      requester: alice,
      justification: { reason: 'deploy', workload: ciJob.id },
      targets: [{ id: 'api', system: 'token', resource: 'api://proven/deploy' }],
      durationSeconds: 600,
    };

    it('a subject with a forged claims.proof is refused; without an assertion the rule is not met whatever the kind', async () => {
      const env = await setup({ identity: verifier });
      env.clock.set(clock.now().toISOString());
      const forged = { ...ciJob, claims: { proof: { issuer: CI, subject: ciJob.id } } };
      await expect(env.service.request({ ...base, subject: forged })).rejects.toMatchObject({
        code: 'ERR_VALIDATION',
        details: { issues: [expect.objectContaining({ path: ['subject', 'claims', 'proof'] })] },
      });
      // Declared human: before, a rule requiring a proven workload let any non-workload through.
      await expect(
        env.service.request({ ...base, subject: { ...ciJob, kind: 'human' } }),
      ).rejects.toMatchObject({
        code: 'ERR_POLICY_DENIED',
        details: { reasons: [expect.objectContaining({ code: 'WORKLOAD_NOT_PROVEN' })] },
      });
      // An approver's forged proof is refused too.
      const ciToken = await token(ci, githubClaims, { iss: CI, sub: ciJob.id });
      const g = await env.service.request({ ...base, subject: ciJob, subjectAssertion: ciToken });
      await expect(
        env.service.approve(g.id, {
          approver: { ...bob, claims: { proof: { issuer: IDP, subject: 'bob' } } },
        }),
      ).rejects.toMatchObject({ code: 'ERR_VALIDATION' });
      expect((await env.service.get(g.id)).approvals).toEqual([]);
    });

    it("a proven approver's teams from the IdP count, whatever teams the caller names", async () => {
      const withTeams = createJwtIdentityVerifier({
        approvers: {
          issuer: IDP,
          audience: AUD,
          jwks: { keys: [idp.jwk] },
          rolesClaim: 'realm_access.roles',
          teamsClaim: 'groups',
        },
        workloads: { issuer: CI, audience: AUD, jwks: { keys: [ci.jwk] } },
        clock,
      });
      const env = await setup({ identity: withTeams });
      env.clock.set(clock.now().toISOString());
      const ciToken = await token(ci, githubClaims, { iss: CI, sub: ciJob.id });
      const g = await env.service.request({ ...base, subject: ciJob, subjectAssertion: ciToken });
      // bob is in the operator team by his IdP groups, and says he is not.
      const asOperator = await token(idp, {
        realm_access: { roles: ['sre-lead'] },
        groups: ['platform-team'],
      });
      await expect(
        env.service.approve(g.id, { approver: { ...bob, teams: [] }, assertion: asOperator }),
      ).rejects.toMatchObject({
        code: 'ERR_APPROVAL_REFUSED',
        details: { reasons: [expect.objectContaining({ path: ['approver', 'teams'] })] },
      });
      const notOperator = await token(idp, { realm_access: { roles: ['sre-lead'] }, groups: ['sre'] });
      const ok = await env.service.approve(g.id, { approver: { ...bob, teams: [] }, assertion: notOperator });
      expect(ok.state).toBe('approved');
      expect(ok.approvals[0]!.approver.teams).toEqual(['sre']);
    });
  });
});

describe('what a verified assertion proves is checked before it is recorded', () => {
  const rule = {
    id: 'r',
    risk: 'medium' as const,
    match: { systems: ['token'] },
    operator: 'ops',
    maxDurationSeconds: 3600,
    approvals: { count: 1, roles: ['service-owner'] },
  };
  const olga = { id: 'olga', kind: 'human' as const, roles: ['service-owner'], teams: [] };
  const job = { id: 'ci-job', kind: 'workload' as const, roles: [], teams: [] };
  const req = {
    requester: { id: 'alice', kind: 'human' as const, roles: [], teams: [] },
    subject: job,
    justification: { reason: 'x' },
    targets: [{ id: 'a', system: 'token', resource: 'api://x' }],
    durationSeconds: 600,
  };
  async function env(verifier?: IdentityVerifier) {
    const clock = manualClock();
    const signing = await issuer('EdDSA', 'k');
    const identity =
      verifier ??
      createJwtIdentityVerifier({
        approvers: { issuer: IDP, audience: AUD, jwks: { keys: [signing.jwk] } },
        workloads: { issuer: CI, audience: AUD, jwks: { keys: [signing.jwk] } },
        clock,
      });
    const now = Math.floor(clock.now().getTime() / 1000);
    const token = (iss: string, sub: string, claims: Record<string, unknown>) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: 'EdDSA', kid: 'k' })
        .setIssuer(iss)
        .setAudience(AUD)
        .setSubject(sub)
        .setIssuedAt(now)
        .setExpirationTime(now + 300)
        .sign(signing.key);
    const store = createMemoryStore();
    const tokens = await createTokenAuthority({ issuer: 'x', clock });
    const gl = createGrantline({
      store,
      policy: { id: 'p', version: '1', owner: 'gov', rules: [rule] },
      executors: [tokens.executor],
      clock,
      identity,
    });
    return { gl, store, token };
  }
  // Signed claims that are JSON but not data a case can record (an IdP profile field, a CI claim).
  let deep: unknown = 'x';
  for (let i = 0; i < 40; i++) deep = { d: deep };
  const bad: [string, Record<string, unknown>][] = [
    ['U+0000', { name: 'a\u0000b' }],
    ['a lone surrogate', { name: 'a\ud800b' }],
    ['nesting past MAX_JSON_DEPTH', { deep }],
  ];
  for (const [label, claims] of bad) {
    it(`a subject assertion with ${label} in a claim is ERR_IDENTITY, and nothing is written`, async () => {
      const { gl, store, token } = await env();
      const before = store.dump();
      const err = await gl.request({ ...req, subjectAssertion: await token(CI, job.id, claims) }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toMatchObject({
        code: 'ERR_IDENTITY',
        details: { where: 'request', path: ['subjectAssertion'] },
      });
      expect(isGrantlineError(err)).toBe(true);
      expect(store.dump()).toBe(before);
    });
    it(`an approver assertion with ${label} in a claim is ERR_IDENTITY, and no approval is recorded`, async () => {
      const { gl, token } = await env();
      const g = await gl.request(req);
      const assertion = await token(IDP, 'olga', { ...claims, roles: ['service-owner'] });
      const err = await gl.approve(g.id, { approver: olga, assertion }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ code: 'ERR_IDENTITY', details: { where: 'approve', path: ['assertion'] } });
      expect(isGrantlineError(err)).toBe(true);
      const after = await gl.get(g.id);
      expect([after.state, after.approvals, after.version]).toEqual(['requested', [], g.version]);
    });
  }
  it('roles a verifier proves are checked like roles a host passes, and its untyped failure is ERR_IDENTITY', async () => {
    const answer = { subject: 'olga', issuer: IDP, roles: ['service-owner', 'bad\u0000role'], claims: {} };
    const { gl } = await env({ verify: async () => answer });
    const g = await gl.request(req);
    await expect(gl.approve(g.id, { approver: olga, assertion: 't' })).rejects.toMatchObject({
      code: 'ERR_IDENTITY',
    });
    const broken = await env({
      verify: async () => {
        throw new TypeError('jwks endpoint returned html');
      },
    });
    const g2 = await broken.gl.request(req);
    const err = await broken.gl.approve(g2.id, { approver: olga, assertion: 't' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'ERR_IDENTITY', details: { where: 'approve', path: ['assertion'] } });
    expect(isGrantlineError(err)).toBe(true);
  });
  it("a verifier's answer of the wrong shape is ERR_IDENTITY: null, or teams as one string", async () => {
    const wrong: unknown[] = [
      null,
      'olga',
      { subject: 'olga', issuer: IDP, roles: ['service-owner'], teams: 'ops', claims: {} },
      { subject: 'olga', issuer: IDP, roles: 'service-owner', claims: {} },
    ];
    for (const answer of wrong) {
      const { gl } = await env({ verify: async () => answer as never });
      const g = await gl.request(req);
      const err = await gl.approve(g.id, { approver: olga, assertion: 't' }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isGrantlineError(err), JSON.stringify(answer)).toBe(true);
      expect(err).toMatchObject({ code: 'ERR_IDENTITY', details: { where: 'approve', path: ['assertion'] } });
      expect((await gl.get(g.id)).approvals).toEqual([]);
    }
  });
});
