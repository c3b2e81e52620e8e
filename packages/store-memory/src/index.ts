import {
  type AuditEvent,
  auditEventSchema,
  type CasItem,
  type CasOutcome,
  type CreateResult,
  ErrorCodes,
  type Grant,
  type GrantPage,
  type GrantStore,
  GrantlineError,
  type ListQueryParsed,
} from '@grantline/core';

/** Options for {@link createMemoryStore}. */
export interface MemoryStoreOptions {
  /** Simulated latency per call in ms (0 by default); lets tests interleave racing callers. */
  latencyMs?: number;
}

interface Row {
  grant: Grant;
  /**
   * `grant.dueAt` as epoch ms, parsed on the sweeper's first look at this version (undefined until
   * then, see `dueOf`): its scans compare numbers, and a version replaced before any scan looked at
   * it (a case usually moves through several in a row) is never parsed at all.
   */
  due: number | null | undefined;
  leaseOwner?: string;
  leaseUntil?: number;
}

/** The in-memory store with its test-only extras. */
export interface MemoryStore extends GrantStore {
  /** Raw JSON of everything held, for tests that search the store for leaked secrets. */
  dump(): string;
  /** Test hook: removes a case and its events, as an attacker with database access might. */
  tamperDeleteCase(id: string): void;
  /** Test hook: removes the newest `n` events of a case. */
  tamperTruncate(id: string, n: number): void;
  /** Test hook: replaces an event of a case in place. */
  tamperReplaceEvent(id: string, seq: number, event: AuditEvent): void;
}

/**
 * The embedded store: everything in process memory, with the same semantics as a database store
 * (compare-and-set, atomic audit append, idempotency keys, leased claims, store-wide sequence).
 * Stored values are immutable: what comes in is copied into frozen objects (only the parts that are
 * not already such a frozen value), and what goes out is that frozen value, shared, with no copy per
 * read. Callers can neither change stored state through an object they passed in nor through one
 * they were handed (a write to a frozen object throws in strict mode).
 */
