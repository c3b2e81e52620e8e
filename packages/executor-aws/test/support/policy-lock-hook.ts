/**
 * Watches the executor's in-process policy locks (`src/policy-lock.ts`) through their state on
 * `globalThis`, without importing them: on code without the locks nothing ever queues, so a test
 * that waits for "the writer queued, or it went ahead" still runs there and shows the lost update.
 */
const STATE = Symbol.for('grantline.executor-aws.policy-locks');

interface LockState {
  locks: Map<string, unknown>;
  onQueued?: (key: string, count: number) => void;
}

function state(): LockState {
  const g = globalThis as { [STATE]?: LockState };
  g[STATE] ??= { locks: new Map() };
  return g[STATE];
}

/**
 * A promise that resolves once a second caller waits for a policy lock already held (a writer
 * that would have read a stale document is now held back). `stop()` removes the hook.
 */
export function secondWriterQueued(): { queued: Promise<void>; stop(): void } {
  const s = state();
  let resolve!: () => void;
  const queued = new Promise<void>((r) => {
    resolve = r;
  });
  s.onQueued = (_key, count) => {
    if (count >= 2) resolve();
  };
  return {
    queued,
    stop() {
      delete s.onQueued;
    },
  };
}

/** Keys held or waited for right now (empty when every writer is done). */
export function policyLocksHeld(): number {
  return state().locks.size;
}
