import type { JSONWebKeySet } from 'jose';
import type { ChainProblem } from './audit.js';
import { ChainCursor } from './chain-check.js';
import { type SignedCheckpoint, verifyCheckpoint } from './checkpoint.js';
import type { GrantStore } from './ports.js';

/** A case's chain cursor, with its last event at or below the checkpoint. */
class AuditCursor extends ChainCursor {
  atCheckpoint: [number, string] | undefined = undefined;
}

/** Stable codes of what {@link auditStore} can find. */
export type StoreAuditProblemCode =
  | ChainProblem['code']
  | 'GLOBAL_SEQ_ORDER'
  | 'CHECKPOINT_INVALID'
  | 'CASE_DELETED'
  | 'CASE_TRUNCATED'
  | 'CASE_REWRITTEN'
  | 'CASE_INSERTED'
  | 'CHECKPOINT_COUNT_MISMATCH'
  | 'RECORD_HEAD_MISMATCH'
  | 'RECORD_WITHOUT_EVENTS'
  | 'EVENTS_WITHOUT_RECORD';

/** One finding of {@link auditStore}. */
export interface StoreAuditProblem {
  code: StoreAuditProblemCode;
  message: string;
  caseId?: string;
  seq?: number;
}

/** Result of {@link auditStore}. */
export interface StoreAudit {
  valid: boolean;
  problems: StoreAuditProblem[];
  /** Events read. */
  events: number;
  /** Cases with events. */
  cases: number;
  /** Case records read (0 when `records: false`). */
  records: number;
  /** The checkpoint audited against, when one was given and verified. */
  checkpoint?: { upTo: number; kid: string; at: string };
}

/** Options for {@link auditStore}. */
export interface AuditStoreOptions {
  /** The last signed checkpoint, kept outside the database. Without it, deletions of whole cases cannot be seen. */
  checkpoint?: SignedCheckpoint;
  /** Public keys for the checkpoint (required with `checkpoint`). */
  keys?: JSONWebKeySet;
  /** Events per `allEvents` call (default 10,000). */
  pageSize?: number;
  /** Also check every case record points at its chain's head (default true). */
  records?: boolean;
  /** Stop collecting after this many problems (default 1,000); counting goes on. */
  maxProblems?: number;
}

/**
 * Audits a whole store: every case chain (recomputing every hash), every record against its chain head,
 * and, given a signed checkpoint, that every case and every event the checkpoint covered is still
 * there unchanged (detects a deleted case, a truncated tail, a rewritten history, an inserted case).
 * Streams `allEvents`; memory grows with the number of cases, not events.
 */
