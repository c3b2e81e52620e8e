import { createHash } from 'node:crypto';
import type { JSONWebKeySet } from 'jose';
import { z } from 'zod';
import { type ChainProblem, canonicalJson } from './audit.js';
import { ChainCursor } from './chain-check.js';
import { ErrorCodes, GrantlineError } from './errors.js';
import type { AuditEvent } from './model.js';
import { type Clock, type GrantStore, type Logger, silentLogger, systemClock } from './ports.js';
import { type Signer, type SigningAlgorithm, createJwks, verifyDetached } from './signer.js';

/** Format tag of a checkpoint's signed body. */
export const CHECKPOINT_FORMAT = 'grantline.checkpoint/v1';
/** `typ` of a checkpoint signature's protected header. */
export const CHECKPOINT_TYP = 'grantline-checkpoint+jws';

/** Per-case chain heads: case id → `[seq, hash]` of its last event at or below the checkpoint. */
export type CaseHeads = Record<string, [number, string]>;

/** The signed part of a checkpoint. */
export interface CheckpointBody {
  format: typeof CHECKPOINT_FORMAT;
  /** Every event with `globalSeq <= upTo` is covered. */
  upTo: number;
  /** How many events that is. */
  events: number;
  /** How many cases have events in it. */
  cases: number;
  /** SHA-256 over the heads, one line `JSON.stringify([caseId, seq, hash])` + "\n" per case, sorted by case id. */
  headsDigest: string;
  at: string;
  signer: { kid: string; alg: SigningAlgorithm };
}

/**
 * A signed statement of the whole audit stream up to a global sequence number: a JWS (unencoded
 * canonical JSON payload, like evidence) over a {@link CheckpointBody}, with the per-case heads
 * alongside, bound to the signature by `headsDigest`. Keep them outside the database (see
 * {@link CheckpointSink}): then deleting a case, or the tail of one, cannot go unnoticed.
 */
export interface SignedCheckpoint {
  payload: string;
  protected: string;
  signature: string;
  heads: CaseHeads;
}

/** Where checkpoints go: a host keeps them outside the database (object storage with retention, a transparency log, another system). */
export interface CheckpointSink {
  /** Stores a checkpoint. Called in batches by the checkpointer, never per event. */
  put(checkpoint: SignedCheckpoint): Promise<void>;
  /** The most recent checkpoint, so a restarted checkpointer continues from it. */
  latest?(): Promise<SignedCheckpoint | null>;
}

/** An in-memory {@link CheckpointSink} for tests and single-process hosts. */
export interface MemoryCheckpointSink extends CheckpointSink {
  latest(): Promise<SignedCheckpoint | null>;
  /** Every checkpoint put, oldest first (frozen: the sink's own copies, never changed). */
  all(): readonly SignedCheckpoint[];
}

/**
 * Heads snapshots built by a checkpointer of this module: frozen, every entry a frozen `[seq, hash]`.
 * Nothing can change one, so the memory sink keeps it as it is instead of copying it per head (a
 * store-wide checkpoint holds a head per case). Only this module adds to it.
 */
const sealedHeads = new WeakSet<object>();

/**
 * A frozen copy of a checkpoint: a copy per head, not a structured clone of the whole object. A head
 * that is already a frozen pair of primitives (the checkpointer hands them out so) cannot change, so
 * it is shared rather than copied: successive checkpoints share the heads of the cases that did not
 * move.
 */
function frozenCopy(cp: SignedCheckpoint): SignedCheckpoint {
  if (sealedHeads.has(cp.heads)) return Object.freeze({ ...cp }); // the checkpointer's own, frozen through
  const heads: CaseHeads = {};
  for (const id in cp.heads) {
    const h = cp.heads[id]!;
    heads[id] =
      Object.isFrozen(h) &&
      Array.isArray(h) &&
      h.length === 2 &&
      typeof h[0] === 'number' &&
      typeof h[1] === 'string'
        ? h
        : (Object.freeze([h[0], h[1]]) as [number, string]);
  }
  return Object.freeze({
    payload: cp.payload,
    protected: cp.protected,
    signature: cp.signature,
    heads: Object.freeze(heads),
  });
}

