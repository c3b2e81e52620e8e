import assert from 'node:assert/strict';
import {
  type AuditEvent,
  type Clock,
  type Grantline,
  type PolicyInput,
  type Principal,
  type Signer,
  type TokenAuthority,
  canonicalJson,
  createGrantline,
  createJoseSigner,
  createJwks,
  createTokenAuthority,
  generateSigningKey,
  verifyEvidence,
} from '@grantline/core';
import { createMemoryStore } from '@grantline/store-memory';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPostgresRoleExecutor } from '../src/index.js';
import { PG_URL, connectionOf, pgAvailable } from './helpers.js';

/**
 * One case spanning two systems: a temporary PostgreSQL login (this example's executor) and a signed
 * access token (core's token executor), under one approval set, revoked and verified together, with
 * one signed evidence bundle. Everything is real: the PostgreSQL server, the logins, the token
 * signatures and the evidence signature.
 */

const available = await pgAvailable();
const admin = new pg.Pool({ connectionString: PG_URL, max: 4 });
const connection = connectionOf(PG_URL);
// Roles of this file only (the conformance test uses gl_kit_ and gl_example_readers).
const GROUP = 'gl_2s_readers';
const MISSING_GROUP = 'gl_2s_no_such_group';

const policy: PolicyInput = {
  id: 'two-systems',
  version: '2026-12',
  owner: 'security-governance',
  rules: [
    {
      // One rule governs both systems: a case whose targets match different rules is refused
      // (RULES_DIFFER), so a case spanning two systems needs a rule that covers both.
      id: 'prod-db',
      risk: 'high',
      match: { systems: ['postgres', 'token'], resources: ['postgres://prod/*', 'api://prod/*'] },
      operator: 'platform-team',
      maxDurationSeconds: 3600,
      require: { ticket: { pattern: '^OPS-\\d+$' } },
      approvals: { count: 2, roles: ['dba', 'security-officer'], distinctRoles: true },
    },
  ],
};

const alice: Principal = { id: 'alice', kind: 'human', roles: ['developer'], teams: ['payments'] };
const job: Principal = { id: 'repo:acme/payments:migrate', kind: 'workload', roles: [], teams: [] };
const bob: Principal = { id: 'bob', kind: 'human', roles: ['dba'], teams: ['data'] };
const dave: Principal = { id: 'dave', kind: 'human', roles: ['dba'], teams: ['data'] };
const carol: Principal = { id: 'carol', kind: 'human', roles: ['security-officer'], teams: ['security'] };

/** Real time, plus an offset the test can move to reach the window's end without waiting. */
function offsetClock(): Clock & { advance(ms: number): void } {
  let offset = 0;
  return {
    now: () => new Date(Date.now() + offset),
    advance(ms) {
      offset += ms;
    },
  };
}

interface Env {
  service: Grantline;
  authority: TokenAuthority;
  signer: Signer;
  clock: ReturnType<typeof offsetClock>;
  prefix: string;
}

let envs = 0;
async function setup(): Promise<Env> {
  const clock = offsetClock();
  // The token authority keeps real time, like the relying service that checks tokens would.
  const authority = await createTokenAuthority({ issuer: 'https://grantline.test' });
  const signer = await createJoseSigner({ privateJwk: (await generateSigningKey()).privateJwk });
  const prefix = `gl_2s_${++envs}_`;
  const service = createGrantline({
    store: createMemoryStore(),
    policy,
    executors: [createPostgresRoleExecutor({ admin, connection, prefix }), authority.executor],
    clock,
    signer,
  });
  return { service, authority, signer, clock, prefix };
}

function request(env: Env, group = GROUP, order: 'db-first' | 'api-first' = 'db-first') {
  const db = {
    id: 'db',
    system: 'postgres',
    resource: 'postgres://prod/payments',
    params: { group, connectionLimit: 2 },
  };
  const api = {
    id: 'api',
    system: 'token',
    resource: 'api://prod/payments',
    permissions: ['schema:migrate'],
  };
  return env.service.request({
    requester: alice,
    subject: job,
    justification: { reason: 'run the payments schema migration', ticket: 'OPS-4711' },
    targets: order === 'db-first' ? [db, api] : [api, db],
    durationSeconds: 600,
  });
}

