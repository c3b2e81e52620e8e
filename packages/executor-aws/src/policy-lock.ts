/**
 * A keyed async mutex for the read-modify-write of one shared inline policy (a role's
 * `grantline-deny`, a permission set's inline policy). IAM and Identity Center have no
 * compare-and-set, so two writers in one process that read the same document would each write
 * their own version and one entry would be lost; under this lock they take turns.
 *
 * Why module-level and on `globalThis`: every executor instance of the process (and a second copy
 * of this package, if the host bundles two) must share it, since they all write to the same
 * policies. An entry lives only while someone holds or waits for its key.
 *
 * Across processes it cannot help: there, verify observes the policy and reports a lost entry.
 */
interface LockEntry {
  tail: Promise<void>;
  /** Callers holding or waiting for the key. */
  count: number;
}

interface LockState {
  locks: Map<string, LockEntry>;
  /** Test hook: called with the key and the number of callers holding or waiting, as one queues. */
  onQueued?: (key: string, count: number) => void;
}

const STATE = Symbol.for('grantline.executor-aws.policy-locks');

function state(): LockState {
  const g = globalThis as { [STATE]?: LockState };
  g[STATE] ??= { locks: new Map() };
  return g[STATE];
}

/** Runs `fn` once every earlier caller with the same `key` has finished (in arrival order). */
export async function withPolicyLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const s = state();
  let entry = s.locks.get(key);
  if (!entry) {
    entry = { tail: Promise.resolve(), count: 0 };
    s.locks.set(key, entry);
  }
  const prev = entry.tail;
  let release!: () => void;
  entry.tail = new Promise<void>((r) => {
    release = r;
  });
  entry.count++;
  const mine = entry;
  try {
    s.onQueued?.(key, mine.count);
    await prev;
    return await fn();
  } finally {
    release();
    if (--mine.count === 0 && s.locks.get(key) === mine) s.locks.delete(key);
  }
}

/** How many policy keys are held or waited for right now (0 when idle). */
export function policyLocksInUse(): number {
  return state().locks.size;
}

/** Lock key of a role's Deny policy. */
export const roleLockKey = (roleArn: string) => `iam-role|${roleArn}`;
/** Lock key of a permission set's inline policy. */
export const permissionSetLockKey = (instanceArn: string, permissionSetArn: string) =>
  `sso-permission-set|${instanceArn}|${permissionSetArn}`;
