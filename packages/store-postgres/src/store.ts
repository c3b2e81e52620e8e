import {
  type AuditEvent,
  type CasOutcome,
  type CreateResult,
  ErrorCodes,
  type Grant,
  type GrantPage,
  type GrantStore,
  GrantlineError,
  type ListQueryParsed,
  type Logger,
  silentLogger,
} from '@grantline/core';
import { toStoreError } from './errors.js';
import { type ListenOption, createNotifier } from './listen.js';
import { DEFAULT_SCHEMA, checkSchemaName } from './migrate.js';
import {
  type ConnectionMode,
  type Queryable,
  type Row,
  acceptsNamedStatements,
  createRunner,
  looksLikePool,
} from './queryable.js';

/** Options for {@link createPostgresStore}. */
export interface PostgresStoreOptions {
  /** A `pg.Pool`, a `pg.Client` / `PoolClient`, a client inside the host's transaction, or PGlite. */
  db: Queryable;
  /** Schema holding the tables (default `grantline`); create it with `migrate(db, { schema })`. */
  schema?: string;
  /**
   * How `db` is used; detected when omitted (`pool` for a `pg.Pool`, else `client`). Pass
   * `transaction` for a client inside a transaction the host will commit. See {@link ConnectionMode}.
   */
  mode?: ConnectionMode;
  /**
   * Where to LISTEN for changes made by other processes, so their sweepers wake at once: a
   * connection string, or `{ connect }` returning a dedicated connected `pg.Client`. Without it,
   * `onChange` reports only this store's own writes.
   */
  listen?: ListenOption;
  /**
   * Run the hot statements as named prepared statements (default: true for node-postgres, which
   * supports it; PGlite always gets plain text). Turn off behind a transaction-pooling PgBouncer.
   */
  prepare?: boolean;
  /** Receives LISTEN connection faults (they are retried; nothing is thrown). */
  logger?: Logger;
}

/** The PostgreSQL store: a {@link GrantStore} plus what it is built on. */
export interface PostgresStore extends GrantStore {
  /** The schema in use. */
  readonly schema: string;
  /** The connection mode in use. */
  readonly mode: ConnectionMode;
  /** The exact claim statement `claimDue` runs, with its parameters, for EXPLAIN and review. */
  claimSql(): string;
}

/** Advisory lock class guarding `global_seq` order ("GM"); the other key is the schema's hash. */
const SEQ_LOCK_CLASS = 0x474d;