export function createMemoryStore(options: MemoryStoreOptions = {}): MemoryStore {
  const rows = new Map<string, Row>();
  const events = new Map<string, AuditEvent[]>();
  const all: AuditEvent[] = [];
  const actors: ActorTable = new Map();
  const byKey = new Map<string, string>();
  const listeners = new Set<(id: string) => void>();
  let closed = false;
  const latency = options.latencyMs ?? 0;

  const pause = () => (latency > 0 ? new Promise((r) => setTimeout(r, latency)) : Promise.resolve());
  const guard = () => {
    if (closed) throw new GrantlineError(ErrorCodes.CLOSED, 'memory store is closed');
  };
  const copy = seal;
  // Case ids in ascending (createdAt, id) order, for `list`: pages are read by binary search instead
  // of sorting every case on every call (an audit reading 100,000 records page by page was O(n²)).
  // createdAt never changes after `create`; out-of-order creates (an injected clock) mark it unsorted.
  const order: { createdAt: string; id: string }[] = [];
  let orderSorted = true;
  const before = (a: { createdAt: string; id: string }, b: { createdAt: string; id: string }) =>
    a.createdAt < b.createdAt || (a.createdAt === b.createdAt && a.id < b.id);
  /** The last global sequence number given out: never reused, also after a tamper helper removed events. */
  let lastGlobalSeq = 0;
  const notify = (id: string) => {
    for (const l of listeners) {
      try {
        l(id);
      } catch {
        // A listener's failure must not undo a committed write.
      }
    }
  };
  /**
   * Frozen copies of a write's events, numbered after `base` (the store's last global sequence number,
   * or the last one a batch being prepared will have used).
   * Writes nothing: it throws on a value it cannot copy (a cyclic `data`) and on events out of
   * sequence, checked on the copies (what is stored is what was checked, whatever the caller's
   * objects answer on a second read), so a failed write leaves no trace.
   */
  const freezeAll = (id: string, evs: AuditEvent[], base = lastGlobalSeq): AuditEvent[] => {
    // Stored events are immutable: frozen once here, then handed out without a copy per read
    // (history, evidence, checkpoints and audits read every event; copying them dominated).
    const frozen: AuditEvent[] = new Array(evs.length);
    for (let i = 0; i < evs.length; i++) frozen[i] = freezeEvent(evs[i]!, base + 1 + i, actors);
    const list = events.get(id);
    let expected = (list?.[list.length - 1]?.seq ?? 0) + 1;
    for (const e of frozen) {
      if (e.caseId !== id || e.seq !== expected) {
        throw new GrantlineError(
          ErrorCodes.STORE,
          `audit event out of sequence for case ${id}: got ${e.seq}, expected ${expected}`,
          {
            details: { caseId: id },
          },
        );
      }
      expected += 1;
    }
    return frozen;
  };
  /** True while a write copies its input: caller code (a getter, a proxy) running then must not write. */
  let writing = false;
  /**
   * Starts a write's synchronous part (checks, copies, writes), which must end with
   * `writing = false` in a `finally`: no other write may start inside it. Without latency a write
   * never awaits, so a getter in one write's input could otherwise commit a second write between
   * the first one's checks and its writes (two events with one global number). Inline, not a
   * wrapper taking a callback: no closure per write.
   */
  const enterWrite = () => {
    if (writing)
      throw new GrantlineError(
        ErrorCodes.STORE,
        'memory store: a write was started while another copied its input',
        {
          details: { where: 'store' },
        },
      );
    writing = true;
  };
  /** Appends what `freezeAll` made (cannot throw). */
  const append = (id: string, frozen: AuditEvent[]) => {
    let list = events.get(id);
    if (list === undefined) {
      list = [];
      events.set(id, list);
    }
    for (const e of frozen) {
      list.push(e);
      all.push(e);
    }
    lastGlobalSeq += frozen.length;
  };
  /** A row's due time in epoch ms (null: nothing due), parsed once per stored version. */
  const dueOf = (r: Row): number | null => {
    if (r.due === undefined) r.due = r.grant.dueAt === null ? null : Date.parse(r.grant.dueAt);
    return r.due;
  };
  const checkGrant = (g: Grant) => {
    if (!g || typeof g.id !== 'string' || typeof g.version !== 'number') {
      throw new GrantlineError(ErrorCodes.VALIDATION, 'store: grant must have an id and a version', {
        details: { where: 'store' },
      });
    }
  };

  /**
   * Checks one compare-and-set and copies what it writes, numbering its events after `base`; writes
   * nothing. Throws a GrantlineError for a write that fails its checks; anything else it throws
   * (a value it cannot copy) is the caller's bad input.
   */
  const prepareCas = (grant: Grant, expectedVersion: number, evs: AuditEvent[], base: number) => {
    const id = grant.id;
    // Checked first, as the PostgreSQL store does (it needs no read for it).
    if (grant.version !== expectedVersion + 1) {
      throw new GrantlineError(ErrorCodes.STORE, `new version must be ${expectedVersion + 1}`, {
        details: { caseId: id },
      });
    }
    const row = rows.get(id);
    if (!row)
      throw new GrantlineError(ErrorCodes.NOT_FOUND, `no case ${id}`, {
        details: { caseId: id },
      });
    if (row.grant.version !== expectedVersion) {
      throw new GrantlineError(
        ErrorCodes.CONFLICT,
        `case ${grant.id} is at version ${row.grant.version}, not ${expectedVersion}`,
        {
          retryable: true,
          details: { caseId: grant.id, expectedVersion, actualVersion: row.grant.version },
        },
      );
    }
    const list = events.get(id) ?? [];
    const next = (list[list.length - 1]?.seq ?? 0) + 1;
    if (!Array.isArray(evs) || !evs.every((e, i) => e.caseId === id && e.seq === next + i)) {
      throw new GrantlineError(ErrorCodes.STORE, `audit events out of sequence for case ${id}`, {
        details: { caseId: id },
      });
    }
    const stored = copy(grant, row.grant); // shares what is unchanged since the stored version
    if (stored.id !== id || stored.version !== expectedVersion + 1) throw changedWhileCopied(id);
    return { stored, frozen: freezeAll(id, evs, base) };
  };
  /**
   * Writes what `prepareCas` made, in one synchronous block that cannot throw. Listeners are told
   * by the caller, after every write of the call: one could write to the store itself, and the
   * events of a batch are numbered in advance.
   */
  const commitCas = ({ stored, frozen }: { stored: Grant; frozen: AuditEvent[] }) => {
    rows.set(stored.id, { grant: stored, due: undefined });
    append(stored.id, frozen);
    return stored;
  };
  /**
   * One compare-and-set: everything is checked and copied first (a copy can throw), then both
   * writes happen together: no reader observes one without the other, and a failure writes nothing.
   */
  const casOne = (grant: Grant, expectedVersion: number, evs: AuditEvent[]) => {
    enterWrite();
    let stored: Grant;
    try {
      stored = commitCas(prepareCas(grant, expectedVersion, evs, lastGlobalSeq));
    } finally {
      writing = false;
    }
    notify(stored.id);
    return stored;
  };

  /** `create`'s synchronous part, between `enterWrite` and its `finally`. */
  const createNow = (grant: Grant, evs: AuditEvent[]): CreateResult => {
    const id = grant.id;
    const key = grant.idempotencyKey;
    if (key !== undefined) {
      const existing = byKey.get(key);
      if (existing !== undefined) return { grant: rows.get(existing)!.grant, created: false };
    }
    if (rows.has(id)) {
      throw new GrantlineError(ErrorCodes.CONFLICT, `case ${id} exists already`, {
        details: { caseId: id },
      });
    }
    if ((events.get(id)?.length ?? 0) > 0) {
      throw new GrantlineError(ErrorCodes.CONFLICT, `case ${id} has events already`, {
        details: { caseId: id },
      });
    }
    // Validate the events before writing anything, so a bad call leaves no half-written case.
    if (!evs.every((e, i) => e.caseId === id && e.seq === i + 1)) {
      throw new GrantlineError(ErrorCodes.STORE, `audit events out of sequence for new case ${id}`, {
        details: { caseId: id },
      });
    }
    // Copied before anything is written, as in casOne, and the copy is what gets checked and kept.
    const stored = copy(grant);
    if (stored.id !== id || stored.idempotencyKey !== key) throw changedWhileCopied(id);
    const frozen = freezeAll(id, evs);
    rows.set(id, { grant: stored, due: undefined });
    append(id, frozen);
    const entry = { createdAt: stored.createdAt, id };
    if (order.length > 0 && before(entry, order[order.length - 1]!)) orderSorted = false;
    order.push(entry);
    if (key !== undefined) byKey.set(key, id);
    return { grant: stored, created: true };
  };

  /** `compareAndSetMany`'s synchronous part, between `enterWrite` and its `finally`; listeners are told by the caller. */
  const casMany = (items: CasItem[]): CasOutcome[] => {
    const seen = new Set<string>();
    items.forEach((item, i) => {
      checkGrant(item?.grant);
      const bad = !Number.isInteger(item.expectedVersion)
        ? 'expectedVersion must be an integer'
        : !Array.isArray(item.events)
          ? 'events must be an array'
          : null;
      if (bad)
        throw new GrantlineError(ErrorCodes.VALIDATION, `compareAndSetMany: ${bad}`, {
          details: { where: 'compareAndSetMany', path: ['items', i] },
        });
      if (seen.has(item.grant.id))
        throw new GrantlineError(
          ErrorCodes.VALIDATION,
          `compareAndSetMany: case ${item.grant.id} appears twice`,
          {
            details: { where: 'compareAndSetMany', path: ['items', i, 'grant', 'id'] },
          },
        );
      seen.add(item.grant.id);
    });
    // Every item is checked and copied before any is written (the items are distinct cases, so no
    // item's checks depend on another's write): an item that fails its checks gets its error, and a
    // value that cannot be copied rejects the call with nothing written, as the PostgreSQL store's
    // one statement does. Then all the writes happen in one synchronous block.
    let base = lastGlobalSeq;
    const prepared = items.map((item) => {
      try {
        const p = prepareCas(item.grant, item.expectedVersion, item.events, base);
        base += p.frozen.length;
        return p;
      } catch (err) {
        if (err instanceof GrantlineError) return err;
        throw err;
      }
    });
    const outcomes = prepared.map(
      (p): CasOutcome =>
        p instanceof GrantlineError ? { ok: false, error: p } : { ok: true, grant: commitCas(p) },
    );
    return outcomes;
  };

  return {
    capabilities: { crossProcessLeases: false, globalSequence: true },

    async create(grant, evs): Promise<CreateResult> {
      guard();
      checkGrant(grant);
      if (latency > 0) await pause(); // no extra turn of the event loop per call without latency
      guard();
      enterWrite();
      let result: CreateResult;
      try {
        result = createNow(grant, evs);
      } finally {
        writing = false;
      }
      if (result.created) notify(result.grant.id);
      return result;
    },

    async get(id) {
      guard();
      if (latency > 0) await pause();
      const row = rows.get(id);
      return row ? row.grant : null; // frozen: no copy needed
    },
    async compareAndSet(grant, expectedVersion, evs) {
      guard();
      checkGrant(grant);
      if (latency > 0) await pause();
      guard();
      return casOne(grant, expectedVersion, evs); // the stored (frozen) record
    },

    async compareAndSetMany(items) {
      guard();
      if (!Array.isArray(items))
        throw new GrantlineError(ErrorCodes.VALIDATION, 'compareAndSetMany: items must be an array', {
          details: { where: 'compareAndSetMany', path: ['items'] },
        });
      // The pause comes first: the items are read once, after it, in one synchronous block.
      if (latency > 0) await pause();
      guard();
      enterWrite();
      let outcomes: CasOutcome[];
      try {
        outcomes = casMany(items);
      } finally {
        writing = false;
      }
      for (const o of outcomes) if (o.ok) notify(o.grant.id);
      return outcomes;
    },

    async list(query: ListQueryParsed): Promise<GrantPage> {
      guard();
      if (latency > 0) await pause();
      if (!orderSorted) {
        order.sort((a, b) => (before(a, b) ? -1 : before(b, a) ? 1 : 0));
        orderSorted = true;
      }
      // Newest first: walk `order` backwards from just below the cursor.
      let start = order.length - 1;
      if (query.cursor) {
        let parsed: unknown;
        try {
          parsed = JSON.parse(Buffer.from(query.cursor, 'base64url').toString());
        } catch {
          parsed = undefined;
        }
        if (!Array.isArray(parsed) || typeof parsed[0] !== 'string' || typeof parsed[1] !== 'string') {
          throw new GrantlineError(ErrorCodes.VALIDATION, 'list: cursor is not one this store returned', {
            details: { where: 'list', path: ['cursor'] },
          });
        }
        const c = { createdAt: parsed[0], id: parsed[1] };
        let lo = 0;
        let hi = order.length;
        while (lo < hi) {
          const mid = (lo + hi) >>> 1;
          if (before(order[mid]!, c)) lo = mid + 1;
          else hi = mid;
        }
        start = lo - 1; // the last entry strictly before the cursor
      }
      const matches = (g: Grant) =>
        (!query.states || query.states.includes(g.state)) &&
        (!query.subjectId || g.subject.id === query.subjectId) &&
        (!query.requesterId || g.requester.id === query.requesterId) &&
        (!query.updatedAfter || g.updatedAt > query.updatedAfter);
      const page: Grant[] = [];
      let more = false;
      for (let i = start; i >= 0; i--) {
        const row = rows.get(order[i]!.id);
        if (!row || !matches(row.grant)) continue; // deleted by a tamper hook, or filtered out
        if (page.length === query.limit) {
          more = true;
          break;
        }
        page.push(row.grant);
      }
      const last = page[page.length - 1];
      return {
        grants: page, // frozen records: no copy needed
        ...(more && last
          ? { nextCursor: Buffer.from(JSON.stringify([last.createdAt, last.id])).toString('base64url') }
          : {}),
      };
    },

    async claimDue(now, limit, leaseMs, owner) {
      guard();
      if (latency > 0) await pause();
      const t = now.getTime();
      const due: Row[] = [];
      for (const r of rows.values()) {
        const d = dueOf(r);
        if (d !== null && d <= t && (r.leaseUntil === undefined || r.leaseUntil <= t)) due.push(r);
      }
      due.sort((a, b) => a.due! - b.due! || (a.grant.id < b.grant.id ? -1 : a.grant.id > b.grant.id ? 1 : 0));
      const claimed = due.slice(0, limit);
      for (const r of claimed) {
        r.leaseOwner = owner;
        r.leaseUntil = t + leaseMs;
      }
      return claimed.map((r) => r.grant);
    },

    async nextDue() {
      guard();
      let min: number | null = null;
      for (const r of rows.values()) {
        const due = dueOf(r);
        if (due === null) continue;
        const d = Math.max(due, r.leaseUntil ?? 0);
        if (min === null || d < min) min = d;
      }
      return min === null ? null : new Date(min);
    },

    async events(caseId, afterSeq = 0) {
      guard();
      if (latency > 0) await pause();
      return (events.get(caseId) ?? []).filter((e) => e.seq > afterSeq); // frozen: no copy needed
    },

    async allEvents(afterGlobalSeq, limit) {
      guard();
      // `all` is sorted by globalSeq (gaps only after tampering): binary-search the start.
      let lo = 0;
      let hi = all.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (all[mid]!.globalSeq! <= afterGlobalSeq) lo = mid + 1;
        else hi = mid;
      }
      return all.slice(lo, lo + limit); // frozen: no copy needed
    },

    async findByIdempotencyKey(key) {
      guard();
      const id = byKey.get(key);
      return id === undefined ? null : rows.get(id)!.grant;
    },

    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },

    async close() {
      closed = true;
      listeners.clear();
    },

    dump() {
      // Without `due`, a cache the sweeper's reads fill in: a read must not change the dump.
      const stored = [...rows.values()].map(({ grant, leaseOwner, leaseUntil }) => ({
        grant,
        leaseOwner,
        leaseUntil,
      }));
      return JSON.stringify({ rows: stored, events: [...events.entries()], all });
    },

    tamperDeleteCase(id) {
      rows.delete(id);
      events.delete(id);
      for (let i = all.length - 1; i >= 0; i--) if (all[i]!.caseId === id) all.splice(i, 1);
    },
    tamperTruncate(id, n) {
      const list = events.get(id) ?? [];
      const removed = new Set(list.splice(Math.max(0, list.length - n), n).map((e) => e.globalSeq));
      for (let i = all.length - 1; i >= 0; i--) if (removed.has(all[i]!.globalSeq)) all.splice(i, 1);
    },
    tamperReplaceEvent(id, seq, event) {
      const list = events.get(id) ?? [];
      const i = list.findIndex((e) => e.seq === seq);
      if (i < 0) return;
      const replaced = seal({ ...event, globalSeq: list[i]!.globalSeq });
      list[i] = replaced;
      const j = all.findIndex((e) => e.globalSeq === replaced.globalSeq);
      if (j >= 0) all[j] = replaced;
    },
  };
}

