import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { type Executor, GrantlineError, type RevokeContext } from '@grantline/core';
import pg from 'pg';
import { z } from 'zod';

/**
 * An executor for temporary PostgreSQL logins, written as a tool author would write one for any
 * credential system:
 * - issue creates a login role (name derived from case + target, so a crashed issue can be found and
 *   removed), with a random password returned once and `VALID UNTIL` the end of the window, and grants
 *   it a named group role;
 * - revoke removes the grant, terminates the role's sessions and drops it (already gone is success);
 * - verify proves absence twice over: the catalogue has no such role, and a login as it is refused.
 */

const ident = z
  .string()
  .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'a lower-case PostgreSQL identifier (letters, digits, _; at most 63)');

/** Target params, validated at request time. */
export const postgresRoleParams = z.strictObject({
  /** The group role whose privileges the temporary login receives. */
  group: ident,
  /** At most this many concurrent sessions (default 5). */
  connectionLimit: z.number().int().min(1).max(100).default(5),
});
export type PostgresRoleParams = z.output<typeof postgresRoleParams>;

/** Options for {@link createPostgresRoleExecutor}. */
export interface PostgresRoleExecutorOptions {
  /** A pool connected as a role with CREATEROLE and membership of the groups it grants. */
  admin: pg.Pool;
  /** How a login as `user` reaches the same server (host, port, database); used by verify. */
  connection: { host: string; port: number; database: string };
  /** The `system` name targets use (default `postgres`). */
  system?: string;
  /** Prefix of the roles this executor creates (default `gl_`); it never touches other roles. */
  prefix?: string;
}

const quote = (id: string) => `"${id.replace(/"/g, '""')}"`;

/**
 * The SCRAM-SHA-256 verifier PostgreSQL stores for a password (RFC 5802/7677, as `psql \password`
 * computes it). Sending the verifier instead of the password keeps the cleartext out of the server's
 * statement logs and `pg_stat_activity`.
 */