/**
 * Creates a {@link MemoryCheckpointSink}. `put` keeps a frozen copy; `latest` and `all` hand that
 * copy out as is (it cannot be changed, so no copy per read).
 */
export function createMemoryCheckpointSink(): MemoryCheckpointSink {
  const list: SignedCheckpoint[] = [];
  return {
    async put(cp) {
      list.push(frozenCopy(cp));
    },
    async latest() {
      return list[list.length - 1] ?? null;
    },
    all: () => list.slice(),
  };
}

/** A case's line in {@link headsDigest}: `JSON.stringify([id, seq, hash])`, spelled out, and "\n". */
function headLine(id: string, seq: number, hash: string): string {
  return `[${JSON.stringify(id)},${JSON.stringify(seq)},${JSON.stringify(hash)}]\n`;
}

/** SHA-256 (hex) of lines `lineAt(0)` to `lineAt(n - 1)`, hashed in chunks rather than one update per line. */
function digestLines(n: number, lineAt: (i: number) => string): string {
  const h = createHash('sha256');
  let chunk = '';
  for (let i = 0; i < n; i++) {
    chunk += lineAt(i);
    if (chunk.length >= 65_536) {
      h.update(chunk);
      chunk = '';
    }
  }
  h.update(chunk);
  return h.digest('hex');
}

/** Digest binding the heads to a checkpoint's signature. */
export function headsDigest(heads: CaseHeads): string {
  const ids = Object.keys(heads);
  let sorted = true;
  for (let i = 1; i < ids.length && sorted; i++) sorted = ids[i - 1]! < ids[i]!;
  if (!sorted) ids.sort();
  return digestLines(ids.length, (i) => {
    const id = ids[i]!;
    const [seq, hash] = heads[id]!;
    return headLine(id, seq, hash);
  });
}

/** `sorted` (cursors in ascending case id order) with `fresh` (cursors of other cases) merged in. */
function mergeByCase<C extends ChainCursor>(sorted: readonly C[], fresh: C[]): C[] {
  if (fresh.length === 0) return sorted as C[];
  fresh.sort((a, b) => (a.caseId < b.caseId ? -1 : a.caseId > b.caseId ? 1 : 0));
  const out = new Array<C>(sorted.length + fresh.length);
  let i = 0;
  let j = 0;
  for (let k = 0; k < out.length; k++) {
    out[k] =
      j >= fresh.length || (i < sorted.length && sorted[i]!.caseId < fresh[j]!.caseId)
        ? sorted[i++]!
        : fresh[j++]!;
  }
  return out;
}

/**
 * A case's chain cursor in the checkpointer, with its head as last signed: the frozen `[seq, hash]`
 * tuple of the heads snapshot and its digest line. Both are rebuilt only when the head moved, so a
 * checkpoint's per-case cost for the cases that did not change is one object insertion and one
 * string append (it was an array, three `JSON.stringify` calls and a copy in the sink per case).
 */
class HeadCursor extends ChainCursor {
  /** The head as signed, or undefined once the head moved (set back on every push and rollback). */
  tuple: readonly [number, string] | undefined;
  line = '';

  constructor(caseId: string) {
    super(caseId, false); // links only: content is re-hashed by every audit
  }

  /** Rebuilds the tuple and line of the current head. */
  refresh(): readonly [number, string] {
    const t = Object.freeze([this.seq, this.head] as [number, string]);
    this.tuple = t;
    this.line = headLine(this.caseId, this.seq, this.head);
    return t;
  }
}

/** A problem found in a checkpoint. */
export interface CheckpointProblem {
  code:
    | 'CHECKPOINT_MALFORMED'
    | 'CHECKPOINT_HEADS_MISMATCH'
    | 'SIGNATURE_MALFORMED'
    | 'SIGNATURE_ALG_REFUSED'
    | 'SIGNATURE_TYPE_MISMATCH'
    | 'KEY_UNKNOWN'
    | 'SIGNATURE_INVALID';
  message: string;
}

/** A verified checkpoint's content. */
export interface VerifiedCheckpoint extends CheckpointBody {
  heads: CaseHeads;
  kid: string;
}

