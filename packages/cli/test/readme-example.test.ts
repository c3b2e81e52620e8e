import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createGrantline,
  createJoseSigner,
  createJwks,
  createTokenAuthority,
  generateSigningKey,
} from '@grantline/core';
import { createMemoryStore } from '@grantline/store-memory';
import { it } from 'vitest';
import { runCli } from '../src/index.js';

it('README: export a bundle and the public keys, then verify them as an auditor would', async () => {
  // The producing side: any Grantline service with a signer.
  const signer = await createJoseSigner({ privateJwk: (await generateSigningKey()).privateJwk });
  const tokens = await createTokenAuthority({ issuer: 'https://grantline.example' });
  const gl = createGrantline({
    store: createMemoryStore(),
    executors: [tokens.executor],
    signer,
    policy: {
      id: 'cli-readme',
      version: '1',
      owner: 'iam-governance',
      rules: [
        {
          id: 'any',
          risk: 'low',
          template: 'auto',
          match: { systems: ['token'], resources: ['api://orders'], permissions: ['orders:export'] },
          operator: 'ops',
          maxDurationSeconds: 600,
          approvals: { count: 0, roles: [] },
        },
      ],
    },
  });
  const job = { id: 'ci:export', kind: 'workload' as const, roles: [] };
  const c = await gl.request({
    requester: job,
    subject: job,
    justification: { reason: 'nightly export' },
    targets: [{ id: 'api', system: 'token', resource: 'api://orders', permissions: ['orders:export'] }],
    durationSeconds: 300,
    template: 'auto',
  });
  await gl.issue(c.id);
  await gl.complete(c.id, { actor: job, reason: 'export written' });

  // What the auditor receives: the bundle as produced, and the public JWKS (no private key).
  const dir = await mkdtemp(join(tmpdir(), 'grantline-readme-'));
  await writeFile(join(dir, 'bundle.json'), JSON.stringify(await gl.evidence(c.id)));
  await writeFile(join(dir, 'keys.json'), JSON.stringify(createJwks(signer)));

  // `grantline verify bundle.json --jwks keys.json --json`, here in-process.
  let out = '';
  const code = await runCli(
    ['verify', join(dir, 'bundle.json'), '--jwks', join(dir, 'keys.json'), '--json'],
    { out: (t) => (out += t), err: (t) => (out += t) },
  );
  assert.equal(code, 0);
  const verdict = JSON.parse(out);
  assert.equal(verdict.valid, true);
  assert.equal(verdict.kid, signer.kid);
  assert.equal(verdict.caseId, c.id);
  assert.equal(verdict.state, 'verified');
  assert.deepEqual(verdict.problems, []);
});
