import { PGlite } from '@electric-sql/pglite';
import { createPostgresStore, migrate } from '../src/index.js';
import { describeContract } from './contract.js';

// The embedded path: PGlite is PostgreSQL compiled to WebAssembly, in this process. No server needed.
describeContract('PGlite', async () => {
  const db = new PGlite();
  const schema = 'grantline';
  await migrate(db, { schema });
  const stores = [createPostgresStore({ db, schema })];
  return {
    store: stores[0]!,
    schema,
    raw: async (sql, values) => (await db.query(sql, values)).rows as Record<string, unknown>[],
    other: () => {
      const s = createPostgresStore({ db, schema });
      stores.push(s);
      return s;
    },
    teardown: async () => {
      for (const s of stores) await s.close();
      await db.close();
    },
  };
});