const bodyShape = z.strictObject({
  format: z.literal(CHECKPOINT_FORMAT),
  upTo: z.number().int().nonnegative(),
  events: z.number().int().nonnegative(),
  cases: z.number().int().nonnegative(),
  headsDigest: z.string().regex(/^[0-9a-f]{64}$/),
  at: z.iso.datetime({ offset: false }),
  signer: z.strictObject({ kid: z.string(), alg: z.enum(['EdDSA', 'ES256']) }),
});
const cpShape = z.strictObject({
  payload: z.string(),
  protected: z.string(),
  signature: z.string(),
  heads: z.custom<CaseHeads>((v) => headsIssue(v) === undefined, {
    error: (iss) => `heads: ${headsIssue(iss.input) ?? 'malformed'}`,
  }),
});

/**
 * What is wrong with `heads` (a plain object of case id → `[positive integer seq, hash string]`), or
 * undefined. By hand: a store-wide checkpoint holds a head per case, and zod's record of tuples costs
 * seconds at a million cases.
 */
function headsIssue(v: unknown): string | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'must be an object';
  for (const id in v) {
    if (!Object.hasOwn(v, id)) continue;
    const h = (v as Record<string, unknown>)[id];
    if (
      !Array.isArray(h) ||
      h.length !== 2 ||
      !Number.isSafeInteger(h[0]) ||
      (h[0] as number) <= 0 ||
      typeof h[1] !== 'string'
    ) {
      return `head of case ${id} must be [seq, hash]`;
    }
  }
  return undefined;
}

/**
 * Verifies a checkpoint offline: the signature against the JWKS, the body's shape, and that the heads
 * hash to the signed digest and add up to the signed counts.
 */
export async function verifyCheckpoint(
  checkpoint: unknown,
  keys: JSONWebKeySet,
): Promise<{ valid: boolean; problems: CheckpointProblem[]; checkpoint?: VerifiedCheckpoint }> {
  const problems: CheckpointProblem[] = [];
  const shaped = cpShape.safeParse(checkpoint);
  if (!shaped.success) {
    return {
      valid: false,
      problems: [
        {
          code: 'CHECKPOINT_MALFORMED',
          message: `checkpoint must be { payload, protected, signature, heads }: ${shaped.error.issues[0]?.message ?? ''}`,
        },
      ],
    };
  }
  const cp = shaped.data as SignedCheckpoint;
  const sig = await verifyDetached(cp.payload, cp, keys, CHECKPOINT_TYP);
  if (!sig.ok) problems.push({ code: sig.code, message: sig.message });
  let body: CheckpointBody;
  try {
    const parsed = bodyShape.safeParse(JSON.parse(cp.payload));
    if (!parsed.success) throw new Error(parsed.error.issues[0]?.message);
    body = parsed.data;
  } catch (err) {
    problems.push({
      code: 'CHECKPOINT_MALFORMED',
      message: `checkpoint body is not valid: ${err instanceof Error ? err.message : ''}`,
    });
    return { valid: false, problems };
  }
  const cases = Object.keys(cp.heads).length;
  const events = Object.values(cp.heads).reduce((n, [seq]) => n + seq, 0);
  if (headsDigest(cp.heads) !== body.headsDigest || cases !== body.cases || events !== body.events) {
    problems.push({
      code: 'CHECKPOINT_HEADS_MISMATCH',
      message: 'the heads do not match the signed digest and counts',
    });
  }
  if (sig.ok && sig.kid !== body.signer.kid)
    problems.push({ code: 'SIGNATURE_INVALID', message: 'body names another signer than the signature' });
  const valid = problems.length === 0;
  return {
    valid,
    problems,
    ...(valid && sig.ok ? { checkpoint: { ...body, heads: cp.heads, kid: sig.kid } } : {}),
  };
}

