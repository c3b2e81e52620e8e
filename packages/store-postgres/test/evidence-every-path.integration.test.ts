// The every-path evidence scenarios (core's every-path-scenarios.ts) on a real PostgreSQL server:
// records and events round-trip through jsonb and the sweeper takes the grouped compareAndSetMany
// path, and the evidence must still verify. A fresh schema per test, dropped afterwards.
import type pg from 'pg';
import { afterAll, beforeAll, describe } from 'vitest';
import { describeEveryPath } from '../../core/test/every-path-scenarios.js';
import { createPostgresStore, migrate } from '../src/index.js';
import { freshSchema, pgAvailable, testPool } from './helpers.js';

let pool: pg.Pool | undefined;
const skip = await pgAvailable();

describe.skipIf(skip !== null)('every-path evidence on PostgreSQL', () => {
  beforeAll(() => {
    pool = testPool(8);
  });
  afterAll(async () => {
    await pool?.end();
  });
  describeEveryPath('store-postgres on PostgreSQL', async () => {
    const schema = freshSchema('evid');
    await migrate(pool!, { schema });
    const store = createPostgresStore({ db: pool!, schema });
    return {
      store,
      async close() {
        await store.close();
        await pool!.query(`DROP SCHEMA "${schema}" CASCADE`);
      },
    };
  });
});