/**
 * Frozen empty values: every empty array or object in a stored value is one of these (a principal's
 * empty `roles` and `teams`, a target's empty `params`), not a frozen object of its own per place.
 */
const EMPTY_ARRAY: readonly unknown[] = Object.freeze([]);
const EMPTY_OBJECT: Readonly<Record<string, never>> = Object.freeze({});

/**
 * Deep copy of JSON data, frozen at every level (one pass). `shared` is a value this store made
 * before (the stored version a compare-and-set replaces, so frozen all the way down): wherever
 * `value` holds the very same object at the same place, it is reused instead of copied. A record
 * after a copy-on-write transition shares most of its sub-objects with the version it came from, so
 * a write copies only what changed. A caller's own objects are always copied, never adopted.
 * Drops `undefined` properties, as JSON does.
 */
function seal<T>(value: T, shared?: unknown): T {
  if (value === null || typeof value !== 'object') return value;
  if (value === shared) return value;
  const prev =
    shared !== null && typeof shared === 'object' ? (shared as Record<string, unknown>) : undefined;
  let out: object;
  // Most values in a record are strings and numbers: kept as they are right here, without a call
  // (and without reading the shared version's value, a megamorphic keyed load) for each of them.
  if (Array.isArray(value)) {
    if (value.length === 0) return EMPTY_ARRAY as T;
    const arr: unknown[] = new Array(value.length);
    for (let i = 0; i < value.length; i++) {
      const v: unknown = value[i];
      arr[i] = v === null || typeof v !== 'object' ? v : seal(v, prev?.[i]);
    }
    out = arr;
  } else {
    const o: Record<string, unknown> = {};
    let empty = true;
    for (const key in value) {
      const v = (value as Record<string, unknown>)[key];
      if (v === undefined) continue;
      const c = v === null || typeof v !== 'object' ? v : seal(v, prev?.[key]);
      if (key === '__proto__') ownKey(o, key, c);
      else o[key] = c;
      empty = false;
    }
    if (empty) return EMPTY_OBJECT as T;
    out = o;
  }
  return Object.freeze(out) as T;
}

