import { createHash } from 'node:crypto';
import { configure } from 'safe-stable-stringify';
import { type ChainProblem, GENESIS_HASH, eventHash, hashedPart } from './audit.js';
import type { AuditEvent } from './model.js';

// safe-stable-stringify sorts keys the way RFC 8785 does and is ~3x faster than `canonicalize`. It is
// only a fast path: when its output hashes to the stored hash, that output is a JSON text that parses to
// this event's content, so the content is the hashed content (barring a SHA-256 collision). Any
// mismatch is re-checked with the canonical serialiser before it is reported.
const stable = configure({ bigint: false, circularValue: Error, deterministic: true });

/** True when the event's stored `hash` is the hash of its content (RFC 8785 canonical JSON, SHA-256). */
export function eventHashMatches(e: AuditEvent): boolean {
  const fast = stable(hashedPart(e));
  if (fast !== undefined && createHash('sha256').update(fast).digest('hex') === e.hash) return true;
  try {
    return eventHash(e) === e.hash;
  } catch {
    return false;
  }
}

/**
 * Incremental chain check for one case, fed events in `seq` order (possibly interleaved with other
 * cases'). Same problems as `verifyChain` in audit.ts, with the fast hash path above.
 */
export class ChainCursor {
  seq = 0;
  head = GENESIS_HASH;
  constructor(readonly caseId: string) {}

  /** Checks `e` as the next event of this case; pushes what is wrong into `problems`. */
  push(e: AuditEvent, problems: ChainProblem[]): void {
    const position = this.seq + 1;
    if (e.caseId !== this.caseId) {
      problems.push({
        code: 'CHAIN_CASE_MISMATCH',
        seq: e.seq,
        message: `event ${position} belongs to case ${e.caseId}`,
      });
    }
    if (e.seq !== position) {
      problems.push({
        code: 'CHAIN_SEQ_GAP',
        seq: e.seq,
        message: `event at position ${position} has seq ${e.seq}`,
      });
    }
    if (e.prevHash !== this.head) {
      problems.push({
        code: 'CHAIN_PREV_MISMATCH',
        seq: e.seq,
        message: `event ${e.seq} does not link to its predecessor`,
      });
    }
    if (!eventHashMatches(e)) {
      problems.push({
        code: 'CHAIN_HASH_MISMATCH',
        seq: e.seq,
        message: `event ${e.seq} was altered: hash does not match its content`,
      });
    }
    this.seq = position;
    this.head = e.hash;
  }
}

/** Checks a whole case chain (fast path of `verifyChain`). */
export function checkChain(
  caseId: string,
  events: readonly AuditEvent[],
): { valid: boolean; head: string; problems: ChainProblem[] } {
  const problems: ChainProblem[] = [];
  if (events.length === 0) {
    problems.push({ code: 'CHAIN_EMPTY', seq: 0, message: `case ${caseId} has no audit events` });
    return { valid: false, head: GENESIS_HASH, problems };
  }
  const cursor = new ChainCursor(caseId);
  for (const e of events) cursor.push(e, problems);
  return { valid: problems.length === 0, head: cursor.head, problems };
}
