/** Credentials of one issued session, held in process memory only. */
export interface HeldCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  expiresAt: Date;
  /** How the issue-time probe went: only an accepted baseline makes a later rejection meaningful. */
  baseline: 'accepted' | 'denied' | 'skipped';
}

/**
 * What this process issued, per case and target, until it is verified gone or expired.
 *
 * Why it exists: verification of an assumed-role session is strongest as a signed probe with the
 * very credentials that were revoked, and Grantline never stores secrets. So the executor keeps them
 * here — in memory, never logged or persisted, dropped once the removal is verified or the session
 * has expired — and falls back to checking the Deny policy's state after a restart.
 */
export class SessionMemory {
  private readonly entries = new Map<string, HeldCredentials[]>();

  constructor(private readonly now: () => Date) {}

  add(key: string, creds: HeldCredentials): void {
    this.prune();
    const list = this.entries.get(key) ?? [];
    list.push(creds);
    this.entries.set(key, list);
  }

  /** Live (unexpired) credentials held for `key`. */
  get(key: string): HeldCredentials[] {
    this.prune();
    return [...(this.entries.get(key) ?? [])];
  }

  /** True when this process issued something for `key` that has not expired or been forgotten. */
  has(key: string): boolean {
    return this.get(key).length > 0;
  }

  /** Latest expiry of what is held for `key`, or undefined. */
  latestExpiry(key: string): Date | undefined {
    const list = this.get(key);
    if (list.length === 0) return undefined;
    return new Date(Math.max(...list.map((c) => c.expiresAt.getTime())));
  }

  forget(key: string): void {
    this.entries.delete(key);
  }

  private prune(): void {
    const t = this.now().getTime();
    for (const [k, list] of this.entries) {
      const live = list.filter((c) => c.expiresAt.getTime() > t);
      if (live.length === 0) this.entries.delete(k);
      else if (live.length !== list.length) this.entries.set(k, live);
    }
  }
}
