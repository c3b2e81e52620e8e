import { createPostgresStore, migrate } from '../src/index.js';
import { freshSchema, pgAvailable, testPool } from './helpers.js';
import { describeInjection } from './injection.js';

describeInjection('PostgreSQL', async () => {
  if (await pgAvailable()) return null;
  const pool = testPool(4);
  const schema = freshSchema('inj');
  await migrate(pool, { schema });
  const store = createPostgresStore({ db: pool, schema });
  return {
    store,
    tableCount: async () =>
      Number(
        (await pool.query(`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = $1`, [schema])).rows[0]
          .n,
      ),
    done: async () => {
      await store.close();
      await pool.query(`DROP SCHEMA "${schema}" CASCADE`);
      await pool.end();
    },
  };
});
