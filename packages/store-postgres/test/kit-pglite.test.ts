import { PGlite } from '@electric-sql/pglite';
import { describeStoreConformance } from '@grantline/core/testing';
import { afterAll, describe, it } from 'vitest';
import { type PostgresStore, createPostgresStore, migrate } from '../src/index.js';
import { freshSchema } from './helpers.js';

// The shared conformance kit on the embedded path. Starting PGlite takes seconds, so the tests
// share one instance and each gets a fresh, empty schema.
const db = new PGlite();
afterAll(async () => {
  await db.close();
});

describeStoreConformance(
  { describe, it },
  {
    name: 'store-postgres on PGlite',
    async create() {
      const schema = freshSchema('kit');
      await migrate(db, { schema });
      return createPostgresStore({ db, schema });
    },
    async destroy(store) {
      await store.close();
      await db.exec(`DROP SCHEMA "${(store as PostgresStore).schema}" CASCADE`);
    },
  },
);
