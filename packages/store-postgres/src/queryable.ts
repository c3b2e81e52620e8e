import { ErrorCodes, GrantlineError } from '@grantline/core';
import { toStoreError } from './errors.js';

/** A result row as returned by the driver. */
export type Row = Record<string, unknown>;

/**
 * Anything that runs one SQL statement with positional parameters: a `pg.Pool`, a `pg.Client` or
 * `PoolClient`, PGlite. This structural type is all the store needs from a driver.
 */
export interface Queryable {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
}

/** A connection checked out of a pool; `release(err)` with an error destroys it. */
export interface PoolClientLike extends Queryable {
  release(err?: Error | boolean): void;
}

/** A pool: runs single statements itself and lends a dedicated connection for transactions. */
export interface PoolLike extends Queryable {
  connect(): Promise<PoolClientLike>;
}

/**
 * How the store uses `db`:
 * - `pool`: `db.query` for single statements, `db.connect()` for a dedicated client whenever a
 *   transaction is needed (BEGIN/COMMIT on that client, then `release()`). Default for `pg.Pool`.
 * - `client`: one connection (a `pg.Client`, a checked-out `PoolClient`, PGlite). The store
 *   serialises its calls on it, because statements of concurrent callers would otherwise land
 *   inside each other's transactions. Default for anything that is not a pool.
 * - `transaction`: a connection inside a transaction the host opened and will COMMIT or ROLLBACK.
 *   The store never issues BEGIN/COMMIT; every call runs inside a SAVEPOINT, so its writes commit or
 *   roll back with the host's own work, and a call that fails is rolled back alone without aborting
 *   the host's transaction.
 */
export type ConnectionMode = 'pool' | 'client' | 'transaction';

/** Runs statements according to the connection mode. Internal. */
export interface Runner {
  readonly mode: ConnectionMode;
  /**
   * One statement: atomic by itself (autocommit), or part of the host's transaction. With `name`
   * and a node-postgres connection it runs as a named prepared statement (parsed and planned once
   * per connection).
   */
  query(text: string, values?: unknown[], name?: string): Promise<Row[]>;
  /** Several statements on one connection, all or nothing. */
  transaction<T>(
    fn: (q: (text: string, values?: unknown[]) => Promise<Row[]>, raw: Queryable) => Promise<T>,
  ): Promise<T>;
}

/** True for a `pg.Pool` (or a pool with the same shape). */
export function looksLikePool(db: Queryable): db is PoolLike {
  const d = db as unknown as Record<string, unknown>;
  return (
    typeof d.connect === 'function' && typeof d.release !== 'function' && typeof d.totalCount === 'number'
  );
}

const rowsOf = (r: { rows: unknown[] }): Row[] => r.rows as Row[];

/**
 * True for node-postgres pools and clients, which accept `{ name, text, values }` and keep the
 * statement prepared on each connection. PGlite and other drivers get plain text.
 */
export function acceptsNamedStatements(db: Queryable): boolean {
  const d = db as unknown as Record<string, unknown>;
  return looksLikePool(db) || (typeof d.connectionParameters === 'object' && d.connectionParameters !== null);
}

type NamedQuery = (config: {
  name: string;
  text: string;
  values?: unknown[];
}) => Promise<{ rows: unknown[] }>;

/** A FIFO mutex: one connection can run one logical operation at a time. */
function createMutex() {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(fn: () => Promise<T>): Promise<T> => {
    const run = tail.then(fn, fn);
    tail = run.catch(() => undefined);
    return run;
  };
}

/** Builds the runner for `db` in `mode`. */
export function createRunner(
  db: Queryable,
  mode: ConnectionMode,
  prepare = acceptsNamedStatements(db),
): Runner {
  if (!db || typeof db.query !== 'function') {
    throw new GrantlineError(
      ErrorCodes.VALIDATION,
      'createPostgresStore: db must have a query(text, values) method',
      {
        details: { where: 'createPostgresStore', path: ['db'] },
      },
    );
  }
  if (mode === 'pool') {
    if (typeof (db as Partial<PoolLike>).connect !== 'function') {
      throw new GrantlineError(ErrorCodes.VALIDATION, 'createPostgresStore: mode "pool" needs db.connect()', {
        details: { where: 'createPostgresStore', path: ['mode'] },
      });
    }
    const pool = db as PoolLike;
    return {
      mode,
      query: async (text, values, name) =>
        rowsOf(
          name && prepare
            ? await (pool.query as unknown as NamedQuery).call(pool, { name, text, values })
            : await pool.query(text, values),
        ),
      async transaction(fn) {
        const client = await pool.connect();
        let broken: unknown;
        try {
          await client.query('BEGIN');
          const out = await fn(async (t, v) => rowsOf(await client.query(t, v)), client);
          await client.query('COMMIT');
          return out;
        } catch (err) {
          broken = err;
          await client.query('ROLLBACK').catch(() => undefined);
          throw err;
        } finally {
          // A client whose connection failed must not go back to the pool.
          client.release(
            broken !== undefined && toStoreError(broken, 'transaction').retryable
              ? (broken as Error)
              : undefined,
          );
        }
      },
    };
  }
  const lock = createMutex();
  const q = async (text: string, values?: unknown[], name?: string) =>
    rowsOf(
      name && prepare
        ? await (db.query as unknown as NamedQuery).call(db, { name, text, values })
        : await db.query(text, values),
    );
  if (mode === 'client') {
    return {
      mode,
      query: (text, values, name) => lock(() => q(text, values, name)),
      transaction: (fn) =>
        lock(async () => {
          await q('BEGIN');
          try {
            const out = await fn(q, db);
            await q('COMMIT');
            return out;
          } catch (err) {
            await q('ROLLBACK').catch(() => undefined);
            throw err;
          }
        }),
    };
  }
  /**
   * `fn` inside a savepoint of the host's transaction: a failure (bad input, a lost race, a
   * deadlock) is rolled back alone and the host's transaction stays usable, instead of being
   * aborted whole. ROLLBACK TO keeps the savepoint, so it is released after it as well: failed
   * calls leave no subtransaction open for the host's later work (more than 64 in one transaction
   * slow every connection down).
   */
  const inSavepoint = <T>(fn: () => Promise<T>): Promise<T> =>
    lock(async () => {
      await q('SAVEPOINT grantline_op');
      try {
        const out = await fn();
        await q('RELEASE SAVEPOINT grantline_op');
        return out;
      } catch (err) {
        await q('ROLLBACK TO SAVEPOINT grantline_op')
          .then(() => q('RELEASE SAVEPOINT grantline_op'))
          .catch(() => undefined);
        throw err;
      }
    });
  return {
    mode,
    // Each statement in its own savepoint (two more round trips per statement, in this mode only).
    query: (text, values, name) => inSavepoint(() => q(text, values, name)),
    transaction: (fn) => inSavepoint(() => fn(q, db)),
  };
}

/** Runs a multi-statement script: PGlite's `exec`, or the simple protocol of node-postgres. */
export async function runScript(db: Queryable, sql: string): Promise<void> {
  const exec = (db as unknown as { exec?: (s: string) => Promise<unknown> }).exec;
  if (typeof exec === 'function') await exec.call(db, sql);
  else await db.query(sql);
}
