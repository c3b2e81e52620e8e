/** One graphile-worker process with a no-op task, for the drain comparison (see drain.ts). */
import { run } from 'graphile-worker';

const runner = await run({
  connectionString: process.env.PG_URL!,
  concurrency: Number(process.env.CONCURRENCY ?? 8),
  // Graphile's default is 2 s; 100 ms keeps its pick-up delay from dominating the comparison.
  pollInterval: 100,
  noHandleSignals: true,
  logger: undefined,
  taskList: { noop: async () => {} },
});
process.send?.({ ready: true });
process.on('SIGTERM', async () => {
  await runner.stop();
  process.exit(0);
});