/** Options for {@link createCheckpointer}. */
export interface CheckpointerOptions {
  store: GrantStore;
  signer: Signer;
  sink: CheckpointSink;
  clock?: Clock;
  logger?: Logger;
  /** Events read per `allEvents` call (default 5,000). */
  pageSize?: number;
  /**
   * In the background, sign once at least this many changes were seen (default 1,000), and at least
   * half as many as there are cases, so that the O(cases) cost of a checkpoint stays small per event.
   */
  everyChanges?: number;
  /** In the background, sign at least this often when anything changed, in ms (default 10,000). */
  intervalMs?: number;
  /** Keys a resumed checkpoint may be signed with (default: the signer's own key). Include retired keys after a rotation. */
  resumeKeys?: JSONWebKeySet;
}

/** Signs checkpoints of the store-wide audit stream in batches. */
export interface Checkpointer {
  /**
   * Reads every event since the last checkpoint, checks each links to its case's chain (seq and
   * prevHash; content is re-hashed by audits, not here, to keep this cheap), and signs and
   * sinks one checkpoint (null when nothing is new). Concurrent calls share one run.
   * @throws GrantlineError `ERR_EVIDENCE` when the stream does not extend the previous checkpoint
   * (tampering below it); nothing is signed then.
   */
  run(): Promise<SignedCheckpoint | null>;
  /** Starts background checkpointing (timer plus the store's change feed); idempotent. */
  start(): { stop(): Promise<void> };
  /** Stops the background work and signs a final checkpoint of whatever is new. */
  stop(): Promise<void>;
  /** Position of the last checkpoint. */
  readonly upTo: number;
}

/**
 * Creates a checkpointer. Signing is never on the transition path: the background loop only counts
 * change notifications and signs when `everyChanges` or `intervalMs` is reached.
 */
