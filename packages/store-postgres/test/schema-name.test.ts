import assert from 'node:assert/strict';
import { PGlite } from '@electric-sql/pglite';
import { ErrorCodes, isGrantlineError } from '@grantline/core';
import { describe, it } from 'vitest';
import { createPostgresStore, migrate } from '../src/index.js';
import { makeEvents, makeGrant } from './helpers.js';

const isValidation = (e: unknown) => isGrantlineError(e) && e.code === ErrorCodes.VALIDATION;

describe('schema names and the NOTIFY channel', () => {
  it('refuses names of 54-63 characters, whose channel "grantline:<schema>" would exceed 63 bytes', async () => {
    const db = new PGlite();
    try {
      for (let n = 54; n <= 63; n++) {
        const schema = `s${'x'.repeat(n - 1)}`;
        await assert.rejects(migrate(db, { schema }), isValidation, `migrate accepted ${n} characters`);
        assert.throws(
          () => createPostgresStore({ db, schema }),
          isValidation,
          `store accepted ${n} characters`,
        );
      }
      const created = await db.query(
        `SELECT count(*)::int AS n FROM pg_namespace WHERE nspname LIKE 'sxxx%'`,
      );
      assert.equal((created.rows[0] as { n: number }).n, 0, 'no schema was created');
    } finally {
      await db.close();
    }
  });

  it('the longest accepted name (53 characters) migrates and takes a write that makes a case due soon', async () => {
    const db = new PGlite();
    const schema = `s${'x'.repeat(52)}`;
    try {
      await migrate(db, { schema });
      const store = createPostgresStore({ db, schema });
      // Due within 60 s: the trigger runs pg_notify on a channel of exactly 63 bytes.
      const g = makeGrant('due-soon', { dueAt: new Date(Date.now() + 5_000).toISOString() });
      assert.equal((await store.create(g, makeEvents(g.id, undefined, ['requested']))).created, true);
      assert.equal(Buffer.byteLength(`grantline:${schema}`), 63);
      await store.close();
    } finally {
      await db.close();
    }
  });
});
