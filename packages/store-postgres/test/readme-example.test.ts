import assert from 'node:assert/strict';
import { PGlite } from '@electric-sql/pglite';
import { createGrantline } from '@grantline/core';
import { it } from 'vitest';
import { createPostgresStore, migrate } from '../src/index.js';
import { createCountingExecutor, requestFor, testPolicy } from './fixtures/grantline.js';

it('README: migrate, create the store, run Grantline on it', async () => {
  // With a server: `const db = new pg.Pool({ connectionString })`, and `listen: connectionString`.
  const db = new PGlite();
  await migrate(db); // idempotent; safe when many instances start at once
  const store = createPostgresStore({ db });
  const gl = createGrantline({ store, policy: testPolicy, executors: [createCountingExecutor()] });

  const g = await gl.request(requestFor(1, 600));
  await gl.issue(g.id);
  const revoked = await gl.revoke(g.id, { actor: g.requester, reason: 'done' });
  assert.equal(revoked.state, 'verified');
  assert.equal((await gl.history(g.id)).at(-1)?.type, 'verified');

  await store.close(); // the db is yours to close
  await db.close();
});