/** 32-bit FNV-1a of the schema name, as a signed int4 for pg_advisory_*(int, int). */
function schemaKey(schema: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < schema.length; i++) {
    h ^= schema.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h | 0;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function parseJson<T>(v: unknown): T {
  // pg and PGlite both decode jsonb; a custom type parser might hand back text instead.
  return (typeof v === 'string' ? JSON.parse(v) : v) as T;
}

/**
 * `JSON.stringify` that reports what it cannot serialise (a BigInt, a cycle) as bad input instead
 * of the TypeError it throws.
 * @throws GrantlineError `ERR_VALIDATION`.
 */
function jsonText(value: unknown, where: string, path: (string | number)[]): string {
  try {
    return JSON.stringify(value);
  } catch (err) {
    throw new GrantlineError(
      ErrorCodes.VALIDATION,
      `${where}: ${path.join('.')} is not JSON data (${(err as Error).message}); nothing was written`,
      { details: { where, path }, cause: err },
    );
  }
}

function badInput(where: string, message: string, path: (string | number)[]): GrantlineError {
  return new GrantlineError(ErrorCodes.VALIDATION, `${where}: ${message}`, { details: { where, path } });
}

function checkGrant(g: Grant, where: string): void {
  if (!isObject(g) || typeof g.id !== 'string' || g.id.length === 0)
    throw badInput(where, 'grant must have a string id', ['grant', 'id']);
  if (!Number.isInteger(g.version) || g.version < 1)
    throw badInput(where, 'grant version must be a positive integer', ['grant', 'version']);
  if (typeof g.state !== 'string') throw badInput(where, 'grant must have a state', ['grant', 'state']);
  if (!isObject(g.subject) || typeof g.subject.id !== 'string')
    throw badInput(where, 'grant must have a subject id', ['grant', 'subject']);
  if (!isObject(g.requester) || typeof g.requester.id !== 'string')
    throw badInput(where, 'grant must have a requester id', ['grant', 'requester']);
  if (typeof g.createdAt !== 'string' || typeof g.updatedAt !== 'string')
    throw badInput(where, 'grant needs createdAt and updatedAt', ['grant']);
}

function checkEvents(caseId: string, events: AuditEvent[], first: number | undefined, where: string): void {
  if (!Array.isArray(events)) throw badInput(where, 'events must be an array', ['events']);
  events.forEach((e, i) => {
    if (
      !isObject(e) ||
      e.caseId !== caseId ||
      !Number.isInteger(e.seq) ||
      typeof e.type !== 'string' ||
      typeof e.at !== 'string' ||
      Number.isNaN(Date.parse(e.at)) ||
      (first !== undefined && e.seq !== first + i)
    ) {
      throw new GrantlineError(
        ErrorCodes.STORE,
        `${where}: audit events out of sequence for case ${caseId}`,
        { details: { where, caseId, index: i } },
      );
    }
    if (i > 0 && e.seq !== events[i - 1]!.seq + 1) {
      throw new GrantlineError(
        ErrorCodes.STORE,
        `${where}: audit events out of sequence for case ${caseId}`,
        { details: { where, caseId, index: i } },
      );
    }
  });
}

/** The event as stored: everything but the store-assigned `globalSeq`. */
function eventJson(events: AuditEvent[], where: string): string {
  return jsonText(
    events.map(({ globalSeq: _drop, ...rest }) => rest),
    where,
    ['events'],
  );
}

/** The new version must follow the expected one (a caller's bug, not a race). */
function checkNextVersion(grant: Grant, expectedVersion: number, where: string): void {
  if (grant.version !== expectedVersion + 1)
    throw new GrantlineError(ErrorCodes.STORE, `${where}: new version must be ${expectedVersion + 1}`, {
      details: { caseId: grant.id },
    });
}

/**
 * Why a compare-and-set matched no row, from the case's row read afterwards in a fresh snapshot
 * (undefined: no such case): the version moved on, or the events do not follow the stored head.
 */
function notWritten(
  where: string,
  grant: Grant,
  expectedVersion: number,
  firstSeq: number | null,
  cur: Row | undefined,
): GrantlineError {
  if (!cur)
    return new GrantlineError(ErrorCodes.NOT_FOUND, `no case ${grant.id}`, { details: { caseId: grant.id } });
  if (Number(cur.version) !== expectedVersion)
    return new GrantlineError(
      ErrorCodes.CONFLICT,
      `case ${grant.id} is at version ${cur.version}, not ${expectedVersion}`,
      { retryable: true, details: { caseId: grant.id, expectedVersion, actualVersion: Number(cur.version) } },
    );
  return new GrantlineError(
    ErrorCodes.STORE,
    `${where}: audit events out of sequence for case ${grant.id}: got ${firstSeq}, expected ${Number(cur.audit_seq) + 1}`,
    { details: { caseId: grant.id } },
  );
}

function toEvent(row: Row): AuditEvent {
  return { ...parseJson<AuditEvent>(row.doc), globalSeq: Number(row.global_seq) };
}

/**
 * Creates the PostgreSQL {@link GrantStore}. The tables must exist: run `migrate(db, { schema })`
 * first (once per deploy or at every start; it is idempotent and concurrency-safe).
 *
 * How it meets the store contract:
 * - Every write is ONE SQL statement (data-modifying CTEs): the case row and its audit events
 *   commit together or not at all, with no BEGIN/COMMIT round trips.
 * - Compare-and-set is `UPDATE … WHERE id = $1 AND version = $2`; under READ COMMITTED a racing
 *   writer re-checks the version after the first commits, so exactly one wins.
 * - `global_seq` follows commit order: appenders hold a shared advisory lock from drawing the number
 *   until commit; `allEvents` takes that lock exclusively before reading, so it never sees a number
 *   while a smaller one is still uncommitted (appenders do not block each other). In mode
 *   `transaction` it takes the lock at session level and releases it before returning, so it is
 *   never held until the host commits; it then needs a READ COMMITTED host transaction.
 * - `claimDue` locks due rows with `FOR UPDATE SKIP LOCKED` in (due_at, id) order, walking the
 *   partial index `grants_due_idx` (finished cases are not in it), and leases them in the same
 *   statement.
 *
 * @throws GrantlineError `ERR_VALIDATION` for a bad schema name or db.
 */
export function createPostgresStore(options: PostgresStoreOptions): PostgresStore {
  if (!isObject(options)) throw badInput('createPostgresStore', 'options are required', []);
  const schema = checkSchemaName(options.schema ?? DEFAULT_SCHEMA, 'createPostgresStore');
  const mode: ConnectionMode = options.mode ?? (looksLikePool(options.db) ? 'pool' : 'client');
  const runner = createRunner(
    options.db,
    mode,
    options.prepare === false ? false : acceptsNamedStatements(options.db),
  );
  const logger = options.logger ?? silentLogger;
  const s = `"${schema}"`;
  const seqLock = `${SEQ_LOCK_CLASS}, ${schemaKey(schema)}`;
  const notifier = createNotifier(options.listen, `grantline:${schema}`, (err) =>
    logger.warn('grantline: LISTEN connection fault; reconnecting', {
      error: toStoreError(err, 'listen').toJSON(),
    }),
  );
  let closed = false;

  const guard = (where: string) => {
    if (closed)
      throw new GrantlineError(ErrorCodes.CLOSED, `${where}: postgres store is closed`, {
        details: { where },
      });
  };
  // Statement names carry the schema's hash: one connection may serve stores of several schemas.
  const named = (kind: string) => `grantline_${kind}_${(schemaKey(schema) >>> 0).toString(36)}`;
  const run = async (
    where: string,
    text: string,
    values: unknown[] = [],
    details: Record<string, unknown> = {},
    name?: string,
  ) => {
    guard(where);
    try {
      return await runner.query(text, values, name);
    } catch (err) {
      throw toStoreError(err, where, details);
    }
  };
  // In a host transaction nothing is committed yet: other processes learn of it by NOTIFY at COMMIT.
  const changed = (id: string) => {
    if (mode !== 'transaction') notifier.local(id);
  };

  const appendSql = (source: string, eventsParam: number) => `
    l AS (SELECT pg_advisory_xact_lock_shared(${seqLock}) FROM ${source}),
    ins AS (
      INSERT INTO ${s}.audit_events (case_id, seq, type, at, doc)
      SELECT e.value->>'caseId', (e.value->>'seq')::int, e.value->>'type', (e.value->>'at')::timestamptz, e.value
      FROM l, jsonb_array_elements($${eventsParam}::jsonb) WITH ORDINALITY AS e(value, n)
      ORDER BY e.n
      RETURNING 1
    )`;

  const createSql = `
    WITH g AS (
      INSERT INTO ${s}.grants (id, version, state, due_at, idempotency_key, subject_id, requester_id, created_at, updated_at, audit_seq, doc)
      VALUES ($1, $2, $3, $4::timestamptz, $5, $6, $7, $8::timestamptz, $9::timestamptz, $10, $11::jsonb)
      ON CONFLICT DO NOTHING
      RETURNING id
    ),
    ${appendSql('g', 12)}
    SELECT (SELECT count(*) FROM g)::int AS inserted, (SELECT count(*) FROM ins)::int AS appended`;

  const casSql = `
    WITH u AS (
      UPDATE ${s}.grants SET version = $2, state = $3, due_at = $4::timestamptz, idempotency_key = $5, subject_id = $6,
        requester_id = $7, created_at = $8::timestamptz, updated_at = $9::timestamptz, audit_seq = coalesce($10::int, audit_seq),
        doc = $11::jsonb, lease_owner = NULL, lease_until = NULL
      WHERE id = $1 AND version = $13 AND ($14::int IS NULL OR audit_seq = $14::int)
      RETURNING id
    ),
    ${appendSql('u', 12)}
    SELECT (SELECT count(*) FROM u)::int AS updated, (SELECT count(*) FROM ins)::int AS appended`;

  // Many compare-and-sets in one statement: the items arrive as one jsonb array of records; each
  // row's UPDATE checks its own version and audit head, and only updated cases get their events.
  const casManySql = `
    WITH i AS (
      SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(
        ord int, id text, version int, state text, due_at timestamptz, idempotency_key text, subject_id text,
        requester_id text, created_at timestamptz, updated_at timestamptz, audit_seq int, doc jsonb,
        expected int, prev_seq int, events jsonb)
    ),
    -- Row locks in id order, whatever plan the UPDATE gets: two overlapping batches cannot deadlock.
    lk AS (SELECT g.id FROM ${s}.grants AS g WHERE g.id IN (SELECT id FROM i) ORDER BY g.id FOR UPDATE),
    u AS (
      UPDATE ${s}.grants AS g SET version = i.version, state = i.state, due_at = i.due_at,
        idempotency_key = i.idempotency_key, subject_id = i.subject_id, requester_id = i.requester_id,
        created_at = i.created_at, updated_at = i.updated_at, audit_seq = coalesce(i.audit_seq, g.audit_seq),
        doc = i.doc, lease_owner = NULL, lease_until = NULL
      FROM i
      WHERE g.id = i.id AND g.id IN (SELECT id FROM lk) AND g.version = i.expected
        AND (i.prev_seq IS NULL OR g.audit_seq = i.prev_seq)
      RETURNING g.id
    ),
    l AS (SELECT pg_advisory_xact_lock_shared(${seqLock})),
    ins AS (
      INSERT INTO ${s}.audit_events (case_id, seq, type, at, doc)
      SELECT e.value->>'caseId', (e.value->>'seq')::int, e.value->>'type', (e.value->>'at')::timestamptz, e.value
      FROM l, i JOIN u ON u.id = i.id, jsonb_array_elements(i.events) WITH ORDINALITY AS e(value, n)
      ORDER BY i.ord, e.n
      RETURNING 1
    )
    SELECT u.id FROM u`;

  const claimSql = `
    WITH c AS (
      SELECT id FROM ${s}.grants
      WHERE due_at IS NOT NULL AND due_at <= $1::timestamptz AND (lease_until IS NULL OR lease_until <= $1::timestamptz)
      ORDER BY due_at, id
      LIMIT $2
      FOR UPDATE SKIP LOCKED
    )
    UPDATE ${s}.grants SET lease_owner = $3, lease_until = $4::timestamptz
    WHERE id = ANY (ARRAY(SELECT id FROM c))
    RETURNING doc`;

  const grantValues = (g: Grant, lastSeq: number | null, where: string) => [
    g.id,
    g.version,
    g.state,
    g.dueAt ?? null,
    g.idempotencyKey ?? null,
    g.subject.id,
    g.requester.id,
    g.createdAt,
    g.updatedAt,
    lastSeq,
    jsonText(g, where, ['grant']),
  ];

  return {
    capabilities: { crossProcessLeases: true, globalSequence: true },
    schema,
    mode,
    claimSql: () => claimSql,

    async create(grant, events): Promise<CreateResult> {
      guard('create');
      checkGrant(grant, 'create');
      checkEvents(grant.id, events, 1, 'create');
      const lastSeq = events.length > 0 ? events[events.length - 1]!.seq : 0;
      const [row] = await run(
        'create',
        createSql,
        [...grantValues(grant, lastSeq, 'create'), eventJson(events, 'create')],
        { caseId: grant.id },
        named('create'),
      );
      if (row?.inserted === 1) {
        changed(grant.id);
        return { grant: structuredClone(grant), created: true };
      }
      // ON CONFLICT DO NOTHING waited for any racing insert to commit; read what won in a new statement.
      if (grant.idempotencyKey !== undefined) {
        const existing = await this.findByIdempotencyKey(grant.idempotencyKey);
        if (existing) return { grant: existing, created: false };
      }
      throw new GrantlineError(ErrorCodes.CONFLICT, `case ${grant.id} exists already`, {
        details: { caseId: grant.id },
      });
    },

    async get(id) {
      const [row] = await run(
        'get',
        `SELECT doc FROM ${s}.grants WHERE id = $1`,
        [id],
        { caseId: id },
        named('get'),
      );
      return row ? parseJson<Grant>(row.doc) : null;
    },

    async compareAndSet(grant, expectedVersion, events) {
      guard('compareAndSet');
      checkGrant(grant, 'compareAndSet');
      if (!Number.isInteger(expectedVersion))
        throw badInput('compareAndSet', 'expectedVersion must be an integer', ['expectedVersion']);
      checkNextVersion(grant, expectedVersion, 'compareAndSet');
      checkEvents(grant.id, events, undefined, 'compareAndSet');
      const first = events[0]?.seq ?? null;
      const lastSeq = events.length > 0 ? events[events.length - 1]!.seq : null;
      const [row] = await run(
        'compareAndSet',
        casSql,
        [
          ...grantValues(grant, lastSeq, 'compareAndSet'),
          eventJson(events, 'compareAndSet'),
          expectedVersion,
          first === null ? null : first - 1,
        ],
        { caseId: grant.id },
        named('cas'),
      );
      if (row?.updated === 1) {
        changed(grant.id);
        return structuredClone(grant);
      }
      // Not written. Find out why with a fresh snapshot (the statement's own may predate a racing commit).
      const [cur] = await run(
        'compareAndSet',
        `SELECT version, audit_seq FROM ${s}.grants WHERE id = $1`,
        [grant.id],
        { caseId: grant.id },
      );
      throw notWritten('compareAndSet', grant, expectedVersion, first, cur);
    },

    async compareAndSetMany(items) {
      guard('compareAndSetMany');
      if (!Array.isArray(items)) throw badInput('compareAndSetMany', 'items must be an array', ['items']);
      const seen = new Set<string>();
      items.forEach((item, i) => {
        if (!isObject(item)) throw badInput('compareAndSetMany', 'each item must be an object', ['items', i]);
        checkGrant(item.grant, 'compareAndSetMany');
        if (!Number.isInteger(item.expectedVersion))
          throw badInput('compareAndSetMany', 'expectedVersion must be an integer', [
            'items',
            i,
            'expectedVersion',
          ]);
        if (!Array.isArray(item.events))
          throw badInput('compareAndSetMany', 'events must be an array', ['items', i, 'events']);
        if (seen.has(item.grant.id))
          throw badInput('compareAndSetMany', `case ${item.grant.id} appears twice`, [
            'items',
            i,
            'grant',
            'id',
          ]);
        seen.add(item.grant.id);
      });
      const outcomes: (CasOutcome | undefined)[] = new Array(items.length);
      const rows: Record<string, unknown>[] = [];
      // Each row serialised on its own: one item that is not JSON data fails alone, not the batch.
      const rowsJson: string[] = [];
      items.forEach((item, ord) => {
        const { grant, expectedVersion, events } = item;
        let row: Record<string, unknown>;
        try {
          checkNextVersion(grant, expectedVersion, 'compareAndSetMany');
          checkEvents(grant.id, events, undefined, 'compareAndSetMany');
          const first = events[0]?.seq;
          row = {
            ord,
            id: grant.id,
            version: grant.version,
            state: grant.state,
            due_at: grant.dueAt ?? null,
            idempotency_key: grant.idempotencyKey ?? null,
            subject_id: grant.subject.id,
            requester_id: grant.requester.id,
            created_at: grant.createdAt,
            updated_at: grant.updatedAt,
            audit_seq: events.length > 0 ? events[events.length - 1]!.seq : null,
            doc: grant,
            expected: expectedVersion,
            prev_seq: first === undefined ? null : first - 1,
            events: events.map(({ globalSeq: _drop, ...rest }) => rest),
          };
          rowsJson.push(jsonText(row, 'compareAndSetMany', ['items', ord]));
        } catch (err) {
          outcomes[ord] = { ok: false, error: err as GrantlineError };
          return;
        }
        rows.push(row);
      });
      if (rows.length > 0) {
        const updated = await run('compareAndSetMany', casManySql, [`[${rowsJson.join(',')}]`], {
          cases: rows.length,
        });
        const done = new Set(updated.map((r) => String(r.id)));
        const missed: string[] = [];
        for (const r of rows) {
          const ord = r.ord as number;
          const grant = items[ord]!.grant;
          if (done.has(grant.id)) {
            changed(grant.id);
            // The caller's object: what is stored is in the database, so no copy is needed for isolation.
            outcomes[ord] = { ok: true, grant };
          } else missed.push(grant.id);
        }
        if (missed.length > 0) {
          // Why each was not written, from a fresh snapshot (as compareAndSet does).
          const cur = await run(
            'compareAndSetMany',
            `SELECT id, version, audit_seq FROM ${s}.grants WHERE id = ANY($1::text[])`,
            [missed],
          );
          const byId = new Map(cur.map((c) => [String(c.id), c]));
          for (const r of rows) {
            const ord = r.ord as number;
            if (outcomes[ord]) continue;
            const { grant, expectedVersion } = items[ord]!;
            const first = r.prev_seq === null ? null : (r.prev_seq as number) + 1;
            outcomes[ord] = {
              ok: false,
              error: notWritten('compareAndSetMany', grant, expectedVersion, first, byId.get(grant.id)),
            };
          }
        }
      }
      return outcomes as CasOutcome[];
    },

    async list(query: ListQueryParsed): Promise<GrantPage> {
      const where: string[] = [];
      const values: unknown[] = [];
      const param = (v: unknown) => {
        values.push(v);
        return `$${values.length}`;
      };
      if (query.states)
        where.push(query.states.length === 0 ? 'false' : `state IN (${query.states.map(param).join(', ')})`);
      if (query.subjectId !== undefined) where.push(`subject_id = ${param(query.subjectId)}`);
      if (query.requesterId !== undefined) where.push(`requester_id = ${param(query.requesterId)}`);
      if (query.updatedAfter !== undefined)
        where.push(`updated_at > ${param(query.updatedAfter)}::timestamptz`);
      if (query.cursor !== undefined) {
        let c: unknown;
        try {
          c = JSON.parse(Buffer.from(query.cursor, 'base64url').toString());
        } catch {
          c = undefined;
        }
        if (!Array.isArray(c) || typeof c[0] !== 'string' || typeof c[1] !== 'string') {
          throw badInput('list', 'cursor is not one this store returned', ['cursor']);
        }
        where.push(`(created_at, id) < (${param(c[0])}::timestamptz, ${param(c[1])})`);
      }
      const limit = query.limit ?? 100;
      const rows = await run(
        'list',
        `SELECT doc FROM ${s}.grants ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id DESC LIMIT ${param(limit + 1)}`,
        values,
      );
      const grants = rows.slice(0, limit).map((r) => parseJson<Grant>(r.doc));
      const last = grants[grants.length - 1];
      return {
        grants,
        ...(rows.length > limit && last
          ? { nextCursor: Buffer.from(JSON.stringify([last.createdAt, last.id])).toString('base64url') }
          : {}),
      };
    },

    async claimDue(now, limit, leaseMs, owner) {
      guard('claimDue');
      if (!(now instanceof Date) || Number.isNaN(now.getTime()))
        throw badInput('claimDue', 'now must be a valid Date', ['now']);
      if (!Number.isInteger(limit) || limit < 0)
        throw badInput('claimDue', 'limit must be a non-negative integer', ['limit']);
      if (!Number.isFinite(leaseMs) || leaseMs < 0)
        throw badInput('claimDue', 'leaseMs must be a non-negative number', ['leaseMs']);
      if (limit === 0) return [];
      const rows = await run(
        'claimDue',
        claimSql,
        [now.toISOString(), limit, owner, new Date(now.getTime() + leaseMs).toISOString()],
        {},
        named('claim'),
      );
      // RETURNING has no order; the contract wants (dueAt, id).
      return rows
        .map((r) => parseJson<Grant>(r.doc))
        .sort(
          (a, b) => Date.parse(a.dueAt!) - Date.parse(b.dueAt!) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
        );
    },

    async nextDue() {
      // A case is ready at its due time, or when its lease ends if that is later. Both halves are
      // index scans over active cases only.
      const [row] = await run(
        'nextDue',
        `SELECT least(
           (SELECT due_at FROM ${s}.grants WHERE due_at IS NOT NULL AND (lease_until IS NULL OR lease_until <= due_at) ORDER BY due_at, id LIMIT 1),
           (SELECT min(lease_until) FROM ${s}.grants WHERE lease_until IS NOT NULL AND due_at IS NOT NULL)
         ) AS next`,
      );
      const next = row?.next;
      if (next === null || next === undefined) return null;
      return next instanceof Date ? next : new Date(String(next));
    },

    async events(caseId, afterSeq = 0) {
      const rows = await run(
        'events',
        `SELECT doc, global_seq FROM ${s}.audit_events WHERE case_id = $1 AND seq > $2 ORDER BY seq`,
        [caseId, afterSeq],
        { caseId },
        named('events'),
      );
      return rows.map(toEvent);
    },

    async allEvents(afterGlobalSeq, limit) {
      guard('allEvents');
      const read = (q: (text: string, values?: unknown[]) => Promise<Row[]>) =>
        q(
          `SELECT doc, global_seq FROM ${s}.audit_events WHERE global_seq > $1 ORDER BY global_seq LIMIT $2`,
          [afterGlobalSeq, limit],
        );
      try {
        if (mode !== 'transaction') {
          return await runner.transaction(async (q) => {
            // Wait until no appender holds a drawn-but-uncommitted global_seq, then read with a new snapshot.
            await q(`SELECT pg_advisory_xact_lock(${seqLock})`);
            return (await read(q)).map(toEvent);
          });
        }
        // In the host's transaction a transaction-level lock would be held until the host commits,
        // stalling every writer of the schema meanwhile (and deadlocking two such hosts). The same
        // lock taken at session level is released before returning: it still waits for every
        // appender in flight, and READ COMMITTED gives the next statement a snapshot that sees
        // them all. An older snapshot (REPEATABLE READ, SERIALIZABLE) could miss a number committed
        // after it was taken while showing a later one, so such a host transaction is refused.
        let locked = false;
        try {
          return await runner.transaction(async (q) => {
            const [iso] = await q(`SELECT current_setting('transaction_isolation') AS iso`);
            if (iso?.iso !== 'read committed')
              throw new GrantlineError(
                ErrorCodes.VALIDATION,
                `allEvents: in mode "transaction" the host transaction must be READ COMMITTED (it is ${String(iso?.iso).toUpperCase()}); an older snapshot could skip a global_seq`,
                { details: { where: 'allEvents', isolation: iso?.iso } },
              );
            await q(`SELECT pg_advisory_lock(${seqLock})`);
            locked = true;
            return (await read(q)).map(toEvent);
          });
        } finally {
          // After the savepoint was released or rolled back, so this runs in a usable transaction.
          // If even that fails the connection is almost certainly gone, and the lock with it.
          if (locked)
            await runner.query(`SELECT pg_advisory_unlock(${seqLock})`).catch((err: unknown) =>
              logger.warn('grantline: allEvents could not release its advisory lock', {
                error: toStoreError(err, 'allEvents').toJSON(),
              }),
            );
        }
      } catch (err) {
        throw toStoreError(err, 'allEvents');
      }
    },

    async findByIdempotencyKey(key) {
      const [row] = await run(
        'findByIdempotencyKey',
        `SELECT doc FROM ${s}.grants WHERE idempotency_key = $1`,
        [key],
      );
      return row ? parseJson<Grant>(row.doc) : null;
    },

    onChange(listener) {
      return notifier.add(listener);
    },

    async close() {
      closed = true;
      // The pool or client is the host's: it is not ended here, only the store's own LISTEN connection.
      await notifier.close();
    },
  };
}
