/**
 * An isolated expiry: one case issued with a 1 s window while a sweeper process sleeps; the lag from
 * its expiry to `revoked`, as recorded by core (`revocation.lagToRevokedMs`). The sweeper learns of
 * the new due time by NOTIFY and sleeps until it.
 */
import { createGrantline } from '@grantline/core';
import { createPostgresStore, migrate } from '../../packages/store-postgres/src/index.js';
import {
  createCountingExecutor,
  requestFor,
  testPolicy,
} from '../../packages/store-postgres/test/fixtures/grantline.js';
import { PG_URL, forkTs, pct, pool, sleep, stopAll, waitReady } from './common.js';

const SAMPLES = Number(process.env.BENCH_ISOLATED ?? 20);

export async function benchIsolated(): Promise<{ samples: number; p50: number; p99: number; max: number }> {
  const db = pool(4);
  const schema = 'bench_iso';
  await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await migrate(db, { schema });
  const child = forkTs('../../packages/store-postgres/test/fixtures/sweeper-worker.ts', {
    PG_URL,
    SCHEMA: schema,
    INSTANCE: 'iso',
    EXECUTOR: 'noop',
    LIMIT: '100',
    LEASE_MS: '30000',
  });
  await waitReady([child]);
  await sleep(500); // let the worker's LISTEN connection open
  const store = createPostgresStore({ db, schema });
  const gl = createGrantline({ store, policy: testPolicy, executors: [createCountingExecutor()] });
  const lags: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    const g = await gl.request(requestFor(i, 1));
    await gl.issue(g.id);
    for (;;) {
      await sleep(50);
      const cur = await store.get(g.id);
      if (cur?.revocation?.lagToRevokedMs !== undefined) {
        lags.push(cur.revocation.lagToRevokedMs);
        break;
      }
    }
    await sleep(Math.random() * 300);
  }
  await stopAll([child]);
  await store.close();
  await db.query(`DROP SCHEMA ${schema} CASCADE`);
  await db.end();
  return { samples: lags.length, p50: pct(lags, 50), p99: pct(lags, 99), max: Math.max(...lags) };
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await benchIsolated());
