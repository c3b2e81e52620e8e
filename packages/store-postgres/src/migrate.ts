import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { ErrorCodes, GRANT_STATES, GrantlineError } from '@grantline/core';
import { toStoreError } from './errors.js';
import { type ConnectionMode, type Queryable, createRunner, looksLikePool, runScript } from './queryable.js';

/** Default schema of the Grantline tables. */
export const DEFAULT_SCHEMA = 'grantline';

/** Advisory lock class for migrations (the other key is the schema's hash); "GL" in ASCII. */
const MIGRATE_LOCK_CLASS = 0x474c;

/**
 * At most 53 characters, not PostgreSQL's 63: the wake-up channel is `grantline:<schema>` (10 bytes
 * of prefix), and a channel is an identifier too. A longer name made `pg_notify` fail with "channel
 * name too long" on every write that made a case due soon, and `LISTEN` silently truncated it.
 */
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,52}$/;

/**
 * Checks a schema name. Only lower-case identifiers of at most 53 characters are accepted: the name
 * is spliced into DDL and queries (identifiers cannot be bound parameters), so anything else is
 * refused outright, and it must leave room for the `grantline:` prefix of the NOTIFY channel.
 * @throws GrantlineError `ERR_VALIDATION`.
 */
export function checkSchemaName(schema: string, where: string): string {
  if (typeof schema !== 'string' || !SCHEMA_NAME.test(schema)) {
    throw new GrantlineError(
      ErrorCodes.VALIDATION,
      `${where}: schema must match ${SCHEMA_NAME} (got ${JSON.stringify(schema)})`,
      {
        details: { where, path: ['schema'] },
      },
    );
  }
  return schema;
}

/** A shipped migration. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

const MIGRATIONS_DIR = new URL('../migrations/', import.meta.url);

/** The migrations shipped in the package, in version order (files `NNN_name.sql` in `migrations/`). */
export async function loadMigrations(): Promise<Migration[]> {
  const files = (await readdir(MIGRATIONS_DIR)).filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f)).sort();
  return Promise.all(
    files.map(async (f) => {
      const sql = await readFile(new URL(f, MIGRATIONS_DIR), 'utf8');
      return {
        version: Number(f.slice(0, 3)),
        name: f.slice(4, -4),
        sql,
        checksum: createHash('sha256').update(sql).digest('hex'),
      };
    }),
  );
}

/**
 * The CHECK constraint on `grants.state`, generated from the core transition table's states. Why
 * generated: a state added to core must not be rejected by the database, and a state the database
 * admits but core does not know must not exist.
 */
export function stateCheckSql(states: readonly string[] = GRANT_STATES): string {
  return `CHECK (state IN (${states.map((s) => `'${s.replace(/'/g, "''")}'`).join(', ')}))`;
}

/** The states named by a CHECK written by {@link stateCheckSql}. */
function statesOf(check: string): string[] {
  return [...check.matchAll(/'((?:[^']|'')*)'/g)].map((m) => m[1]!.replace(/''/g, "'"));
}

/** Options for {@link migrate}. */
export interface MigrateOptions {
  /** Schema to create and migrate (default `grantline`). */
  schema?: string;
  /** Overrides connection-mode detection; see {@link ConnectionMode}. `transaction` is refused. */
  mode?: Exclude<ConnectionMode, 'transaction'>;
}

/** What {@link migrate} did. */
export interface MigrateResult {
  schema: string;
  /** Versions applied by this call (empty when the schema was up to date). */
  applied: number[];
  /** True when the state CHECK was written or widened because core knows states the stored one lacks (it never narrows). */
  statesUpdated: boolean;
}

/**
 * Creates or upgrades the Grantline schema. Idempotent, and safe when several instances start at
 * once: everything runs in one transaction under a transaction-level advisory lock keyed by the
 * schema, so the second instance waits and then finds nothing to do. A shipped migration whose text
 * changed after it was applied is refused rather than silently skipped.
 * @throws GrantlineError `ERR_VALIDATION` (bad schema name), `ERR_STORE` (SQL failure; retryable
 * when the server was unavailable; nothing is half-applied).
 */
export async function migrate(db: Queryable, options: MigrateOptions = {}): Promise<MigrateResult> {
  const schema = checkSchemaName(options.schema ?? DEFAULT_SCHEMA, 'migrate');
  const runner = createRunner(db, options.mode ?? (looksLikePool(db) ? 'pool' : 'client'));
  const migrations = await loadMigrations();
  const s = `"${schema}"`;
  try {
    return await runner.transaction(async (q, raw) => {
      await q('SELECT pg_advisory_xact_lock($1::int, hashtext($2))', [MIGRATE_LOCK_CLASS, schema]);
      await q(`CREATE SCHEMA IF NOT EXISTS ${s}`);
      await q(
        `CREATE TABLE IF NOT EXISTS ${s}.grantline_migrations (version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      await q(`CREATE TABLE IF NOT EXISTS ${s}.grantline_meta (key text PRIMARY KEY, value text NOT NULL)`);
      const done = new Map(
        (await q(`SELECT version, checksum FROM ${s}.grantline_migrations`)).map((r) => [
          Number(r.version),
          String(r.checksum),
        ]),
      );
      const applied: number[] = [];
      for (const m of migrations) {
        const seen = done.get(m.version);
        if (seen !== undefined) {
          if (seen !== m.checksum) {
            throw new GrantlineError(
              ErrorCodes.STORE,
              `migrate: migration ${m.version}_${m.name} was changed after it was applied to ${schema}`,
              {
                details: { where: 'migrate', schema, version: m.version },
              },
            );
          }
          continue;
        }
        await runScript(raw, m.sql.replaceAll('{{schema}}', s));
        await q(`INSERT INTO ${s}.grantline_migrations (version, name, checksum) VALUES ($1, $2, $3)`, [
          m.version,
          m.name,
          m.checksum,
        ]);
        applied.push(m.version);
      }
      // The CHECK only ever widens: during a rolling upgrade an instance running an older core
      // (knowing fewer states) must not narrow what a newer instance already writes.
      const stored = (await q(`SELECT value FROM ${s}.grantline_meta WHERE key = 'state_check'`))[0]?.value;
      const known = stored === undefined ? [] : statesOf(String(stored));
      const missing = GRANT_STATES.filter((st) => !known.includes(st));
      const wanted = stored === undefined ? stateCheckSql() : stateCheckSql([...known, ...missing]);
      let statesUpdated = false;
      if (stored === undefined || missing.length > 0) {
        await q(
          `ALTER TABLE ${s}.grants DROP CONSTRAINT IF EXISTS grants_state_check, ADD CONSTRAINT grants_state_check ${wanted}`,
        );
        await q(
          `INSERT INTO ${s}.grantline_meta (key, value) VALUES ('state_check', $1) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`,
          [wanted],
        );
        statesUpdated = true;
      }
      return { schema, applied, statesUpdated };
    });
  } catch (err) {
    throw toStoreError(err, 'migrate', { schema });
  }
}
