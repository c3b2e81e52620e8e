import type { TokenRevocationList } from '@grantline/core';
import type pg from 'pg';

/**
 * The token executor's revocation list in PostgreSQL, so that a token revoked by one instance (or by
 * its sweeper) is rejected by every instance. Only token ids are stored, never tokens.
 */
export async function createPgRevocationList(db: pg.Pool, schema: string): Promise<TokenRevocationList> {
  const t = `"${schema}".token_ids`;
  // Several instances start at once, and concurrent CREATE TABLE IF NOT EXISTS can still collide in
  // PostgreSQL's catalogue: serialise it under a transaction-level advisory lock, as migrate() does.
  const client = await db.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`${schema}.token_ids`]);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${t} (jti text PRIMARY KEY, until timestamptz NOT NULL, revoked_at timestamptz)`,
    );
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
  return {
    async issued(jti, until) {
      await db.query(
        `INSERT INTO ${t} (jti, until) VALUES ($1, $2) ON CONFLICT (jti) DO UPDATE SET until = GREATEST(${t}.until, EXCLUDED.until)`,
        [jti, until],
      );
    },
    async add(jti, until) {
      // Returns true only when this call revoked a live token id (it existed and was not revoked).
      const r = await db.query(
        `WITH prev AS (SELECT revoked_at FROM ${t} WHERE jti = $1)
         INSERT INTO ${t} (jti, until, revoked_at) VALUES ($1, $2, now())
         ON CONFLICT (jti) DO UPDATE SET revoked_at = COALESCE(${t}.revoked_at, now())
         RETURNING (SELECT revoked_at FROM prev) AS before, (SELECT count(*) FROM prev) AS existed`,
        [jti, until],
      );
      return Number(r.rows[0].existed) === 1 && r.rows[0].before === null;
    },
    async has(jti) {
      const r = await db.query(`SELECT 1 FROM ${t} WHERE jti = $1 AND revoked_at IS NOT NULL`, [jti]);
      return (r.rowCount ?? 0) > 0;
    },
  };
}
