import type { JSONWebKeySet } from 'jose';
import { z } from 'zod';
import { type ChainProblem, canonicalJson } from './audit.js';
import { ChainCursor, sha256Text } from './chain-check.js';
import { ErrorCodes, GrantlineError } from './errors.js';
import type { AuditEvent } from './model.js';
import { type Clock, type GrantStore, type Logger, silentLogger, systemClock } from './ports.js';
import { type Signer, type SigningAlgorithm, createJwks, verifyDetached } from './signer.js';

/**
 * Format tag of a checkpoint's signed body. v2 lists the heads in stream order and digests them in
 * blocks, so that a checkpoint rehashes only the blocks whose cases moved (v1 sorted and rehashed
 * every case's head at every checkpoint).
 */
export const CHECKPOINT_FORMAT = 'grantline.checkpoint/v2';
/** `typ` of a checkpoint signature's protected header. */
export const CHECKPOINT_TYP = 'grantline-checkpoint+jws';
/** Heads per block of {@link headsDigest}: part of the v2 format. */
export const HEADS_BLOCK = 256;

/** A case's chain head in a checkpoint: `[caseId, seq, hash]` of its last event at or below the checkpoint. */
export type CaseHead = readonly [caseId: string, seq: number, hash: string];

/** The signed part of a checkpoint. */
export interface CheckpointBody {
  format: typeof CHECKPOINT_FORMAT;
  /** Every event with `globalSeq <= upTo` is covered. */
  upTo: number;
  /** How many events that is. */
  events: number;
  /** How many cases have events in it. */
  cases: number;
  /**
   * SHA-256 (hex) over the heads in their listed order, in blocks of {@link HEADS_BLOCK}: each block's
   * digest is the SHA-256 (hex) of its lines `JSON.stringify([caseId, seq, hash])` + "\n", and this is
   * the SHA-256 of the block digests, each followed by "\n" (see {@link headsDigest}).
   */
  headsDigest: string;
  at: string;
  signer: { kid: string; alg: SigningAlgorithm };
  /**
   * {@link checkpointDigest} of the checkpoint this one follows: absent on the first checkpoint of a
   * sink, and on the first of a checkpointer started with `fromScratch` over a sink without
   * `latest()`. {@link verifyCheckpointSuccession} checks it.
   */
  prev?: string;
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
  /**
   * One head per case, each case once. A checkpointer keeps the order of its previous checkpoint and
   * appends new cases in the order their first events come (from an empty sink: the order the cases
   * first appear in the stream), so the blocks of older, settled cases keep their digest; any order
   * verifies, since the digest binds the order given.
   */
  heads: readonly CaseHead[];
}

/** Where checkpoints go: a host keeps them outside the database (object storage with retention, a transparency log, another system). */
export interface CheckpointSink {
  /** Stores a checkpoint. Called in batches by the checkpointer, never per event. */
  put(checkpoint: SignedCheckpoint): Promise<void>;
  /**
   * The most recent checkpoint, so a restarted checkpointer continues from it (and refuses to sign a
   * stream that does not extend it). A sink without it needs {@link CheckpointerOptions.fromScratch}.
   */
  latest?(): Promise<SignedCheckpoint | null>;
}

/** An in-memory {@link CheckpointSink} for tests and single-process hosts. */
export interface MemoryCheckpointSink extends CheckpointSink {
  latest(): Promise<SignedCheckpoint | null>;
  /** Every checkpoint put, oldest first (frozen: the sink's own copies, never changed). */
  all(): readonly SignedCheckpoint[];
}

/**
 * Heads lists built by a checkpointer of this module: frozen, every entry a frozen head. Nothing can
 * change one, so the memory sink keeps it as it is instead of copying it per head (a store-wide
 * checkpoint holds a head per case). Only this module adds to it.
 */
const sealedHeads = new WeakSet<object>();

/**
 * Heads made by a checkpointer of this module: frozen arrays of three primitives. Only these are
 * shared by the memory sink; any other head is copied, since a frozen array of a caller's may still
 * hold a getter.
 */
const sealedHead = new WeakSet<object>();

