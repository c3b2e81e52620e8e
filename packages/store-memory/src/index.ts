import {
  type AuditEvent,
  cloneJson,
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
  /** `grant.dueAt` as epoch ms, parsed once per write: the sweeper's hot path reads only numbers. */
  due: number | null;
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
 * Values are deep-copied on the way in and out, so callers cannot mutate stored state.
 */
export function createMemoryStore(options: MemoryStoreOptions = {}): MemoryStore {
  const rows = new Map<string, Row>();
  const events = new Map<string, AuditEvent[]>();
  const all: AuditEvent[] = [];
  const byKey = new Map<string, string>();
  const listeners = new Set<(id: string) => void>();
  let closed = false;
  const latency = options.latencyMs ?? 0;

  const pause = () => (latency > 0 ? new Promise((r) => setTimeout(r, latency)) : Promise.resolve());
  const guard = () => {
    if (closed) throw new GrantlineError(ErrorCodes.CLOSED, 'memory store is closed');
  };
  const copy = cloneJson;
  const notify = (id: string) => {
    for (const l of listeners) {
      try {
        l(id);
      } catch {
        // A listener's failure must not undo a committed write.
      }
    }
  };
  const append = (id: string, evs: AuditEvent[]) => {
    const list = events.get(id) ?? [];
    const last = list[list.length - 1];
    let expected = (last?.seq ?? 0) + 1;
    for (const e of evs) {
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
    for (const e of evs) {
      const stored = { ...copy(e), globalSeq: all.length + 1 };
      list.push(stored);
      all.push(stored);
    }
    events.set(id, list);
  };
  const checkGrant = (g: Grant) => {
    if (!g || typeof g.id !== 'string' || typeof g.version !== 'number') {
      throw new GrantlineError(ErrorCodes.VALIDATION, 'store: grant must have an id and a version', {
        details: { where: 'store' },
      });
    }
  };

  return {
    capabilities: { crossProcessLeases: false, globalSequence: true },

    async create(grant, evs): Promise<CreateResult> {
      guard();
      checkGrant(grant);
      await pause();
      guard();
      if (grant.idempotencyKey !== undefined) {
        const existing = byKey.get(grant.idempotencyKey);
        if (existing !== undefined) return { grant: copy(rows.get(existing)!.grant), created: false };
      }
      if (rows.has(grant.id)) {
        throw new GrantlineError(ErrorCodes.CONFLICT, `case ${grant.id} exists already`, {
          details: { caseId: grant.id },
        });
      }
      if ((events.get(grant.id)?.length ?? 0) > 0) {
        throw new GrantlineError(ErrorCodes.CONFLICT, `case ${grant.id} has events already`, {
          details: { caseId: grant.id },
        });
      }
      // Validate the events before writing anything, so a bad call leaves no half-written case.
      if (!evs.every((e, i) => e.caseId === grant.id && e.seq === i + 1)) {
        throw new GrantlineError(ErrorCodes.STORE, `audit events out of sequence for new case ${grant.id}`, {
          details: { caseId: grant.id },
        });
      }
      rows.set(grant.id, { grant: copy(grant), due: grant.dueAt === null ? null : Date.parse(grant.dueAt) });
      append(grant.id, evs);
      if (grant.idempotencyKey !== undefined) byKey.set(grant.idempotencyKey, grant.id);
      notify(grant.id);
      return { grant: copy(grant), created: true };
    },

    async get(id) {
      guard();
      await pause();
      const row = rows.get(id);
      return row ? copy(row.grant) : null;
    },

    async compareAndSet(grant, expectedVersion, evs) {
      guard();
      checkGrant(grant);
      await pause();
      guard();
      const row = rows.get(grant.id);
      if (!row)
        throw new GrantlineError(ErrorCodes.NOT_FOUND, `no case ${grant.id}`, {
          details: { caseId: grant.id },
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
      if (grant.version !== expectedVersion + 1) {
        throw new GrantlineError(ErrorCodes.STORE, `new version must be ${expectedVersion + 1}`, {
          details: { caseId: grant.id },
        });
      }
      const list = events.get(grant.id) ?? [];
      const next = (list[list.length - 1]?.seq ?? 0) + 1;
      if (!evs.every((e, i) => e.caseId === grant.id && e.seq === next + i)) {
        throw new GrantlineError(ErrorCodes.STORE, `audit events out of sequence for case ${grant.id}`, {
          details: { caseId: grant.id },
        });
      }
      // Both writes happen in one synchronous block: no reader can observe one without the other.
      rows.set(grant.id, { grant: copy(grant), due: grant.dueAt === null ? null : Date.parse(grant.dueAt) });
      append(grant.id, evs);
      notify(grant.id);
      return grant; // the caller's object, not the stored copy: isolation holds without a third copy
    },

    async list(query: ListQueryParsed): Promise<GrantPage> {
      guard();
      await pause();
      let items = [...rows.values()].map((r) => r.grant);
      if (query.states) items = items.filter((g) => query.states!.includes(g.state));
      if (query.subjectId) items = items.filter((g) => g.subject.id === query.subjectId);
      if (query.requesterId) items = items.filter((g) => g.requester.id === query.requesterId);
      if (query.updatedAfter) items = items.filter((g) => g.updatedAt > query.updatedAfter!);
      items.sort((a, b) =>
        a.createdAt === b.createdAt ? (a.id < b.id ? 1 : -1) : a.createdAt < b.createdAt ? 1 : -1,
      );
      if (query.cursor) {
        const [c, cid] = JSON.parse(Buffer.from(query.cursor, 'base64url').toString()) as [string, string];
        items = items.filter((g) => g.createdAt < c || (g.createdAt === c && g.id < cid));
      }
      const page = items.slice(0, query.limit);
      const last = page[page.length - 1];
      return {
        grants: page.map(copy),
        ...(items.length > query.limit && last
          ? { nextCursor: Buffer.from(JSON.stringify([last.createdAt, last.id])).toString('base64url') }
          : {}),
      };
    },

    async claimDue(now, limit, leaseMs, owner) {
      guard();
      await pause();
      const t = now.getTime();
      const due: Row[] = [];
      for (const r of rows.values()) {
        if (r.due !== null && r.due <= t && (r.leaseUntil === undefined || r.leaseUntil <= t)) due.push(r);
      }
      due.sort((a, b) => a.due! - b.due! || (a.grant.id < b.grant.id ? -1 : a.grant.id > b.grant.id ? 1 : 0));
      const claimed = due.slice(0, limit);
      for (const r of claimed) {
        r.leaseOwner = owner;
        r.leaseUntil = t + leaseMs;
      }
      return claimed.map((r) => copy(r.grant));
    },

    async nextDue() {
      guard();
      let min: number | null = null;
      for (const r of rows.values()) {
        if (r.due === null) continue;
        const d = Math.max(r.due, r.leaseUntil ?? 0);
        if (min === null || d < min) min = d;
      }
      return min === null ? null : new Date(min);
    },

    async events(caseId, afterSeq = 0) {
      guard();
      await pause();
      return (events.get(caseId) ?? []).filter((e) => e.seq > afterSeq).map(copy);
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
      return all.slice(lo, lo + limit).map(copy);
    },

    async findByIdempotencyKey(key) {
      guard();
      const id = byKey.get(key);
      return id === undefined ? null : copy(rows.get(id)!.grant);
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
      return JSON.stringify({ rows: [...rows.values()], events: [...events.entries()], all });
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
      const replaced = { ...copy(event), globalSeq: list[i]!.globalSeq };
      list[i] = replaced;
      const j = all.findIndex((e) => e.globalSeq === replaced.globalSeq);
      if (j >= 0) all[j] = replaced;
    },
  };
}
