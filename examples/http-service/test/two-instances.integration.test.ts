import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { verifyEvidence } from '@grantline/core';
import { type CryptoKey, type JWK, SignJWT, exportJWK, generateKeyPair } from 'jose';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// biome-ignore lint/suspicious/noExplicitAny: the test reads arbitrary JSON responses.
type J = any;

const PG_URL = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

async function pgUp(): Promise<boolean> {
  const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 2_000 });
  try {
    await c.connect();
    return true;
  } catch (err) {
    if (process.env.CI)
      throw new Error(`PostgreSQL is required in CI but ${PG_URL} did not answer: ${String(err)}`);
    console.warn(`SKIPPED: no PostgreSQL at ${PG_URL}; the http-service end-to-end test did not run`);
    return false;
  } finally {
    await c.end().catch(() => {});
  }
}
const available = await pgUp();

const dir = new URL('..', import.meta.url).pathname;
const schema = `http_e2e_${randomBytes(4).toString('hex')}`;
const AUD = 'grantline-http-service';
const keyPair = () => generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });

interface Instance {
  url: string;
  proc: ChildProcess;
  output: string[];
}
const instances: Instance[] = [];
let idpKey: CryptoKey;
let ciKey: CryptoKey;

async function mint(key: CryptoKey, issuer: string, sub: string, claims: Record<string, unknown> = {}) {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'EdDSA', kid: issuer.includes('idp') ? 'idp-1' : 'ci-1' })
    .setIssuer(issuer)
    .setAudience(AUD)
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime('10m')
    .sign(key);
}
const person = (sub: string, roles: string[], teams: string[] = []) =>
  mint(idpKey, 'https://idp.test', sub, { roles, teams });
const workload = (sub: string) =>
  mint(ciKey, 'https://ci.test', sub, { repository: 'acme/orders', ref: 'refs/heads/main', run_id: '42' });

async function call(i: number, method: string, path: string, token?: string, body?: unknown) {
  const res = await fetch(`${instances[i]!.url}${path}`, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: res.status, headers: res.headers, body: json as Record<string, J> };
}

async function start(name: string, env: Record<string, string>): Promise<Instance> {
  const proc = spawn(process.execPath, ['--import', 'tsx', '--conditions', 'source', 'src/main.ts'], {
    cwd: dir,
    env: { ...process.env, ...env, INSTANCE_ID: name, PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`instance ${name} did not start: ${output.join('')}`)),
      60_000,
    );
    const onData = (d: Buffer) => {
      output.push(d.toString());
      const m = /listening (http:\/\/\S+)/.exec(output.join(''));
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', (d: Buffer) => output.push(d.toString()));
    proc.once('exit', (code) => reject(new Error(`instance ${name} exited ${code}: ${output.join('')}`)));
  });
  return { url, proc, output };
}

let baseEnv: Record<string, string> = {};

beforeAll(async () => {
  if (!available) return;
  const idp = await keyPair();
  const ci = await keyPair();
  idpKey = idp.privateKey;
  ciKey = ci.privateKey;
  const pub = async (k: CryptoKey, kid: string) => ({
    keys: [{ ...(await exportJWK(k)), kid, alg: 'EdDSA' }],
  });
  const priv = async (): Promise<JWK> => exportJWK((await keyPair()).privateKey);
  const env = {
    DATABASE_URL: PG_URL,
    SCHEMA: schema,
    AUDIENCE: AUD,
    IDP_ISSUER: 'https://idp.test',
    CI_ISSUER: 'https://ci.test',
    IDP_JWKS: JSON.stringify(await pub(idp.publicKey, 'idp-1')),
    CI_JWKS: JSON.stringify(await pub(ci.publicKey, 'ci-1')),
    EVIDENCE_KEY: JSON.stringify(await priv()),
    ACCESS_TOKEN_KEY: JSON.stringify(await priv()),
    SWEEP_LIMIT: '2',
  };
  baseEnv = env;
  // Both start at once: migrations must be safe when several instances race.
  instances.push(...(await Promise.all([start('a', env), start('b', env)])));
});