/**
 * A frozen copy of a checkpoint: a copy per head, not a structured clone of the whole object. A head
 * that is already frozen (the checkpointer hands them out so) cannot change, so it is shared rather
 * than copied: successive checkpoints share the heads of the cases that did not move.
 */
function frozenCopy(cp: SignedCheckpoint): SignedCheckpoint {
  if (sealedHeads.has(cp.heads)) return Object.freeze({ ...cp }); // the checkpointer's own, frozen through
  const heads = cp.heads.map((h) =>
    sealedHead.has(h) ? h : (Object.freeze([h[0], h[1], h[2]]) as CaseHead),
  );
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

/** A head's line in {@link headsDigest}: `JSON.stringify([id, seq, hash])`, spelled out, and "\n". */
function headLine(id: string, seq: number, hash: string): string {
  return `[${JSON.stringify(id)},${JSON.stringify(seq)},${JSON.stringify(hash)}]\n`;
}

/** Digest of block `b` of `n` heads: SHA-256 (hex) of the lines `lineAt(b * HEADS_BLOCK)` onwards. */
function blockDigest(b: number, n: number, lineAt: (i: number) => string): string {
  let text = '';
  for (let i = b * HEADS_BLOCK, end = Math.min(n, i + HEADS_BLOCK); i < end; i++) text += lineAt(i);
  return sha256Text(text);
}

/** The digest of every block of `n` heads, in order. */
function blockDigests(n: number, lineAt: (i: number) => string): string[] {
  const out: string[] = [];
  for (let b = 0; b * HEADS_BLOCK < n; b++) out.push(blockDigest(b, n, lineAt));
  return out;
}

/** The top of {@link headsDigest}: SHA-256 (hex) of the block digests, each followed by "\n". */
function topDigest(blocks: readonly string[]): string {
  return sha256Text(blocks.length === 0 ? '' : `${blocks.join('\n')}\n`);
}

/** Digest binding the heads, in their order, to a checkpoint's signature (format v2; see {@link CheckpointBody}). */
export function headsDigest(heads: readonly CaseHead[]): string {
  const lineAt = (i: number) => {
    const [id, seq, hash] = heads[i]!;
    return headLine(id, seq, hash);
  };
  return topDigest(blockDigests(heads.length, lineAt));
}

/**
 * A case's chain cursor in the checkpointer, at its place in the stream order, with its head as last
 * signed: the frozen `[caseId, seq, hash]` of the heads list and its digest line. Both are rebuilt
 * only when the head moved, so a checkpoint costs nothing per case that did not move beyond one
 * pointer in the copied heads list.
 */
class HeadCursor extends ChainCursor {
  /** The head as signed, or undefined once the head moved (set back on every successful checkpoint and rollback). */
  tuple: CaseHead | undefined;
  line = '';

  /** @param pos the case's index in the heads list (the order its first event came in the stream). */
  constructor(
    caseId: string,
    readonly pos: number,
  ) {
    super(caseId, false); // links only: content is re-hashed by every audit
  }

  /** Back at `t`, its head as last signed (a failed run is rolled back). */
  restore(t: CaseHead): void {
    this.seq = t[1];
    this.head = t[2];
    this.tuple = t;
    this.line = headLine(this.caseId, t[1], t[2]);
  }

  /** Rebuilds the tuple and line of the current head. */
  refresh(): CaseHead {
    const t = Object.freeze([this.caseId, this.seq, this.head] as const);
    sealedHead.add(t);
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
  /** Case id → `[seq, hash]`, in the order the checkpoint lists them. */
  heads: ReadonlyMap<string, readonly [seq: number, hash: string]>;
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
  prev: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
});
const cpShape = z.strictObject({
  payload: z.string(),
  protected: z.string(),
  signature: z.string(),
  heads: z.custom<CaseHead[]>((v) => headsIssue(v) === undefined, {
    error: (iss) => `heads: ${headsIssue(iss.input) ?? 'malformed'}`,
  }),
});

/**
 * What is wrong with `heads` (an array of `[case id, positive integer seq, hash string]`), or
 * undefined; that each case is listed once is checked as verifyCheckpoint indexes them. By hand: a
 * store-wide checkpoint holds a head per case, and zod's array of tuples costs seconds at a million
 * cases.
 */
function headsIssue(v: unknown): string | undefined {
  if (!Array.isArray(v)) return 'must be an array of [caseId, seq, hash]';
  for (let i = 0; i < v.length; i++) {
    const h: unknown = v[i];
    if (
      !Array.isArray(h) ||
      h.length !== 3 ||
      typeof h[0] !== 'string' ||
      !Number.isSafeInteger(h[1]) ||
      (h[1] as number) <= 0 ||
      typeof h[2] !== 'string'
    ) {
      return `head ${i} must be [caseId, seq, hash]`;
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
  const malformed = (issue: string) => ({
    valid: false,
    problems: [
      {
        code: 'CHECKPOINT_MALFORMED' as const,
        message: `checkpoint must be { payload, protected, signature, heads }: ${issue}`,
      },
    ],
  });
  const shaped = cpShape.safeParse(checkpoint);
  if (!shaped.success) return malformed(shaped.error.issues[0]?.message ?? '');
  const cp = shaped.data as SignedCheckpoint;
  // Indexed once: the lookups of audits and evidence checks, each case once, and the event count.
  const heads = new Map<string, readonly [number, string]>();
  let events = 0;
  for (const [id, seq, hash] of cp.heads) {
    if (heads.has(id)) return malformed(`heads: case ${id} is listed twice`);
    heads.set(id, [seq, hash]);
    events += seq;
  }
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
  if (
    headsDigest(cp.heads) !== body.headsDigest ||
    heads.size !== body.cases ||
    !Number.isSafeInteger(events) || // a sum past 2^53 could round to the signed count
    events !== body.events
  ) {
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
    ...(valid && sig.ok ? { checkpoint: { ...body, heads, kid: sig.kid } } : {}),
  };
}

/** SHA-256 (hex) of a checkpoint's payload as signed: what the next checkpoint names as `prev`. */
export function checkpointDigest(checkpoint: Pick<SignedCheckpoint, 'payload'>): string {
  return sha256Text(checkpoint.payload);
}

/** A problem found between two checkpoints by {@link verifyCheckpointSuccession}. */
export interface SuccessionProblem {
  code:
    | 'CHECKPOINT_INVALID'
    | 'CHECKPOINT_NOT_SUCCESSOR'
    | 'CHECKPOINT_REGRESSED'
    | 'CHECKPOINT_CASE_DROPPED'
    | 'CHECKPOINT_HEAD_REWRITTEN';
  message: string;
  caseId?: string;
}

/**
 * Checks offline that `next` directly follows `previous`: both verify, `next.prev` is the digest of
 * `previous`, it covers at least as much of the stream, and every case `previous` attested is still
 * there, at the same head or further along (an equal seq with another hash is a rewrite). Checking
 * every pair of a sink's checkpoints in order shows a checkpoint removed from it, and a checkpointer
 * that started over (a sink without `latest()` and `fromScratch`) and attested a store changed below
 * the last checkpoint. Whether a moved head extends its chain needs the events: {@link auditStore}.
 */
export async function verifyCheckpointSuccession(
  previous: unknown,
  next: unknown,
  keys: JSONWebKeySet,
): Promise<{ valid: boolean; problems: SuccessionProblem[] }> {
  const problems: SuccessionProblem[] = [];
  const [a, b] = await Promise.all([verifyCheckpoint(previous, keys), verifyCheckpoint(next, keys)]);
  for (const [which, v] of [
    ['previous', a],
    ['next', b],
  ] as const) {
    if (!v.checkpoint)
      problems.push({
        code: 'CHECKPOINT_INVALID',
        message: `the ${which} checkpoint does not verify (${v.problems.map((p) => p.code).join(', ')})`,
      });
  }
  if (!a.checkpoint || !b.checkpoint) return { valid: false, problems };
  const prev = a.checkpoint;
  const cur = b.checkpoint;
  const digest = checkpointDigest(previous as SignedCheckpoint);
  if (cur.prev !== digest) {
    problems.push({
      code: 'CHECKPOINT_NOT_SUCCESSOR',
      message:
        cur.prev === undefined
          ? 'the next checkpoint names no previous checkpoint: its checkpointer started over'
          : 'the next checkpoint follows another checkpoint than the previous one given',
    });
  }
  if (cur.upTo < prev.upTo || cur.events < prev.events) {
    problems.push({
      code: 'CHECKPOINT_REGRESSED',
      message: `the next checkpoint covers less (up to ${cur.upTo}, ${cur.events} events) than the previous one (up to ${prev.upTo}, ${prev.events} events)`,
    });
  }
  for (const [id, [seq, hash]] of prev.heads) {
    const now = cur.heads.get(id);
    if (!now) {
      problems.push({
        code: 'CHECKPOINT_CASE_DROPPED',
        message: `case ${id} (head ${seq}) is missing from the next checkpoint`,
        caseId: id,
      });
    } else if (now[0] < seq || (now[0] === seq && now[1] !== hash)) {
      problems.push({
        code: 'CHECKPOINT_HEAD_REWRITTEN',
        message: `case ${id} was at seq ${seq} and is at seq ${now[0]}${now[0] === seq ? ' with another hash' : ''} in the next checkpoint`,
        caseId: id,
      });
    }
  }
  return { valid: problems.length === 0, problems };
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
   * half as many as there are cases, so that a checkpoint's copy of the heads list (a pointer per case,
   * kept by the sink) stays small per event.
   */
  everyChanges?: number;
  /** In the background, sign at least this often when anything changed, in ms (default 10,000). */
  intervalMs?: number;
  /** Keys a resumed checkpoint may be signed with (default: the signer's own key). Include retired keys after a rotation. */
  resumeKeys?: JSONWebKeySet;
  /**
   * Accepts a sink without `latest()` (default false: such a sink is refused with `ERR_VALIDATION`).
   * Without `latest()` every new checkpointer, so every restart, starts from global sequence 0 and
   * signs the store as it is then: a case deleted or a tail truncated since the last checkpoint is
   * attested, not refused. Only for a sink that starts empty each time by design (a one-off audit
   * run, tests), or when the host compares each checkpoint with the previous one itself. No effect
   * on a sink with `latest()`, which is always resumed from.
   */
  fromScratch?: boolean;
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
 * @throws GrantlineError `ERR_VALIDATION` when the sink has no `latest()` and `fromScratch` is not set.
 */
export function createCheckpointer(options: CheckpointerOptions): Checkpointer {
  const { store, signer, sink } = options;
  if (typeof sink?.latest !== 'function' && options.fromScratch !== true) {
    throw new GrantlineError(
      ErrorCodes.VALIDATION,
      'checkpointer: the sink has no latest(), so a restarted checkpointer would sign the store as it then is, ignoring the last checkpoint; give the sink latest(), or pass fromScratch: true if that is meant',
      {
        details: { where: 'createCheckpointer', path: ['sink', 'latest'] },
      },
    );
  }
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? silentLogger;
  const pageSize = options.pageSize ?? 5_000;
  const everyChanges = options.everyChanges ?? 1_000;
  const intervalMs = options.intervalMs ?? 10_000;
  const heads = new Map<string, HeadCursor>();
  /** The cursors of `heads` in stream order (the order of the last signed heads list); new cases go to the end. */
  let order: HeadCursor[] = [];
  /** The last signed heads list (frozen): the next one is a copy with the moved heads replaced. */
  let signedHeads: readonly CaseHead[] = Object.freeze([]);
  /** Digest of each block of `order` as last signed ({@link headsDigest}). */
  let blocks: string[] = [];
  let upTo = 0;
  let events = 0;
  /** Digest of the last checkpoint signed or resumed from: the next one's `prev`. */
  let prev: string | undefined;
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
    prev = checkpointDigest(last);
    // In the checkpoint's order, with heads of our own (the sink's objects are not ours to keep).
    for (const [id, [seq, hash]] of v.checkpoint.heads) {
      const c = new HeadCursor(id, order.length);
      c.seq = seq;
      c.head = hash;
      c.refresh();
      heads.set(id, c);
      order.push(c);
    }
    signedHeads = Object.freeze(order.map((c) => c.tuple!));
    blocks = blockDigests(order.length, (i) => order[i]!.line);
    loaded = true;
  };

  const once = async (): Promise<SignedCheckpoint | null> => {
    if (!loaded) await resume();
    let after = upTo;
    let count = 0;
    const fresh: HeadCursor[] = [];
    /** Signed cursors whose head moved in this run. */
    const moved = new Set<HeadCursor>();
    /** Blocks holding a head that moved or a new case. */
    const dirty = new Set<number>();
    const problems: { caseId: string; code: string; seq: number }[] = [];
    const found: ChainProblem[] = [];
    try {
      for (;;) {
        const page: AuditEvent[] = await store.allEvents(after, pageSize);
        for (const e of page) {
          let c = heads.get(e.caseId);
          if (!c) {
            // Links only: the checkpoint attests (seq, hash) heads; content is re-hashed by every audit.
            c = new HeadCursor(e.caseId, order.length + fresh.length);
            heads.set(e.caseId, c);
            fresh.push(c);
            dirty.add(Math.floor(c.pos / HEADS_BLOCK));
          } else if (c.tuple !== undefined) {
            // A signed case's first event in this run (every signed cursor starts a run at its signed head).
            moved.add(c);
            dirty.add(Math.floor(c.pos / HEADS_BLOCK));
          }
          c.push(e, found);
          c.tuple = undefined; // the head moved
          for (const f of found) problems.push({ caseId: e.caseId, code: f.code, seq: f.seq });
          found.length = 0;
          after = e.globalSeq ?? after;
          count += 1;
        }
        if (page.length < pageSize) break;
      }
      return await signAndSink(after, count, fresh, moved, dirty, problems);
    } catch (err) {
      // Roll the cursors back to the last checkpoint: never sign over a stream that does not extend
      // it, and after a failed read, signature or sink, read the same events again next time. Every
      // signed cursor is then at its signed head again, line included, and `blocks` holds the digests
      // of exactly `order`: the next run starts from the last checkpoint's state, whatever it reads.
      for (const c of fresh) heads.delete(c.caseId);
      for (const c of moved) c.restore(signedHeads[c.pos]!);
      throw err;
    }
  };

  const signAndSink = async (
    after: number,
    count: number,
    fresh: HeadCursor[],
    moved: ReadonlySet<HeadCursor>,
    dirty: ReadonlySet<number>,
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
    const all = fresh.length === 0 ? order : order.concat(fresh);
    // The heads list: the last one with the moved heads replaced and the new cases appended (one
    // pointer copy per case), and only the blocks holding a moved or new head rehashed.
    const list = signedHeads.slice() as CaseHead[];
    for (const c of moved) list[c.pos] = c.refresh();
    for (const c of fresh) list[c.pos] = c.refresh();
    Object.freeze(list);
    sealedHeads.add(list);
    // Every head that moved in this run was refreshed just above; every other line is as signed.
    const nextBlocks = blocks.slice();
    for (const b of dirty) nextBlocks[b] = blockDigest(b, all.length, (i) => all[i]!.line);
    const body: CheckpointBody = {
      format: CHECKPOINT_FORMAT,
      upTo: after,
      events: events + count,
      cases: all.length,
      headsDigest: topDigest(nextBlocks),
      at: clock.now().toISOString(),
      signer: { kid: signer.kid, alg: signer.alg },
      ...(prev !== undefined ? { prev } : {}),
    };
    const payload = canonicalJson(body);
    const sig = await signer.sign(payload, CHECKPOINT_TYP);
    const cp: SignedCheckpoint = {
      payload,
      protected: sig.protected,
      signature: sig.signature,
      heads: list,
    };
    await sink.put(cp);
    order = all;
    signedHeads = list;
    blocks = nextBlocks;
    upTo = after;
    events += count;
    prev = checkpointDigest(cp);
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
      // A checkpoint still copies the heads list (a pointer per case) and the sink keeps it, so on a
      // large store wait for changes in proportion: the cost and the space per event stay bounded;
      // `intervalMs` still bounds the delay.
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
