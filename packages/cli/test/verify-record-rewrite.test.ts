import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Grant,
  type Principal,
  createGrantline,
  createJoseSigner,
  createJwks,
  createTokenAuthority,
  generateSigningKey,
} from '@grantline/core';
import { createMemoryStore } from '@grantline/store-memory';
import { it } from 'vitest';
import { runCli } from '../src/index.js';

const alice: Principal = { id: 'alice', kind: 'human', roles: ['developer'], teams: [] };
const bob: Principal = { id: 'bob', kind: 'human', roles: ['sre-lead'], teams: [] };
const job: Principal = { id: 'ci-job', kind: 'workload', roles: [], teams: [] };

it('grantline verify: a case row rewritten in the database is reported and exits 1', async () => {
  const store = createMemoryStore();
  const tokens = await createTokenAuthority({ issuer: 'https://grantline.test' });
  const signer = await createJoseSigner({ privateJwk: (await generateSigningKey()).privateJwk });
  const gl = createGrantline({
    store,
    signer,
    executors: [tokens.executor],
    policy: {
      id: 'p',
      version: '1',
      owner: 'sec',
      rules: [
        {
          id: 'r',
          risk: 'medium',
          match: { systems: ['token'] },
          operator: 'ops',
          maxDurationSeconds: 3600,
          approvals: { count: 1, roles: ['sre-lead'] },
        },
      ],
    },
  });
  const c = await gl.request({
    requester: alice,
    subject: job,
    justification: { reason: 'deploy' },
    targets: [{ id: 'api', system: 'token', resource: 'api://prod' }],
    durationSeconds: 600,
  });
  await gl.approve(c.id, { approver: bob });
  await gl.issue(c.id);
  await gl.revoke(c.id, { actor: alice, reason: 'done' });
  // UPDATE of the case row only (no event touched, no key needed).
  const g = structuredClone(await store.get(c.id)) as Grant & { revocation: Record<string, unknown> };
  g.revocation.actor = { id: 'mallory', kind: 'human' };
  g.revocation.trigger = 'violation';
  g.revocation.reason = 'caught by detector';
  await store.compareAndSet({ ...g, version: g.version + 1 }, g.version, []);

  const dir = await mkdtemp(join(tmpdir(), 'gl-rewrite-'));
  await writeFile(join(dir, 'b.json'), JSON.stringify(await gl.evidence(c.id)));
  await writeFile(join(dir, 'k.json'), JSON.stringify(createJwks(signer)));
  let out = '';
  const code = await runCli(['verify', join(dir, 'b.json'), '--jwks', join(dir, 'k.json')], {
    out: (t) => (out += t),
    err: (t) => (out += t),
  });
  // The report retells the record as signed, but the signed events say alice revoked it manually
  // ('done'): the disagreement is listed and the verdict is not valid.
  assert.match(out, /Revoked {4}by mallory \(violation: caught by detector\)/);
  assert.match(out, /RECORD_REVOCATION_MISMATCH/);
  assert.equal(code, 1, out);
});
