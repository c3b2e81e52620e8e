import { PGlite } from '@electric-sql/pglite';
import {
  createGrantline,
  createJoseSigner,
  createMemoryCheckpointSink,
  generateSigningKey,
} from '@grantline/core';
import { describe, expect, it } from 'vitest';
import { runScheduledSweep } from '../examples/scheduled-sweep.js';
import { createPostgresStore, migrate } from '../src/index.js';
import { createCountingExecutor, requestFor, testPolicy } from './fixtures/grantline.js';

describe('the scheduled sweep recipe (docs/operations.md)', () => {
  it('drains every due case in full batches, then signs a checkpoint', async () => {
    const db = new PGlite();
    let t = Date.parse('2026-06-01T08:00:00.000Z');
    const clock = { now: () => new Date(t) };
    const executor = createCountingExecutor();
    const signer = await createJoseSigner({ privateJwk: (await generateSigningKey()).privateJwk });
    const sink = createMemoryCheckpointSink();
    await migrate(db);
    const seeding = createPostgresStore({ db });
    const gl = createGrantline({ store: seeding, policy: testPolicy, executors: [executor], clock });
    for (let i = 0; i < 5; i++) await gl.issue((await gl.request(requestFor(i, 60))).id);
    await seeding.close();
    expect(executor.live.size).toBe(5);

    t += 61_000;
    const result = await runScheduledSweep({
      db,
      limit: 2,
      checkpoint: true,
      build: (store) =>
        createGrantline({
          store,
          policy: testPolicy,
          executors: [executor],
          clock,
          signer,
          checkpoints: { sink },
        }),
    });
    expect(result).toMatchObject({ claimed: 5, revoked: 5, verified: 5, errors: 0 });
    expect(executor.live.size).toBe(0);
    expect(sink.all()).toHaveLength(1);
    await db.close();
  });
});
