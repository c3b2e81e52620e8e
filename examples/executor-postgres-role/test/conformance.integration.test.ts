import { describeExecutorConformance } from '@grantline/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { createPostgresRoleExecutor } from '../src/index.js';
import { PG_URL, connectionOf, pgAvailable } from './helpers.js';

const available = await pgAvailable();
const admin = new pg.Pool({ connectionString: PG_URL, max: 4 });
const GROUP = 'gl_example_readers';

beforeAll(async () => {
  if (!available) return;
  await admin.query(
    `DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${GROUP}') THEN CREATE ROLE ${GROUP} NOLOGIN; END IF; END $$`,
  );
});
afterAll(async () => {
  await admin.end();
});

describe.skipIf(!available)('postgres-role executor on a real PostgreSQL', () => {
  describeExecutorConformance(
    { describe, it },
    {
      name: 'postgres-role',
      async create() {
        const executor = createPostgresRoleExecutor({
          admin,
          connection: connectionOf(PG_URL),
          prefix: 'gl_kit_',
        });
        return {
          executor,
          target: { id: 'db', system: 'postgres', resource: 'postgres://test', params: { group: GROUP } },
          // A login role with the executor's own prefix and group, made by someone else: no
          // revoke of any case may drop it, not even crash recovery searching by name.
          async foreign() {
            const role = `gl_kit_standing_${process.pid}`;
            await admin.query(`DROP ROLE IF EXISTS ${role}`);
            await admin.query(`CREATE ROLE ${role} LOGIN IN ROLE ${GROUP}`);
            return {
              async exists() {
                const r = await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
                return r.rowCount === 1;
              },
              async remove() {
                await admin.query(`DROP ROLE IF EXISTS ${role}`);
              },
            };
          },
          async usable(secret, issued) {
            const c = new pg.Client({
              ...connectionOf(PG_URL),
              user: issued.ref.role,
              password: secret.password,
              connectionTimeoutMillis: 3_000,
            });
            try {
              await c.connect();
              const r = await c.query('SELECT pg_has_role(current_user, $1, $2) AS member', [
                GROUP,
                'member',
              ]);
              return r.rows[0].member === true;
            } catch {
              return false;
            } finally {
              await c.end().catch(() => {});
            }
          },
        };
      },
    },
  );
});