/** Logs in to PostgreSQL as the issued role; returns the connected client (caller ends it). */
async function login(role: string, password: string): Promise<pg.Client> {
  const c = new pg.Client({ ...connection, user: role, password, connectionTimeoutMillis: 5_000 });
  c.on('error', () => {}); // a terminated session reports here; the test checks queries instead
  try {
    await c.connect();
  } catch (err) {
    await c.end().catch(() => {});
    throw err;
  }
  return c;
}

async function loginWorks(role: string, password: string): Promise<boolean> {
  const c = await login(role, password);
  try {
    const r = await c.query('SELECT current_user AS me, pg_has_role(current_user, $1, $2) AS member', [
      GROUP,
      'member',
    ]);
    return r.rows[0].me === role && r.rows[0].member === true;
  } finally {
    await c.end().catch(() => {});
  }
}

async function rolesWithPrefix(prefix: string): Promise<string[]> {
  const r = await admin.query('SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)', [prefix]);
  return r.rows.map((x) => x.rolname as string);
}

/** Runs the sweeper until the case settles in `state` (or gives up after `passes`). */
async function sweepUntil(env: Env, id: string, state: string, passes = 10) {
  let g = await env.service.get(id);
  for (let i = 0; i < passes && g.state !== state; i++) {
    await env.service.sweep();
    g = await env.service.get(id);
  }
  return g;
}

const ofTarget = (events: AuditEvent[], type: string, targetId: string) =>
  events.filter((e) => e.type === type && (e.data as { targetId?: string }).targetId === targetId);

beforeAll(async () => {
  if (!available) return;
  await admin.query(
    `DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${GROUP}') THEN CREATE ROLE ${GROUP} NOLOGIN; END IF; END $$`,
  );
  await admin.query(`DROP ROLE IF EXISTS ${MISSING_GROUP}`);
});
afterAll(async () => {
  if (available) {
    // Leave no login behind if a test failed half-way.
    for (const role of await rolesWithPrefix('gl_2s_')) {
      if (role === GROUP) continue;
      await admin.query(`DROP OWNED BY "${role}"`).catch(() => {});
      await admin.query(`DROP ROLE IF EXISTS "${role}"`).catch(() => {});
    }
  }
  await admin.end();
});