/**
 * Sets `key` as an own enumerable property: for `__proto__`, which an assignment would take for the
 * prototype (the copy would lose the key, inherit the value, and no longer match its event's hash).
 */
function ownKey(o: object, key: string, value: unknown) {
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * The fields of an `AuditEvent`, from core's schema (one list for both): an event with any other
 * key takes `freezeEventAsGiven`.
 */
const EVENT_FIELDS: ReadonlySet<string> = new Set(Object.keys(auditEventSchema.shape));

/**
 * The stored copy of an event, with the store's `globalSeq`. An event core writes (an `AuditEvent`'s
 * fields and no others, none of them missing) is built as one object literal per shape, in the
 * order core builds them: adding the fields one by one gave every event a property array of its
 * own and a megamorphic store per field (2.6% of a lifecycle's instructions). Any other event is
 * kept as given, extra keys included, as the PostgreSQL store keeps the whole event in its `doc`.
 */
function freezeEvent(e: AuditEvent, globalSeq: number, actors: ActorTable): AuditEvent {
  for (const key in e) if (!EVENT_FIELDS.has(key)) return freezeEventAsGiven(e, globalSeq);
  const { seq, caseId, type, at, actor, actingRole, data, prevHash, hash } = e;
  if (
    seq === undefined ||
    caseId === undefined ||
    type === undefined ||
    at === undefined ||
    actor === undefined ||
    data === undefined ||
    prevHash === undefined ||
    hash === undefined
  )
    return freezeEventAsGiven(e, globalSeq);
  const out =
    actingRole === undefined
      ? {
          seq,
          caseId,
          type,
          at,
          actor: internActor(actor, actors),
          data: seal(data),
          prevHash,
          hash,
          globalSeq,
        }
      : {
          seq,
          caseId,
          type,
          at,
          actor: internActor(actor, actors),
          actingRole,
          data: seal(data),
          prevHash,
          hash,
          globalSeq,
        };
  return Object.freeze(out) as AuditEvent;
}

/** `seal({ ...e, globalSeq })` without the spread (a key added to a spread copy is slow in V8). */
function freezeEventAsGiven(e: AuditEvent, globalSeq: number): AuditEvent {
  const out: Record<string, unknown> = {};
  for (const key in e) {
    const v = (e as Record<string, unknown>)[key];
    if (key === 'globalSeq') out[key] = globalSeq;
    else if (v === undefined) continue;
    else if (key === '__proto__') ownKey(out, key, v === null || typeof v !== 'object' ? v : seal(v));
    else out[key] = v === null || typeof v !== 'object' ? v : seal(v);
  }
  if (out.globalSeq === undefined) out.globalSeq = globalSeq;
  return Object.freeze(out) as AuditEvent;
}

/**
 * Frozen event actors by kind, then id: one stored object per actor, whichever events name it (a
 * lifecycle names 4-5 actors in its 12 events). The table holds one entry per distinct actor, the
 * size of a small object: it saves memory wherever an actor has more than one event (pnpm bench's
 * cases: 6.8 instead of 7.4 KB retained per case) and costs about that entry where it has one.
 */
type ActorTable = Map<string, Map<string, AuditEvent['actor']>>;

/**
 * The stored actor of an event: the table's frozen `{ id, kind }` for an actor whose own enumerable
 * keys are exactly `id` and `kind`, both strings (every actor core writes); a sealed copy of
 * anything else. Each field is read once: what is stored is what was checked.
 */
function internActor(a: AuditEvent['actor'], table: ActorTable): AuditEvent['actor'] {
  if (a === null || typeof a !== 'object') return seal(a);
  let n = 0;
  for (const key in a) {
    if (key !== 'id' && key !== 'kind') return seal(a);
    n++;
  }
  if (n !== 2 || !Object.hasOwn(a, 'id') || !Object.hasOwn(a, 'kind')) return seal(a);
  const { id, kind } = a;
  if (typeof id !== 'string' || typeof kind !== 'string') return seal(a);
  let byId = table.get(kind);
  if (byId === undefined) {
    byId = new Map();
    table.set(kind, byId);
  }
  let stored = byId.get(id);
  if (stored === undefined) {
    stored = Object.freeze({ id, kind }) as AuditEvent['actor'];
    byId.set(id, stored);
  }
  return stored;
}

/** A write whose input answered differently when it was copied than when it was checked. */
function changedWhileCopied(id: string): GrantlineError {
  return new GrantlineError(ErrorCodes.STORE, `case ${id}: the write's input changed while it was copied`, {
    details: { caseId: id },
  });
}