export function scramVerifier(password: string, iterations = 4096): string {
  const salt = randomBytes(16);
  const salted = pbkdf2Sync(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

// #region errors
/** Driver errors that carry no code but mean the connection, not the statement, failed. */
const CONNECTION_LOST = /^Connection terminated|timeout exceeded when trying to connect|not queryable/;

/**
 * Maps a driver error to a GrantlineError. Retryable: SQLSTATE class 08 (connection), 57P
 * (operator intervention, e.g. a restart), 53 (resources, e.g. too many connections) and 40
 * (rollback), socket errors, and the driver's own "connection terminated" errors. Not retryable:
 * every other SQL error (permission denied, syntax, undefined role): a retry cannot fix them.
 */
export function toExecutorError(action: string, err: unknown): GrantlineError {
  const e = err as { code?: string; message?: string };
  const sqlstate = e.code ?? '';
  const retryable =
    /^(08|57P|53|40)/.test(sqlstate) ||
    ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN'].includes(
      sqlstate,
    ) ||
    (!sqlstate && CONNECTION_LOST.test(e.message ?? ''));
  return new GrantlineError('ERR_EXECUTOR', `postgres-role: ${action} failed (${sqlstate || 'error'})`, {
    retryable,
    details: { sqlstate },
    cause: err,
  });
}
// #endregion

/** Creates the executor. */
export function createPostgresRoleExecutor(
  options: PostgresRoleExecutorOptions,
): Executor<PostgresRoleParams> {
  const prefix = options.prefix ?? 'gl_';
  const roleName = (caseId: string, targetId: string) => {
    if (!caseId || !targetId)
      throw new GrantlineError('ERR_EXECUTOR', 'postgres-role: case and target ids are required', {
        retryable: false,
      });
    return `${prefix}${createHash('sha256').update(`${caseId}\u0000${targetId}`).digest('hex').slice(0, 24)}`;
  };
  const exists = async (role: string) =>
    (await options.admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role])).rowCount === 1;

  const loginProbe = async (role: string) => {
    // A login with a password nobody holds: refused either way, but the reason tells whether the
    // role still exists ("does not exist") or is merely protected by its password.
    const client = new pg.Client({
      ...options.connection,
      user: role,
      password: randomBytes(16).toString('hex'),
      connectionTimeoutMillis: 5_000,
    });
    try {
      await client.connect();
      return { refused: false, reason: 'login accepted' };
    } catch (err) {
      const e = err as { code?: string; message?: string };
      return {
        refused: true,
        reason:
          e.code === '28000' && /does not exist/.test(e.message ?? '')
            ? 'role does not exist'
            : `refused (${e.code ?? 'error'})`,
      };
    } finally {
      await client.end().catch(() => {});
    }
  };

  const revokeRole = async (ctx: RevokeContext<PostgresRoleParams>) => {
    const role = roleName(ctx.grant.id, ctx.target.id);
    const client = await options.admin.connect().catch((err) => {
      throw toExecutorError('connect', err);
    });
    try {
      if (!(await exists(role))) return { alreadyGone: true, detail: { role } };
      // Stop new logins first, then end live sessions, then remove the role and what it owns.
      await client.query(`ALTER ROLE ${quote(role)} NOLOGIN`);
      // A CREATEROLE admin that is not a superuser may only terminate the sessions of, and
      // reassign or drop the objects of, roles it is a member of; superusers are unaffected.
      await client.query(`GRANT ${quote(role)} TO CURRENT_USER`);
      const killed = await client.query(
        'SELECT count(*)::int AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1) t',
        [role],
      );
      await client.query('BEGIN');
      await client.query(`REVOKE ${quote(ctx.target.params.group)} FROM ${quote(role)}`);
      await client.query(`REASSIGN OWNED BY ${quote(role)} TO ${quote(ctx.target.params.group)}`);
      await client.query(`DROP OWNED BY ${quote(role)}`);
      await client.query(`DROP ROLE ${quote(role)}`);
      await client.query('COMMIT');
      return { alreadyGone: false, detail: { role, sessionsTerminated: killed.rows[0].n as number } };
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      if ((err as { code?: string }).code === '42704') return { alreadyGone: true, detail: { role } }; // dropped meanwhile
      throw toExecutorError('revoke', err);
    } finally {
      client.release();
    }
  };

  return {
    system: options.system ?? 'postgres',
    paramsSchema: postgresRoleParams,

    async issue(ctx) {
      const role = roleName(ctx.grant.id, ctx.target.id);
      const password = randomBytes(24).toString('base64url');
      // Grantline sets the window's end before it calls issue; without one there is no VALID UNTIL.
      const windowEnd = Date.parse(ctx.grant.window.expiresAt ?? '');
      if (Number.isNaN(windowEnd))
        throw new GrantlineError('ERR_VALIDATION', 'postgres-role: the case has no window end (expiresAt)', {
          retryable: false,
          details: {
            where: 'postgres-role',
            issues: [
              {
                path: ['grant', 'window', 'expiresAt'],
                code: 'invalid_type',
                message: 'an ISO-8601 time is required to issue',
              },
            ],
          },
        });
      const until = new Date(
        Math.min(windowEnd, ctx.now.getTime() + ctx.grant.window.durationSeconds * 1000),
      );
      const client = await options.admin.connect().catch((err) => {
        throw toExecutorError('connect', err);
      });
      try {
        await client.query('BEGIN');
        // Idempotent per case + target: a second issue replaces the password, so the first stops working.
        const verb = (await exists(role)) ? 'ALTER' : 'CREATE';
        // Utility statements take no bind parameters; the literal is a SCRAM verifier (base64 and
        // `$:` only), so the cleartext password never reaches the server.
        await client.query(
          `${verb} ROLE ${quote(role)} WITH LOGIN INHERIT CONNECTION LIMIT ${ctx.target.params.connectionLimit} PASSWORD '${scramVerifier(password)}' VALID UNTIL '${until.toISOString()}'`,
        );
        await client.query(`GRANT ${quote(ctx.target.params.group)} TO ${quote(role)}`);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw toExecutorError('issue', err);
      } finally {
        client.release();
      }
      return { ref: { role, group: ctx.target.params.group }, expiresAt: until, secret: { password } };
    },

    revoke: revokeRole,

    async verify(ctx) {
      const role = roleName(ctx.grant.id, ctx.target.id);
      let inCatalog: boolean;
      try {
        inCatalog = await exists(role);
      } catch (err) {
        throw toExecutorError('verify', err);
      }
      const probe = await loginProbe(role);
      const observation = { role, inCatalog, login: probe.reason, at: new Date().toISOString() };
      return !inCatalog && probe.refused
        ? { status: 'absent', method: 'pg_roles lookup + login probe', observation }
        : { status: 'present', method: 'pg_roles lookup + login probe', observation };
    },
  };
}
