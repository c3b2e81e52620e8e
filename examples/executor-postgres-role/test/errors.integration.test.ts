import assert from 'node:assert/strict';
import { type AddressInfo, type Server, type Socket, createServer } from 'node:net';
import { type GrantlineError, isGrantlineError } from '@grantline/core';
import { makeGrant } from '@grantline/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { createPostgresRoleExecutor, postgresRoleParams, toExecutorError } from '../src/index.js';
import { PG_URL, connectionOf, pgAvailable } from './helpers.js';

// The error mapping, tried against real failures: a closed port, a peer that drops the connection,
// a session the server terminates, an admin without privileges, a bad statement, a missing group.

const available = await pgAvailable();
const root = new pg.Pool({ connectionString: PG_URL, max: 2 });
const GROUP = 'gl_err_readers';
const WEAK = `glx_err_weak_${process.pid}`; // may log in, may not create roles
const ADMIN = `glx_err_admin_${process.pid}`; // CREATEROLE and member of GROUP, not a superuser
const PREFIX = 'gl_err_';
const conn = connectionOf(PG_URL);

/** An issue context; `expiresAt: null` leaves the window without an end. */
function grantFor(group = GROUP, expiresAt: string | null = new Date(Date.now() + 600_000).toISOString()) {
  const { grant } = makeGrant({ state: 'issuing' });
  const target = { id: 'db', system: 'postgres', resource: 'postgres://test', params: { group } };
  const { expiresAt: _, ...open } = grant.window;
  const window = {
    ...open,
    durationSeconds: 600,
    issuedAt: new Date().toISOString(),
    ...(expiresAt === null ? {} : { expiresAt }),
  };
  return {
    grant: { ...grant, targets: [target], window },
    target: { ...target, params: postgresRoleParams.parse(target.params) },
    now: new Date(),
  };
}

const executorOn = (pool: pg.Pool) =>
  createPostgresRoleExecutor({ admin: pool, connection: conn, prefix: PREFIX });

async function failure(p: Promise<unknown>): Promise<GrantlineError> {
  try {
    await p;
  } catch (err) {
    assert.ok(isGrantlineError(err), `a GrantlineError, not ${String(err)}`);
    return err;
  }
  assert.fail('expected a failure');
}