describe.skipIf(!available)('one case spanning PostgreSQL and a token authority', () => {
  it('one approval set issues both; revoked and verified together; one evidence bundle covers both', async () => {
    const env = await setup();
    const g = await request(env);
    // The one high-risk rule covering both systems governs the case: two approvals in distinct roles.
    assert.equal(g.policy.ruleId, 'prod-db');
    assert.deepEqual(g.policy.approvals, {
      count: 2,
      roles: ['dba', 'security-officer'],
      distinctRoles: true,
    });

    await env.service.approve(g.id, { approver: bob, reason: 'migration reviewed' });
    await env.service.approve(g.id, { approver: carol });
    const { grant, credentials } = await env.service.issue(g.id);
    assert.equal(grant.state, 'issued');

    // Both credentials work for real.
    const role = grant.targets.find((t) => t.id === 'db')!.issuance!.ref.role!;
    assert.ok(role.startsWith(env.prefix));
    const password = credentials.db!.password!;
    const token = credentials.api!.token!;
    assert.equal(await loginWorks(role, password), true);
    const accepted = await env.authority.verifier.verify(token, { audience: 'api://prod/payments' });
    assert.equal(accepted.caseId, g.id);
    assert.equal(accepted.targetId, 'api');
    assert.deepEqual(accepted.scope, ['schema:migrate']);

    // A session left open is cut by the revocation, not only new logins.
    const live = await login(role, password);
    assert.equal((await live.query('SELECT 1 AS one')).rows[0].one, 1);

    const completed = await env.service.complete(g.id, { actor: alice, reason: 'migration done' });
    const settled = await sweepUntil(env, g.id, 'verified');
    assert.equal(settled.state, 'verified', `completed as ${completed.state}, swept to ${settled.state}`);

    await expect(live.query('SELECT 1')).rejects.toThrow();
    await live.end().catch(() => {});
    await expect(login(role, password)).rejects.toMatchObject({ code: '28000' }); // role does not exist
    assert.deepEqual(await rolesWithPrefix(env.prefix), []);
    await expect(
      env.authority.verifier.verify(token, { audience: 'api://prod/payments' }),
    ).rejects.toMatchObject({
      code: 'ERR_TOKEN_REJECTED',
      details: { reason: 'revoked' },
    });

    // One evidence bundle for the case, verifiable offline with the public JWKS only.
    const bundle = await env.service.evidence(g.id);
    const keys = createJwks(env.signer);
    const r = await verifyEvidence(JSON.parse(JSON.stringify(bundle)), { keys });
    assert.deepEqual(r.problems, []);
    assert.equal(r.valid, true);
    const p = r.payload!;
    assert.equal(p.caseId, g.id);
    assert.equal(p.record.state, 'verified');
    assert.deepEqual(
      p.record.targets.map((t) => [t.id, t.system]),
      [
        ['db', 'postgres'],
        ['api', 'token'],
      ],
    );
    assert.deepEqual(
      p.events.filter((e) => e.type === 'approval').map((e) => [e.actor.id, e.actingRole]),
      [
        ['bob', 'dba'],
        ['carol', 'security-officer'],
      ],
    );
    assert.equal(p.events.filter((e) => e.type === 'approved').length, 1, 'one approval set for the case');
    for (const id of ['db', 'api']) {
      for (const type of ['target.issued', 'target.revoked', 'target.verified']) {
        assert.equal(ofTarget(p.events, type, id).length, 1, `${type} of ${id}`);
      }
    }
    const dbVerified = ofTarget(p.events, 'target.verified', 'db')[0]!.data as Record<string, unknown>;
    assert.equal(dbVerified.method, 'pg_roles lookup + login probe');
    assert.match(JSON.stringify(dbVerified.observation), /role does not exist/);
    const apiVerified = ofTarget(p.events, 'target.verified', 'api')[0]!.data as Record<string, unknown>;
    assert.equal(apiVerified.method, 'signed-probe');
    assert.equal((apiVerified.observation as { rejected: string }).rejected, 'revoked');
    assert.equal(
      (ofTarget(p.events, 'target.revoked', 'db')[0]!.data as { detail: { sessionsTerminated: number } })
        .detail.sessionsTerminated,
      1,
    );
    // No secret of either system is in the bundle.
    assert.equal(bundle.payload.includes(password), false);
    assert.equal(bundle.payload.includes(token), false);

    // Tamper with one event of the PostgreSQL target: the bundle no longer verifies.
    const forged = JSON.parse(bundle.payload) as { events: AuditEvent[] };
    const ev = ofTarget(forged.events, 'target.revoked', 'db')[0]!;
    (ev.data as { detail: { sessionsTerminated: number } }).detail.sessionsTerminated = 0;
    const bad = await verifyEvidence({ ...bundle, payload: canonicalJson(forged) }, { keys });
    assert.equal(bad.valid, false);
    const errors = bad.problems.filter((x) => x.severity === 'error');
    assert.ok(
      errors.some((x) => x.code === 'SIGNATURE_INVALID'),
      JSON.stringify(errors),
    );
    assert.ok(
      errors.some((x) => x.code === 'CHAIN_HASH_MISMATCH' && x.seq === ev.seq),
      JSON.stringify(errors),
    );
  });

  it('at the end of the window the sweeper alone revokes and verifies both systems', async () => {
    const env = await setup();
    const g = await request(env);
    await env.service.approve(g.id, { approver: carol });
    await env.service.approve(g.id, { approver: bob });
    const { grant, credentials } = await env.service.issue(g.id);
    const role = grant.targets.find((t) => t.id === 'db')!.issuance!.ref.role!;
    const token = credentials.api!.token!;

    // Grantline's window has ended; the systems' own clocks have not, so both still accept the credentials:
    // only the sweeper's revocation stands between them and further use.
    env.clock.advance(601_000);
    assert.equal(await loginWorks(role, credentials.db!.password!), true);
    assert.equal(
      (await env.authority.verifier.verify(token, { audience: 'api://prod/payments' })).caseId,
      g.id,
    );

    const settled = await sweepUntil(env, g.id, 'verified');
    assert.equal(settled.state, 'verified');
    assert.equal(settled.revocation?.trigger, 'expiry');
    await expect(login(role, credentials.db!.password!)).rejects.toMatchObject({ code: '28000' });
    await expect(
      env.authority.verifier.verify(token, { audience: 'api://prod/payments' }),
    ).rejects.toMatchObject({
      details: { reason: 'revoked' },
    });
    const r = await verifyEvidence(await env.service.evidence(g.id), { keys: createJwks(env.signer) });
    assert.equal(r.valid, true, JSON.stringify(r.problems));
  });

  it('refuses to issue on one approval, and a second approver in the same role does not make two', async () => {
    const env = await setup();
    const g = await request(env);
    await env.service.approve(g.id, { approver: bob });
    await expect(env.service.issue(g.id)).rejects.toMatchObject({ code: 'ERR_INVALID_TRANSITION' });
    // Distinct roles: another dba is not the second approval.
    await expect(env.service.approve(g.id, { approver: dave })).rejects.toMatchObject({
      code: 'ERR_APPROVAL_REFUSED',
    });
    await expect(env.service.issue(g.id)).rejects.toMatchObject({ code: 'ERR_INVALID_TRANSITION' });
    const after = await env.service.get(g.id);
    assert.equal(after.state, 'requested');
    assert.deepEqual(
      after.approvals.map((a) => a.approver.id),
      ['bob'],
    );
    // Nothing was created in either system.
    assert.deepEqual(await rolesWithPrefix(env.prefix), []);
    assert.ok(after.targets.every((t) => t.issuance === undefined));
    const events = await env.service.history(g.id);
    assert.equal(events.filter((e) => e.type.startsWith('target.') || e.type === 'issue.started').length, 0);
  });

  it('all or nothing: PostgreSQL fails at issue, so the issued token is revoked and verified; case failed', async () => {
    const env = await setup();
    // The token is issued first; the database login then fails for real (its group role does not exist).
    const g = await request(env, MISSING_GROUP, 'api-first');
    await env.service.approve(g.id, { approver: bob });
    await env.service.approve(g.id, { approver: carol });
    const err = await env.service.issue(g.id).then(
      () => assert.fail('issue must fail'),
      (e: unknown) => e as { code: string; details: Record<string, unknown> },
    );
    assert.equal(err.code, 'ERR_ISSUANCE_FAILED');
    assert.equal(err.details.targetId, 'db');
    assert.equal((err.details.error as { code: string }).code, 'ERR_EXECUTOR');

    const settled = await sweepUntil(env, g.id, 'failed');
    assert.equal(settled.state, 'failed');
    assert.equal(settled.revocation?.trigger, 'rollback');
    // The token that was issued is on the revocation list: any copy of it is rejected.
    assert.equal(await env.authority.revocations.has(`${g.id}:api`), true);
    // The failed CREATE ROLE was rolled back: no login exists.
    assert.deepEqual(await rolesWithPrefix(env.prefix), []);

    const events = await env.service.history(g.id);
    assert.equal(ofTarget(events, 'target.issued', 'api').length, 1);
    assert.equal(ofTarget(events, 'target.issued', 'db').length, 0);
    assert.equal(
      (events.find((e) => e.type === 'issue.failed')!.data as { failedTargetId: string }).failedTargetId,
      'db',
    );
    for (const id of ['api', 'db']) {
      assert.equal(ofTarget(events, 'target.revoked', id).length, 1, `revoked ${id}`);
      assert.equal(ofTarget(events, 'target.verified', id).length, 1, `verified ${id}`);
    }
    assert.equal(
      (ofTarget(events, 'target.revoked', 'api')[0]!.data as { alreadyGone: boolean }).alreadyGone,
      false,
    );
    assert.equal(
      (ofTarget(events, 'target.verified', 'api')[0]!.data as { observation: { rejected: string } })
        .observation.rejected,
      'revoked',
    );
    const r = await verifyEvidence(await env.service.evidence(g.id), { keys: createJwks(env.signer) });
    assert.equal(r.valid, true, JSON.stringify(r.problems));
    assert.equal(r.payload!.record.state, 'failed');
  });
});