export async function auditStore(store: GrantStore, options: AuditStoreOptions = {}): Promise<StoreAudit> {
  const pageSize = options.pageSize ?? 10_000;
  const maxProblems = options.maxProblems ?? 1_000;
  const problems: StoreAuditProblem[] = [];
  let problemCount = 0;
  const add = (p: StoreAuditProblem) => {
    problemCount += 1;
    if (problems.length < maxProblems) problems.push(p);
  };

  let cp: Awaited<ReturnType<typeof verifyCheckpoint>>['checkpoint'];
  if (options.checkpoint) {
    const v = await verifyCheckpoint(options.checkpoint, options.keys ?? { keys: [] });
    if (!v.valid || !v.checkpoint) {
      add({
        code: 'CHECKPOINT_INVALID',
        message: `checkpoint does not verify: ${v.problems.map((p) => p.message).join('; ')}`,
      });
    } else cp = v.checkpoint;
  }
  const upTo = cp?.upTo ?? 0;

  const cursors = new Map<string, AuditCursor>();
  let covered = 0;
  let total = 0;
  let after = 0;
  let lastGlobal = 0;
  const chainProblems: ChainProblem[] = [];
  for (;;) {
    const page = await store.allEvents(after, pageSize);
    for (const e of page) {
      total += 1;
      const g = e.globalSeq ?? 0;
      if (g <= lastGlobal)
        add({
          code: 'GLOBAL_SEQ_ORDER',
          message: `global sequence ${g} after ${lastGlobal}`,
          caseId: e.caseId,
          seq: e.seq,
        });
      lastGlobal = g;
      let c = cursors.get(e.caseId);
      if (!c) {
        c = new AuditCursor(e.caseId);
        cursors.set(e.caseId, c);
      }
      c.push(e, chainProblems);
      if (chainProblems.length > 0) {
        for (const p of chainProblems)
          add({ code: p.code, message: `case ${e.caseId}: ${p.message}`, caseId: e.caseId, seq: p.seq });
        chainProblems.length = 0;
      }
      if (g <= upTo) {
        c.atCheckpoint = [e.seq, e.hash];
        covered += 1;
      }
    }
    if (page.length < pageSize) break;
    after = page[page.length - 1]!.globalSeq ?? after;
  }

  if (cp) {
    for (const [id, [seq, hash]] of cp.heads) {
      const mine = cursors.get(id)?.atCheckpoint;
      if (!mine) {
        add({
          code: 'CASE_DELETED',
          message: `case ${id} had ${seq} event(s) at checkpoint ${cp.upTo}; the store has none of them`,
          caseId: id,
          seq,
        });
      } else if (mine[0] < seq) {
        add({
          code: 'CASE_TRUNCATED',
          message: `case ${id} had ${seq} event(s) at checkpoint ${cp.upTo}; the store has ${mine[0]}`,
          caseId: id,
          seq,
        });
      } else if (mine[0] !== seq || mine[1] !== hash) {
        add({
          code: 'CASE_REWRITTEN',
          message: `case ${id} at checkpoint ${cp.upTo} ended at ${seq}/${hash.slice(0, 12)}; the store has ${mine[0]}/${mine[1].slice(0, 12)}`,
          caseId: id,
          seq,
        });
      }
    }
    for (const [id, c] of cursors) {
      if (c.atCheckpoint && !cp.heads.has(id))
        add({
          code: 'CASE_INSERTED',
          message: `case ${id} has events inside checkpoint ${cp.upTo} that the checkpoint does not know`,
          caseId: id,
        });
    }
    if (covered !== cp.events) {
      add({
        code: 'CHECKPOINT_COUNT_MISMATCH',
        message: `checkpoint ${cp.upTo} covered ${cp.events} event(s); the store has ${covered} at or below it`,
      });
    }
  }

  let records = 0;
  if (options.records !== false) {
    const seen = new Set<string>();
    let cursor: string | undefined;
    do {
      const page = await store.list({ limit: 10_000, ...(cursor ? { cursor } : {}) });
      for (const g of page.grants) {
        records += 1;
        seen.add(g.id);
        const c = cursors.get(g.id);
        if (!c)
          add({
            code: 'RECORD_WITHOUT_EVENTS',
            message: `case ${g.id} has a record but no audit events`,
            caseId: g.id,
          });
        else if (g.audit.seq !== c.seq || g.audit.head !== c.head) {
          add({
            code: 'RECORD_HEAD_MISMATCH',
            message: `case ${g.id} record points at ${g.audit.seq}/${g.audit.head.slice(0, 12)}; its chain ends at ${c.seq}/${c.head.slice(0, 12)}`,
            caseId: g.id,
            seq: c.seq,
          });
        }
      }
      cursor = page.nextCursor;
    } while (cursor);
    for (const id of cursors.keys()) {
      if (!seen.has(id))
        add({
          code: 'EVENTS_WITHOUT_RECORD',
          message: `case ${id} has audit events but no record`,
          caseId: id,
        });
    }
  }

  return {
    valid: problemCount === 0,
    problems,
    events: total,
    cases: cursors.size,
    records,
    ...(cp ? { checkpoint: { upTo: cp.upTo, kid: cp.kid, at: cp.at } } : {}),
  };
}