async function listen(onSocket: (s: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer(onSocket);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

beforeAll(async () => {
  if (!available) return;
  await root.query(
    `DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${GROUP}') THEN CREATE ROLE ${GROUP} NOLOGIN; END IF; END $$`,
  );
  for (const r of [WEAK, ADMIN]) await root.query(`DROP ROLE IF EXISTS ${r}`);
  await root.query(`CREATE ROLE ${WEAK} LOGIN`);
  await root.query(`CREATE ROLE ${ADMIN} LOGIN CREATEROLE IN ROLE ${GROUP}`);
});
afterAll(async () => {
  if (available) {
    const left = await root.query('SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)', [PREFIX]);
    for (const { rolname } of left.rows) {
      if (rolname === GROUP) continue;
      await root.query(`DROP OWNED BY "${rolname}"`).catch(() => {});
      await root.query(`DROP ROLE IF EXISTS "${rolname}"`).catch(() => {});
    }
    for (const r of [WEAK, ADMIN]) await root.query(`DROP ROLE IF EXISTS ${r}`);
  }
  await root.end();
});

describe.skipIf(!available)('postgres-role executor: error mapping against real failures', () => {
  it('a closed port is a retryable ERR_EXECUTOR for issue, revoke and verify', async () => {
    const { server, port } = await listen((s) => s.destroy());
    await new Promise<void>((resolve) => server.close(() => resolve())); // now nothing listens there
    const pool = new pg.Pool({ host: '127.0.0.1', port, database: 'test', user: 'postgres' });
    try {
      const ex = executorOn(pool);
      const ctx = grantFor();
      const rc = { ...ctx, trigger: 'manual' as const, reason: 'test' };
      for (const [what, p] of [
        ['issue', ex.issue(ctx)],
        ['revoke', ex.revoke(rc)],
        ['verify', ex.verify(rc)],
      ] as const) {
        const err = await failure(p);
        assert.deepEqual(
          [what, err.code, err.retryable, err.details],
          [what, 'ERR_EXECUTOR', true, { sqlstate: 'ECONNREFUSED' }],
        );
      }
    } finally {
      await pool.end();
    }
  });

  it('a peer that drops the connection (no SQLSTATE, only a driver message) is retryable', async () => {
    const { server, port } = await listen((s) => s.destroy());
    const pool = new pg.Pool({ host: '127.0.0.1', port, database: 'test', user: 'postgres' });
    try {
      const err = await failure(executorOn(pool).issue(grantFor()));
      assert.deepEqual([err.code, err.retryable], ['ERR_EXECUTOR', true]);
      assert.match(String((err.cause as Error).message), /Connection terminated/);
    } finally {
      await pool.end();
      server.close();
    }
  });

  it('a session the server terminated (pg_terminate_backend) is retryable', async () => {
    const client = new pg.Client({ connectionString: PG_URL });
    client.on('error', () => {});
    await client.connect();
    const pid = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    await root.query('SELECT pg_terminate_backend($1)', [pid]);
    const raw = await client.query('SELECT 1').then(
      () => undefined,
      (e: unknown) => e,
    );
    await client.end().catch(() => {});
    assert.ok(raw instanceof Error, 'the terminated session fails');
    const err = toExecutorError('issue', raw);
    assert.equal(err.retryable, true, `retryable for ${(raw as { code?: string }).code} ${raw.message}`);
  });

  it('an admin without CREATEROLE gets permission denied (42501): not retryable, nothing left behind', async () => {
    const pool = new pg.Pool({ ...conn, user: WEAK });
    try {
      const ctx = grantFor();
      const err = await failure(executorOn(pool).issue(ctx));
      assert.deepEqual(
        [err.code, err.retryable, err.details],
        ['ERR_EXECUTOR', false, { sqlstate: '42501' }],
      );
      const out = await executorOn(root).verify({ ...ctx, trigger: 'rollback', reason: 'test' });
      assert.equal(out.status, 'absent');
    } finally {
      await pool.end();
    }
  });

  it('SQL errors are not retryable: a syntax error (42601) and a missing group role (42704)', async () => {
    const raw = await root.query('SELEC 1').then(
      () => undefined,
      (e: unknown) => e,
    );
    const syntax = toExecutorError('issue', raw);
    assert.deepEqual([syntax.retryable, syntax.details], [false, { sqlstate: '42601' }]);

    const ctx = grantFor('gl_err_no_such_group');
    const err = await failure(executorOn(root).issue(ctx));
    assert.deepEqual([err.code, err.retryable, err.details], ['ERR_EXECUTOR', false, { sqlstate: '42704' }]);
    const out = await executorOn(root).verify({ ...ctx, trigger: 'rollback', reason: 'test' });
    assert.equal(out.status, 'absent', 'the failed issue rolled back its CREATE ROLE');
  });

  it('issue without a window end is ERR_VALIDATION, not a RangeError, and touches nothing', async () => {
    for (const expiresAt of [null, 'not a time']) {
      const ctx = grantFor(GROUP, expiresAt);
      const err = await failure(executorOn(root).issue(ctx));
      assert.deepEqual(
        [err.code, err.retryable, (err.details as { issues: { path: string[] }[] }).issues[0]!.path],
        ['ERR_VALIDATION', false, ['grant', 'window', 'expiresAt']],
      );
      const out = await executorOn(root).verify({ ...ctx, trigger: 'rollback', reason: 'test' });
      assert.equal(out.status, 'absent');
    }
  });

  it('a CREATEROLE admin that is not a superuser revokes a login with a live session', async () => {
    const pool = new pg.Pool({ ...conn, user: ADMIN });
    const ex = executorOn(pool);
    const ctx = grantFor();
    const issued = await ex.issue(ctx);
    const session = new pg.Client({
      ...conn,
      user: issued.ref.role as string,
      password: issued.secret!.password,
    });
    session.on('error', () => {});
    try {
      await session.connect();
      assert.equal((await session.query('SELECT current_user AS u')).rows[0].u, issued.ref.role);
      const rc = { ...ctx, trigger: 'manual' as const, reason: 'test' };
      const out = await ex.revoke(rc);
      assert.deepEqual([out.alreadyGone, out.detail?.sessionsTerminated], [false, 1]);
      await assert.rejects(session.query('SELECT 1'), 'the live session was terminated');
      assert.equal((await ex.verify(rc)).status, 'absent');
    } finally {
      await session.end().catch(() => {});
      await pool.end();
    }
  });
});
