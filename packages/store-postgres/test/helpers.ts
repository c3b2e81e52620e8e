import { randomUUID } from 'node:crypto';
import { type AuditDraft, type AuditEvent, type Grant, chainEvents } from '@grantline/core';
import pg from 'pg';

/** The test server; CI starts it (see .ci/run). */
export const PG_URL = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/**
 * Checks that the server answers (creating the database named in PG_URL when it is missing).
 * Locally returns a reason to skip; in CI (`process.env.CI`) throws, so the suite fails instead.
 */
export async function pgAvailable(url = PG_URL): Promise<string | null> {
  const tryConnect = async (u: string) => {
    const c = new pg.Client({ connectionString: u, connectionTimeoutMillis: 3_000 });
    c.on('error', () => undefined);
    await c.connect();
    return c;
  };
  try {
    const c = await tryConnect(url);
    await c.end();
    return null;
  } catch (err) {
    if ((err as { code?: string }).code === '3D000') {
      const u = new URL(url);
      const dbName = u.pathname.slice(1);
      u.pathname = '/postgres';
      try {
        const admin = await tryConnect(u.toString());
        await admin.query(`CREATE DATABASE "${dbName.replace(/"/g, '""')}"`).catch((e: { code?: string }) => {
          if (e.code !== '42P04') throw e;
        });
        await admin.end();
        return null;
      } catch (err2) {
        return fail(url, err2);
      }
    }
    return fail(url, err);
  }
}

function fail(url: string, err: unknown): string {
  const safe = url.replace(/\/\/[^@/]*@/, '//***@');
  const why = `no PostgreSQL answers at ${safe} (${(err as Error).message}); set PG_URL or start the server`;
  if (process.env.CI) throw new Error(`CI requires PostgreSQL: ${why}`);
  console.warn(`SKIPPED store-postgres integration tests: ${why}`);
  return why;
}

/** A unique schema name for one test file or test. */
export const freshSchema = (prefix = 't') => `${prefix}_${randomUUID().replace(/-/g, '').slice(0, 12)}`;

/** A pool that survives server restarts in tests (idle-client errors are expected then). */
export function testPool(max = 8, url = PG_URL): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max });
  pool.on('error', () => undefined);
  return pool;
}

const at0 = '2030-01-01T00:00:00.000Z';

/** A structurally complete case record for store-level tests. */
export function makeGrant(id: string, over: Partial<Grant> = {}): Grant {
  const base: Grant = {
    id,
    version: 1,
    createdAt: at0,
    updatedAt: at0,
    state: 'requested',
    requester: { id: 'alice', kind: 'human', roles: ['dev'], teams: [] },
    subject: { id: 'ci-job', kind: 'workload', roles: [], teams: [] },
    justification: { reason: 'deploy' },
    targets: [{ id: 't1', system: 'token', resource: 'api://x' }],
    window: { durationSeconds: 600, requestExpiresAt: '2030-01-02T00:00:00.000Z', extensions: 0 },
    policy: {
      policyId: 'p',
      policyVersion: '1',
      policyHash: 'h',
      ruleId: 'r',
      risk: 'low',
      owner: 'sec',
      operator: 'ops',
      approvals: { count: 1, roles: ['lead'], distinctRoles: false },
      maxDurationSeconds: 3600,
    },
    approvals: [],
    usage: { count: 0 },
    audit: { seq: 0, head: '' },
    dueAt: '2030-01-02T00:00:00.000Z',
  };
  return { ...base, ...over };
}

/** Chained events for `grant`, continuing after `prev`. */
export function makeEvents(
  caseId: string,
  prev: AuditEvent | undefined,
  types: string[],
  at = at0,
): AuditEvent[] {
  const drafts: AuditDraft[] = types.map((type) => ({
    type,
    actor: { id: 'alice', kind: 'human' },
    data: { note: type },
  }));
  return chainEvents(caseId, at, prev, drafts);
}

/** The next version of `g` with `changes`, audit head moved to the last of `events`. */
export function nextVersion(g: Grant, changes: Partial<Grant>, events: AuditEvent[]): Grant {
  const last = events[events.length - 1];
  return {
    ...g,
    ...changes,
    version: g.version + 1,
    audit: last ? { seq: last.seq, head: last.hash } : g.audit,
  };
}
