import type { GrantStore, Grantline, SweepResult } from '@grantline/core';
import { type Queryable, createPostgresStore, migrate } from '@grantline/store-postgres';

/**
 * One sweeper run for a scheduler (cron, a Kubernetes CronJob), where no instance runs the
 * background sweeper, or as a backstop beside them. `build` makes the same service the instances
 * run (policy, executors, signer). Safe while instances sweep: claims lease rows with
 * `FOR UPDATE SKIP LOCKED`, so a case is never worked twice at once.
 */
export async function runScheduledSweep(options: {
  db: Queryable;
  schema?: string;
  build: (store: GrantStore) => Grantline;
  limit?: number;
  /** Sign a checkpoint after the sweep (the service must be built with `signer` and `checkpoints`). */
  checkpoint?: boolean;
}): Promise<SweepResult> {
  const limit = options.limit ?? 500;
  await migrate(options.db, { schema: options.schema }); // a no-op when the schema is current
  // No `listen`: a one-shot run needs no wake-ups.
  const store = createPostgresStore({ db: options.db, schema: options.schema });
  const grantline = options.build(store);
  const total: SweepResult = {
    claimed: 0,
    expired: 0,
    revoked: 0,
    verified: 0,
    failed: 0,
    retried: 0,
    rolledBack: 0,
    overdueReviews: 0,
    errors: 0,
    deferred: 0,
  };
  try {
    // A full batch means more may be due now; a short one means everything due was claimed.
    for (let pass = 0; pass < 100; pass++) {
      const r = await grantline.sweep({ limit });
      for (const k of Object.keys(total) as (keyof SweepResult)[]) total[k] += r[k];
      if (r.claimed < limit) break;
    }
    await grantline.pollTickets(); // the background sweeper does this too; a no-op without `tickets`
    // The background sweeper also signs checkpoints; a scheduled run signs one itself.
    if (options.checkpoint) await grantline.checkpoint(); // needs `signer` and `checkpoints`
  } finally {
    await grantline.close();
    await store.close(); // the db is the caller's to end
  }
  return total;
}
