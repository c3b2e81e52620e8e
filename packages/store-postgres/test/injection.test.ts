import { PGlite } from '@electric-sql/pglite';
import { createPostgresStore, migrate } from '../src/index.js';
import { describeInjection } from './injection.js';

describeInjection('PGlite', async () => {
  const db = new PGlite();
  await migrate(db);
  const store = createPostgresStore({ db });
  return {
    store,
    tableCount: async () =>
      Number(
        (
          await db.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'grantline'`,
          )
        ).rows[0]!.n,
      ),
    done: async () => {
      await store.close();
      await db.close();
    },
  };
});
