import { describeExecutorConformance } from '@grantline/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { createPostgresRoleExecutor } from '../src/index.js';
import { PG_URL, connectionOf, pgAvailable } from './helpers.js';

const available = await pgAvailable();
// The test's own superuser connection sets the stage; the executor gets only what the README asks
// for: a login role with CREATEROLE and membership of the group it grants.
const root = new pg.Pool({ connectionString: PG_URL, max: 2 });
const GROUP = 'gl_example_readers';
const ADMIN = `glx_kit_admin_${process.pid}`;

beforeAll(async () => {
  if (!available) return;
  await root.query(
    `DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${GROUP}') THEN CREATE ROLE ${GROUP} NOLOGIN; END IF; END $$`,
  );
  await root.query(`DROP ROLE IF EXISTS ${ADMIN}`);
  await root.query(`CREATE ROLE ${ADMIN} LOGIN CREATEROLE IN ROLE ${GROUP}`);
});
afterAll(async () => {
  if (available) await root.query(`DROP ROLE IF EXISTS ${ADMIN}`);
  await root.end();
});

describe.skipIf(!available)('postgres-role executor on a real PostgreSQL', () => {
  describeExecutorConformance(
    { describe, it },
    {
      name: 'postgres-role',
      async create() {
        const admin = new pg.Pool({ ...connectionOf(PG_URL), user: ADMIN, max: 2 });
        admin.on('error', () => {}); // idle clients whose session simulateFailure terminated
        const executor = createPostgresRoleExecutor({
          admin,
          connection: connectionOf(PG_URL),
          prefix: 'gl_kit_',
        });
        return {
          executor,
          cleanup: () => admin.end(),
          // Real failures of the real server. Transient: the admin's sessions are terminated and it
          // may open no new ones ("too many connections", SQLSTATE 53300). Permanent: the admin
          // loses CREATEROLE ("permission denied", 42501), as after a bad grant change.
          async simulateFailure(kind) {
            if (kind === 'transient') {
              await root.query(`ALTER ROLE ${ADMIN} CONNECTION LIMIT 0`);
              await root.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [
                ADMIN,
              ]);
              return async () => {
                await root.query(`ALTER ROLE ${ADMIN} CONNECTION LIMIT -1`);
              };
            }
            await root.query(`ALTER ROLE ${ADMIN} NOCREATEROLE`);
            return async () => {
              await root.query(`ALTER ROLE ${ADMIN} CREATEROLE`);
            };
          },
          target: { id: 'db', system: 'postgres', resource: 'postgres://test', params: { group: GROUP } },
          // A login role with the executor's own prefix and group, made by someone else: no
          // revoke of any case may drop it, not even crash recovery searching by name.
          async foreign() {
            const role = `gl_kit_standing_${process.pid}`;
            await root.query(`DROP ROLE IF EXISTS ${role}`);
            await root.query(`CREATE ROLE ${role} LOGIN IN ROLE ${GROUP}`);
            return {
              async exists() {
                const r = await root.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
                return r.rowCount === 1;
              },
              async remove() {
                await root.query(`DROP ROLE IF EXISTS ${role}`);
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
