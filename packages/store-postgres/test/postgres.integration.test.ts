import type pg from 'pg';
import { createPostgresStore, migrate } from '../src/index.js';
import { describeContract } from './contract.js';
import { freshSchema, pgAvailable, testPool } from './helpers.js';

describeContract('PostgreSQL (pg.Pool)', async () => {
  if (await pgAvailable()) return null;
  const pool: pg.Pool = testPool(8);
  const schema = freshSchema('contract');
  await migrate(pool, { schema });
  const stores = [createPostgresStore({ db: pool, schema })];
  return {
    store: stores[0]!,
    schema,
    raw: async (sql, values) => (await pool.query(sql, values)).rows,
    other: () => {
      const s = createPostgresStore({ db: pool, schema });
      stores.push(s);
      return s;
    },
    teardown: async () => {
      for (const s of stores) await s.close();
      await pool.query(`DROP SCHEMA "${schema}" CASCADE`);
      await pool.end();
    },
  };
});