afterAll(async () => {
  for (const i of instances) if (i.proc.exitCode === null) i.proc.kill('SIGKILL');
  if (!available) return;
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await c.end();
});

describe.skipIf(!available)('http-service: two instances, one database', () => {
  it('drives a whole case over HTTP across both instances, with proven approvers and signed evidence', async () => {
    const job = await workload('ci:orders-export');
    const sam = await person('sam', ['security-officer'], ['security']);
    const olga = await person('olga', ['service-owner'], ['orders']);
    const oscar = await person('oscar', ['service-owner'], ['platform-ops']);

    const created = await call(0, 'POST', '/cases', job, {
      justification: { reason: 'monthly export', ticket: 'OPS-77' },
      targets: [{ id: 'orders', system: 'token', resource: 'api://orders', permissions: ['orders:list'] }],
      durationSeconds: 600,
    });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    expect(created.body.requester).toMatchObject({ id: 'ci:orders-export', kind: 'workload' });
    expect(created.body.subject.claims.proof).toMatchObject({ issuer: 'https://ci.test' });

    expect((await call(1, 'POST', `/cases/${id}/approve`, job, {})).body.error.code).toBe('ERR_IDENTITY');
    const refused = await call(1, 'POST', `/cases/${id}/approve`, oscar, {});
    expect([refused.status, refused.body.error.code]).toEqual([403, 'ERR_APPROVAL_REFUSED']);
    expect((await call(0, 'POST', `/cases/${id}/approve`, sam, { reason: 'reviewed' })).body.state).toBe(
      'requested',
    );
    const approved = await call(1, 'POST', `/cases/${id}/approve`, olga, {});
    expect(approved.body.state).toBe('approved');
    expect(approved.body.approvals.map((a: J) => a.proof.issuer)).toEqual([
      'https://idp.test',
      'https://idp.test',
    ]);

    const issued = await call(1, 'POST', `/cases/${id}/issue`, job, {});
    expect(issued.status).toBe(200);
    const access = issued.body.credentials.orders.token as string;
    const used = await call(0, 'GET', '/api/orders', access);
    expect(used.status).toBe(200);
    expect((await call(1, 'GET', '/api/orders', access)).status).toBe(200);

    const done = await call(0, 'POST', `/cases/${id}/complete`, job, { reason: 'export written' });
    expect(done.body.state).toBe('verified');
    const after = await call(1, 'GET', '/api/orders', access);
    expect([after.status, after.body.error.code]).toEqual([401, 'ERR_TOKEN_REJECTED']);

    const timeline = await call(1, 'GET', `/cases/${id}/timeline`, sam);
    const types = (timeline.body as J[]).map((e) => e.type);
    expect(types.filter((t) => t === 'usage')).toHaveLength(2);
    expect((timeline.body as J[]).find((e) => e.type === 'usage').data).toMatchObject({
      sourceIp: '127.0.0.1',
      action: 'orders:list',
    });
    expect(types.at(-1)).toBe('verified');
    const text = await fetch(`${instances[0]!.url}/cases/${id}/timeline?format=text`, {
      headers: { authorization: `Bearer ${sam}` },
    }).then((r) => r.text());
    expect(text).toMatch(/approval\s+│ olga \(human\)\s+│ service-owner/);

    const bundle = (await call(0, 'GET', `/cases/${id}/evidence`, sam)).body;
    const jwks = (await call(1, 'GET', '/.well-known/jwks.json')).body;
    const verdict = await verifyEvidence(bundle, { keys: jwks as never });
    expect(verdict.problems).toEqual([]);
    expect(verdict.valid).toBe(true);
    expect(JSON.stringify(bundle)).not.toContain(access.split('.')[2]);
  });

  it('maps errors to HTTP status codes with the ERR_* code in the body', async () => {
    const job = await workload('ci:orders-export');
    const noTicket = await call(0, 'POST', '/cases', job, {
      justification: { reason: 'x' },
      targets: [{ id: 'o', system: 'token', resource: 'api://orders' }],
      durationSeconds: 60,
    });
    expect([noTicket.status, noTicket.body.error.code, noTicket.body.error.details.reasons[0].code]).toEqual([
      403,
      'ERR_POLICY_DENIED',
      'TICKET_REQUIRED',
    ]);
    const bad = await call(1, 'POST', '/cases', job, {
      justification: { reason: 'x', ticket: 'OPS-1' },
      targets: [],
      durationSeconds: 60,
    });
    expect([bad.status, bad.body.error.code, bad.body.error.details.issues[0].path]).toEqual([
      400,
      'ERR_VALIDATION',
      ['targets'],
    ]);
    expect((await call(0, 'GET', '/cases/nope', job)).status).toBe(404);
    expect((await call(0, 'GET', '/cases/nope')).body.error.code).toBe('ERR_IDENTITY');
    const forged = await mint((await keyPair()).privateKey, 'https://idp.test', 'mallory', {
      roles: ['security-officer'],
    });
    expect((await call(0, 'GET', '/cases/nope', forged)).status).toBe(401);
  });

  /** A CI job's case for the orders API, approved by two proven approvers of distinct roles. */
  async function approvedOrdersCase(job: string) {
    const created = await call(0, 'POST', '/cases', job, {
      justification: { reason: 'incident follow-up', ticket: 'OPS-91' },
      targets: [{ id: 'orders', system: 'token', resource: 'api://orders', permissions: ['orders:list'] }],
      durationSeconds: 600,
    });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    const sam = await person('sam', ['security-officer'], ['security']);
    const olga = await person('olga', ['service-owner'], ['orders']);
    expect((await call(0, 'POST', `/cases/${id}/approve`, sam, {})).status).toBe(200);
    expect((await call(1, 'POST', `/cases/${id}/approve`, olga, {})).body.state).toBe('approved');
    return id;
  }

  it('denies over HTTP: only a proven approver with a qualifying role decides, whatever the body says', async () => {
    const job = await workload('ci:orders-export');
    const sam = await person('sam', ['security-officer'], ['security']);
    const devin = await person('devin', ['developer'], ['orders']);
    const created = await call(0, 'POST', '/cases', job, {
      justification: { reason: 'ad-hoc export', ticket: 'OPS-90' },
      targets: [{ id: 'orders', system: 'token', resource: 'api://orders', permissions: ['orders:list'] }],
      durationSeconds: 600,
    });
    const id = created.body.id as string;

    // The requesting workload is not an approver, and a token from someone else's key proves nothing.
    const asJob = await call(1, 'POST', `/cases/${id}/deny`, job, { reason: 'no' });
    expect([asJob.status, asJob.body.error.code]).toEqual([401, 'ERR_IDENTITY']);
    const forged = await mint((await keyPair()).privateKey, 'https://idp.test', 'sam', {
      roles: ['security-officer'],
    });
    const asForged = await call(1, 'POST', `/cases/${id}/deny`, forged, { reason: 'no' });
    expect([asForged.status, asForged.body.error.code]).toEqual([401, 'ERR_IDENTITY']);
    // A real person without a qualifying role is refused, even when the body claims a role or identity.
    const refused = await call(1, 'POST', `/cases/${id}/deny`, devin, {
      reason: 'not needed',
      actor: { id: 'sam', kind: 'human', roles: ['security-officer'] },
      roles: ['security-officer'],
    });
    expect([refused.status, refused.body.error.code, refused.body.error.details.reasons[0].code]).toEqual([
      403,
      'ERR_APPROVAL_REFUSED',
      'ROLE_NOT_QUALIFIED',
    ]);
    expect((await call(0, 'GET', `/cases/${id}`, job)).body.state).toBe('requested');

    const denied = await call(0, 'POST', `/cases/${id}/deny`, sam, { reason: 'use the nightly export' });
    expect([denied.status, denied.body.state]).toEqual([200, 'denied']);
    expect(denied.body.decision).toMatchObject({
      outcome: 'denied',
      reason: 'use the nightly export',
      by: { id: 'sam' },
    });
    // Denied is final: no approval, issue or second decision moves it, on either instance.
    const olga = await person('olga', ['service-owner'], ['orders']);
    for (const [i, path, token] of [
      [1, 'approve', olga],
      [0, 'issue', job],
      [1, 'deny', sam],
    ] as const) {
      const r = await call(i, 'POST', `/cases/${id}/${path}`, token, { reason: 'again' });
      expect([path, r.status, r.body.error.code]).toEqual([path, 409, 'ERR_INVALID_TRANSITION']);
    }
    const events = (await call(1, 'GET', `/cases/${id}/timeline`, sam)).body as J[];
    expect(events.filter((e) => e.type === 'denied').map((e) => e.actor.id)).toEqual(['sam']);
    expect(events.some((e) => e.type === 'target.issued')).toBe(false);
  });

  it('revokes manually over HTTP: the case reaches verified and the token is refused on both instances', async () => {
    const job = await workload('ci:orders-export');
    const sam = await person('sam', ['security-officer'], ['security']);
    const id = await approvedOrdersCase(job);
    const access = (await call(1, 'POST', `/cases/${id}/issue`, job, {})).body.credentials.orders
      .token as string;
    expect((await call(0, 'GET', '/api/orders', access)).status).toBe(200);

    // Revoke is for people with an IdP token; a malformed request changes nothing.
    const asJob = await call(0, 'POST', `/cases/${id}/revoke`, job, { reason: 'x' });
    expect([asJob.status, asJob.body.error.code]).toEqual([401, 'ERR_IDENTITY']);
    const noReason = await call(0, 'POST', `/cases/${id}/revoke`, sam, {});
    expect([noReason.status, noReason.body.error.code, noReason.body.error.details.issues[0].path]).toEqual([
      400,
      'ERR_VALIDATION',
      ['reason'],
    ]);
    expect((await call(1, 'GET', `/cases/${id}`, job)).body.state).toBe('issued');
    expect((await call(1, 'GET', '/api/orders', access)).status).toBe(200);

    const revoked = await call(1, 'POST', `/cases/${id}/revoke`, sam, { reason: 'suspicious traffic' });
    expect([revoked.status, revoked.body.state]).toEqual([200, 'verified']);
    expect(revoked.body.revocation).toMatchObject({
      trigger: 'manual',
      reason: 'suspicious traffic',
      actor: { id: 'sam' },
    });
    expect(revoked.body.revocation.verifiedAt).toEqual(expect.any(String));
    for (const i of [0, 1]) {
      const r = await call(i, 'GET', '/api/orders', access);
      expect([r.status, r.body.error.code]).toEqual([401, 'ERR_TOKEN_REJECTED']);
    }
    // A repeated revoke is idempotent: the same verified case, no second revocation.
    const again = await call(0, 'POST', `/cases/${id}/revoke`, sam, { reason: 'again' });
    expect([again.status, again.body.state, again.body.revocation.reason]).toEqual([
      200,
      'verified',
      'suspicious traffic',
    ]);
    const types = ((await call(0, 'GET', `/cases/${id}/timeline`, sam)).body as J[]).map((e) => e.type);
    expect(types.filter((t) => t === 'revoke.requested')).toHaveLength(1);
    expect(types.slice(types.indexOf('revoke.requested'))).toEqual([
      'revoke.requested',
      'target.revoked',
      'revoked',
      'target.verified',
      'verified',
    ]);
  });

  it('records usage directly over HTTP; the user is never taken from the body; a use outside policy revokes', async () => {
    const job = await workload('ci:orders-export');
    const bastion = await workload('host:bastion-1');
    const sam = await person('sam', ['security-officer'], ['security']);
    const id = await approvedOrdersCase(job);
    const access = (await call(0, 'POST', `/cases/${id}/issue`, job, {})).body.credentials.orders
      .token as string;
    const use = { targetId: 'orders', sourceIp: '10.1.2.3', action: 'orders:export', source: 'bastion' };

    expect((await call(0, 'POST', `/cases/${id}/usage`, undefined, use)).status).toBe(401);
    const asOther = await call(0, 'POST', `/cases/${id}/usage`, bastion, {
      ...use,
      actor: { id: 'mallory', kind: 'human', roles: [] },
    });
    expect([asOther.status, asOther.body.error.code, asOther.body.error.details.issues[0].path]).toEqual([
      400,
      'ERR_VALIDATION',
      ['actor'],
    ]);
    const badIp = await call(1, 'POST', `/cases/${id}/usage`, bastion, { ...use, sourceIp: 'localhost' });
    expect([badIp.status, badIp.body.error.code, badIp.body.error.details.issues[0].path]).toEqual([
      400,
      'ERR_VALIDATION',
      ['sourceIp'],
    ]);
    const badTarget = await call(1, 'POST', `/cases/${id}/usage`, bastion, { ...use, targetId: 'billing' });
    expect([badTarget.status, badTarget.body.error.code]).toEqual([400, 'ERR_VALIDATION']);
    expect((await call(1, 'POST', '/cases/nope/usage', bastion, use)).status).toBe(404);

    const ok = await call(1, 'POST', `/cases/${id}/usage`, bastion, use);
    expect([ok.status, ok.body.state, ok.body.usage.count]).toEqual([200, 'issued', 1]);
    let events = (await call(0, 'GET', `/cases/${id}/timeline`, sam)).body as J[];
    const usage = events.filter((e) => e.type === 'usage');
    expect(usage).toHaveLength(1);
    expect(usage[0].actor.id).toBe('ci:orders-export');
    expect(usage[0].data).toMatchObject({
      ...use,
      usedBy: 'ci:orders-export',
      outcome: 'allowed',
      detail: { reportedBy: 'host:bastion-1' },
    });
    expect(JSON.stringify(events)).not.toContain('mallory');
    expect((await call(0, 'GET', '/api/orders', access)).status).toBe(200);

    // From outside the policy's source CIDRs: recorded, flagged, and the access is revoked at once.
    const outside = await call(0, 'POST', `/cases/${id}/usage`, bastion, { ...use, sourceIp: '203.0.113.9' });
    expect([outside.status, outside.body.state, outside.body.revocation.trigger]).toEqual([
      200,
      'verified',
      'violation',
    ]);
    const after = await call(1, 'GET', '/api/orders', access);
    expect([after.status, after.body.error.code]).toEqual([401, 'ERR_TOKEN_REJECTED']);
    events = (await call(1, 'GET', `/cases/${id}/timeline`, sam)).body as J[];
    expect(events.find((e) => e.type === 'violation').data.reasons[0].path).toContain('sourceIp');
  });

  it('splits the sweeper work between the instances', async () => {
    const job = await workload('ci:metrics');
    const ids: string[] = [];
    for (let n = 0; n < 16; n++) {
      const c = await call(n % 2, 'POST', '/cases', job, {
        justification: { reason: `scrape ${n}` },
        targets: [
          { id: 'metrics', system: 'token', resource: 'api://metrics', permissions: ['metrics:read'] },
        ],
        durationSeconds: 2,
        template: 'short-lived',
      });
      expect(c.status).toBe(201);
      expect((await call((n + 1) % 2, 'POST', `/cases/${c.body.id}/issue`, job, {})).status).toBe(200);
      ids.push(c.body.id);
    }
    const deadline = Date.now() + 30_000;
    let states: string[] = [];
    while (Date.now() < deadline) {
      states = await Promise.all(
        ids.map(async (id) => (await call(0, 'GET', `/cases/${id}`, job)).body.state as string),
      );
      if (states.every((s) => s === 'verified')) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(states.every((s) => s === 'verified')).toBe(true);
    const verifiers = new Set<string>();
    for (const id of ids) {
      const events = (await call(1, 'GET', `/cases/${id}/timeline`, job)).body as J[];
      verifiers.add(events.find((e) => e.type === 'target.verified').actor.id);
      expect(events.filter((e) => e.type === 'target.revoked')).toHaveLength(1);
    }
    expect([...verifiers].sort()).toEqual(['executor:token@a', 'executor:token@b']);
  });

  it('on SIGTERM finishes the request in flight, refuses new connections, then exits 0', async () => {
    const job = await workload('ci:orders-export');
    const id = await approvedOrdersCase(job);

    // Hold the case's row from outside: the issue on instance b then waits inside its first
    // compare-and-set UPDATE, a request really in flight when SIGTERM arrives. After that it still
    // has work to do (the executor call, a second write), which a shutdown that did not wait would cut.
    const locker = new pg.Client({ connectionString: PG_URL });
    const watcher = new pg.Client({ connectionString: PG_URL });
    await Promise.all([locker.connect(), watcher.connect()]);
    const b = instances[1]!;
    const exitB = new Promise<number | null>((resolve) => b.proc.once('exit', (code) => resolve(code)));
    let access = '';
    try {
      await locker.query('BEGIN');
      await locker.query(`SELECT 1 FROM "${schema}".grants WHERE id = $1 FOR UPDATE`, [id]);
      let answered = false;
      const inflight = call(1, 'POST', `/cases/${id}/issue`, job, {}).finally(() => {
        answered = true;
      });
      await until(async () => {
        // Another session: inside the locker's transaction pg_stat_activity is a frozen snapshot.
        const r = await watcher.query(
          `SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%UPDATE "${schema}".grants %'`,
        );
        return r.rowCount === 1;
      }, 'the issue to wait on the row lock');

      b.proc.kill('SIGTERM');
      await until(async () => b.output.join('').includes('SIGTERM: draining'), 'b to start draining');
      // Draining: no new connections, while the request in flight is still being served.
      await expect(rawGet(`${b.url}/healthz`)).rejects.toThrow(/ECONNREFUSED/);
      await new Promise((r) => setTimeout(r, 300));
      expect([answered, b.proc.exitCode, b.output.join('')]).toEqual([
        false,
        null,
        expect.not.stringContaining('stopped'),
      ]);

      await locker.query('COMMIT');
      const res = await inflight;
      expect([res.status, res.body.grant?.state]).toEqual([200, 'issued']);
      access = res.body.credentials.orders.token as string;
      // The answer ends its keep-alive connection, so the drain need not wait for the client's timeout.
      expect(res.headers.get('connection')).toBe('close');
    } finally {
      await Promise.all([locker.end(), watcher.end()]);
    }
    expect(await exitB).toBe(0);
    expect(b.output.join('')).toContain('stopped');
    // The other instance served on throughout and accepts the token that b issued while draining.
    expect((await call(0, 'GET', `/cases/${id}`, job)).body.state).toBe('issued');
    expect((await call(0, 'GET', '/api/orders', access)).status).toBe(200);

    const a = instances[0]!;
    const exitA = new Promise<number | null>((resolve) => a.proc.once('exit', (code) => resolve(code)));
    a.proc.kill('SIGTERM');
    expect(await exitA).toBe(0);
    expect(a.output.join('')).toContain('stopped');
  });

  it('on SIGTERM does not wait past DRAIN_TIMEOUT_MS for a request that never ends', async () => {
    const c = await start('c', { ...baseEnv, DRAIN_TIMEOUT_MS: '500' });
    instances.push(c);
    // A client that sends headers and part of the body, then nothing: its request never ends (it is
    // authenticated, so the handler goes on to read the body and stays in flight).
    const token = await workload('ci:stuck');
    const { hostname: host, port } = new URL(c.url);
    const stuck = net.connect(Number(port), host);
    await new Promise<void>((resolve, reject) => stuck.once('connect', resolve).once('error', reject));
    stuck.write(
      `POST /cases HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"re`,
    );
    const ended = new Promise<void>((resolve) => stuck.once('close', () => resolve()));
    await new Promise((r) => setTimeout(r, 200)); // the request is being read
    expect(stuck.destroyed).toBe(false);
    const exit = new Promise<number | null>((resolve) => c.proc.once('exit', (code) => resolve(code)));
    const t0 = Date.now();
    c.proc.kill('SIGTERM');
    expect(await exit).toBe(0);
    const took = Date.now() - t0;
    await ended; // the server closed the stuck connection
    expect(c.output.join('')).toContain('drain deadline passed');
    expect(c.output.join('')).toContain('stopped');
    // It waited for the deadline (not less), and not much more (no hang).
    expect(took).toBeGreaterThanOrEqual(450);
    expect(took).toBeLessThan(8_000);
  });
});

async function until(check: () => Promise<boolean>, what: string, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A GET on a fresh connection (no keep-alive pool), to see whether the server still accepts. */
function rawGet(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.once('error', reject);
  });
}