export function createCheckpointer(options: CheckpointerOptions): Checkpointer {
  const { store, signer, sink } = options;
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? silentLogger;
  const pageSize = options.pageSize ?? 5_000;
  const everyChanges = options.everyChanges ?? 1_000;
  const intervalMs = options.intervalMs ?? 10_000;
  const heads = new Map<string, HeadCursor>();
  /**
   * The cursors of `heads` in ascending case id order, the digest's: merged with each run's new cases
   * instead of sorting every case at every checkpoint (which cost more than the rest of a checkpoint,
   * and a checkpoint runs every `everyChanges` transitions).
   */
  let order: HeadCursor[] = [];
  let upTo = 0;
  let events = 0;
  let loaded = false;
  let inflight: Promise<SignedCheckpoint | null> | undefined;
  let handle: { stop(): Promise<void> } | undefined;

  // `loaded` is set only once the last checkpoint verified: a refused resume is refused again on
  // every run, never skipped (which would sign a fresh stream that ignores the last checkpoint).
  const resume = async () => {
    const last = await sink.latest?.();
    if (!last) {
      loaded = true;
      return;
    }
    const v = await verifyCheckpoint(last, options.resumeKeys ?? createJwks(signer));
    if (!v.valid || !v.checkpoint) {
      throw new GrantlineError(
        ErrorCodes.EVIDENCE,
        `checkpointer: the latest checkpoint in the sink does not verify (${v.problems.map((p) => p.code).join(', ')})`,
        {
          details: { problems: v.problems },
        },
      );
    }
    upTo = v.checkpoint.upTo;
    events = v.checkpoint.events;
    const resumed: HeadCursor[] = [];
    for (const [id, [seq, hash]] of Object.entries(v.checkpoint.heads)) {
      const c = new HeadCursor(id);
      c.seq = seq;
      c.head = hash;
      heads.set(id, c);
      resumed.push(c);
    }
    order = mergeByCase([], resumed);
    loaded = true;
  };

  const once = async (): Promise<SignedCheckpoint | null> => {
    if (!loaded) await resume();
    let after = upTo;
    let count = 0;
    const pending = new Map<string, { seq: number; head: string }>();
    const fresh: HeadCursor[] = [];
    const problems: { caseId: string; code: string; seq: number }[] = [];
    try {
      for (;;) {
        const page: AuditEvent[] = await store.allEvents(after, pageSize);
        for (const e of page) {
          let c = heads.get(e.caseId);
          if (!c) {
            // Links only: the checkpoint attests (seq, hash) heads; content is re-hashed by every audit.
            c = new HeadCursor(e.caseId);
            heads.set(e.caseId, c);
            fresh.push(c);
          }
          if (!pending.has(e.caseId)) pending.set(e.caseId, { seq: c.seq, head: c.head });
          const found: ChainProblem[] = [];
          c.push(e, found);
          c.tuple = undefined; // the head moved
          for (const f of found) problems.push({ caseId: e.caseId, code: f.code, seq: f.seq });
          after = e.globalSeq ?? after;
          count += 1;
        }
        if (page.length < pageSize) break;
      }
      return await signAndSink(after, count, fresh, problems);
    } catch (err) {
      // Roll the cursors back to the last checkpoint: never sign over a stream that does not extend
      // it, and after a failed read, signature or sink, read the same events again next time.
      for (const [id, prev] of pending) {
        if (prev.seq === 0) heads.delete(id);
        else Object.assign(heads.get(id)!, prev, { tuple: undefined });
      }
      throw err;
    }
  };

  const signAndSink = async (
    after: number,
    count: number,
    fresh: HeadCursor[],
    problems: { caseId: string; code: string; seq: number }[],
  ): Promise<SignedCheckpoint | null> => {
    if (problems.length > 0) {
      logger.error('grantline: checkpoint refused, audit stream does not extend the last checkpoint', {
        problems: problems.slice(0, 20),
      });
      throw new GrantlineError(
        ErrorCodes.EVIDENCE,
        `checkpointer: ${problems.length} event(s) do not extend their case chains (first: case ${problems[0]!.caseId} seq ${problems[0]!.seq}, ${problems[0]!.code})`,
        {
          details: { problems: problems.slice(0, 100) },
        },
      );
    }
    if (count === 0) return null;
    const sorted = mergeByCase(order, fresh);
    const snapshot: CaseHeads = {};
    for (const c of sorted) snapshot[c.caseId] = (c.tuple ?? c.refresh()) as [number, string];
    Object.freeze(snapshot);
    sealedHeads.add(snapshot);
    const body: CheckpointBody = {
      format: CHECKPOINT_FORMAT,
      upTo: after,
      events: events + count,
      cases: heads.size,
      // headsDigest's lines, from each case's cached line (see HeadCursor).
      headsDigest: digestLines(sorted.length, (i) => sorted[i]!.line),
      at: clock.now().toISOString(),
      signer: { kid: signer.kid, alg: signer.alg },
    };
    const payload = canonicalJson(body);
    const sig = await signer.sign(payload, CHECKPOINT_TYP);
    const cp: SignedCheckpoint = {
      payload,
      protected: sig.protected,
      signature: sig.signature,
      heads: snapshot,
    };
    await sink.put(cp);
    order = sorted;
    upTo = after;
    events += count;
    return cp;
  };

  const run = (): Promise<SignedCheckpoint | null> => {
    if (!inflight) inflight = once().finally(() => (inflight = undefined));
    return inflight;
  };

  const start = () => {
    if (handle) return handle;
    let changes = 0;
    let scheduled = false;
    const kick = () => {
      if (scheduled) return;
      scheduled = true;
      // Never inside the committing call: the store notifies synchronously from its write.
      setImmediate(() => {
        scheduled = false;
        changes = 0;
        run().catch((err: unknown) =>
          logger.error('grantline: checkpoint failed', {
            error: err instanceof Error ? err.message : String(err),
          }),
        );
      });
    };
    const unsubscribe = store.onChange?.(() => {
      changes += 1;
      // A checkpoint costs O(cases) (the heads are sorted and hashed), so on a large store wait for
      // changes in proportion: the cost per event stays bounded; `intervalMs` still bounds the delay.
      if (changes >= everyChanges && changes >= heads.size / 2) kick();
    });
    const timer = setInterval(kick, intervalMs);
    timer.unref?.();
    const h = {
      async stop() {
        clearInterval(timer);
        unsubscribe?.();
        handle = undefined;
        await inflight?.catch(() => undefined);
        await run();
      },
    };
    handle = h;
    return h;
  };

  return {
    run,
    start,
    async stop() {
      await handle?.stop();
    },
    get upTo() {
      return upTo;
    },
  };
}
