import { describeStoreConformance } from '@grantline/core/testing';
import type pg from 'pg';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { type PostgresStore, createPostgresStore, migrate } from '../src/index.js';
import { freshSchema, pgAvailable, testPool } from './helpers.js';

// The shared conformance kit on a real server: a fresh schema per test, dropped afterwards.
let pool: pg.Pool | undefined;
const skip = await pgAvailable();

describe.skipIf(skip !== null)('kit on PostgreSQL', () => {
  beforeAll(() => {
    pool = testPool(8);
  });
  afterAll(async () => {
    await pool?.end();
  });
  describeStoreConformance(
    { describe, it },
    {
      name: 'store-postgres on PostgreSQL',
      async create() {
        const schema = freshSchema('kit');
        await migrate(pool!, { schema });
        return createPostgresStore({ db: pool!, schema });
      },
      async destroy(store) {
        await store.close();
        await pool!.query(`DROP SCHEMA "${(store as PostgresStore).schema}" CASCADE`);
      },
    },
  );
});
