import { createGrantline } from '@grantline/core';
import { createMemoryStore } from '@grantline/store-memory';
import { afterEach, describe, expect, it } from 'vitest';
import { type KeyService, createApiKeyExecutor, keyWorks, startKeyService } from '../src/index.js';

// #region policy
const policy = {
  id: 'apikey-jit',
  version: '2026-12-03',
  owner: 'iam-governance',
  rules: [
    {
      id: 'reports-read',
      risk: 'medium' as const,
      match: { systems: ['apikey'], resources: ['https://api.example.com/reports'] },
      operator: 'platform-ops',
      maxDurationSeconds: 3600,
      approvals: { count: 1, roles: ['security-officer'] },
    },
  ],
};
// #endregion
const ci = { id: 'ci:nightly-report', kind: 'workload' as const, roles: ['reporter'] };
const alice = { id: 'alice', kind: 'human' as const, roles: ['engineer'], teams: ['data'] };
const sam = { id: 'sam', kind: 'human' as const, roles: ['security-officer'], teams: ['security'] };
const request = {
  requester: alice,
  subject: ci,
  justification: { reason: 'nightly revenue report' },
  targets: [
    {
      id: 'reports',
      system: 'apikey',
      resource: 'https://api.example.com/reports',
      params: { scopes: ['reports:read'] },
    },
  ],
  durationSeconds: 600,
};

let service: KeyService | undefined;
afterEach(async () => {
  await service?.close();
  service = undefined;
});

/** Sweeps until the case is verified (or the deadline passes); returns the number of passes. */
async function sweepUntilVerified(grantline: ReturnType<typeof createGrantline>, id: string) {
  const deadline = Date.now() + 10_000;
  let passes = 0;
  while ((await grantline.get(id)).state !== 'verified' && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 30));
    await grantline.sweep();
    passes++;
  }
  return passes;
}

describe('a case through createGrantline with the apikey executor', () => {
  it('request → approve → issue → complete → sweep → verified, on an eventually consistent service', async () => {
    service = await startKeyService({ mode: 'eventual', propagationMs: 300 }); // margin for a loaded CI machine
    // #region register
    // settleMs: 0 makes revoke return before the delete has propagated, so Grantline's own
    // verification retry is what sees the key disappear.
    const executor = createApiKeyExecutor({
      baseUrl: service.url,
      adminToken: service.adminToken,
      settleMs: 0,
    });
    const grantline = createGrantline({
      store: createMemoryStore(),
      policy,
      executors: [executor],
      retry: { baseMs: 20, maxMs: 100 },
    });
    // #endregion

    const c = await grantline.request(request);
    expect(c.state).toBe('requested');
    expect((await grantline.approve(c.id, { approver: sam, reason: 'report job reviewed' })).state).toBe(
      'approved',
    );
    const { grant, credentials } = await grantline.issue(c.id);
    expect(grant.state).toBe('issued');
    const apiKey = credentials.reports!.apiKey!;
    expect(await keyWorks(service.url, apiKey)).toBe(true);
    expect(JSON.stringify(await grantline.history(c.id))).not.toContain(apiKey);

    const completed = await grantline.complete(c.id, { actor: ci, reason: 'report done' });
    expect(completed.state).not.toBe('verified'); // the delete has not propagated yet
    expect(await keyWorks(service.url, apiKey)).toBe(true);

    await sweepUntilVerified(grantline, c.id);
    const done = await grantline.get(c.id);
    expect(done.state).toBe('verified');
    expect(done.revocation?.trigger).toBe('completion');
    expect(await keyWorks(service.url, apiKey)).toBe(false);

    const history = await grantline.history(c.id);
    const types = history.map((e) => e.type);
    for (const t of ['requested', 'approval', 'approved', 'target.issued', 'issued', 'revoked', 'verified']) {
      expect(types).toContain(t);
    }
    // Verification first saw the key still listed (deleting) and was retried until it was gone.
    const firstMiss = types.indexOf('target.verify-failed');
    expect(firstMiss).toBeGreaterThan(types.indexOf('revoked'));
    expect(types.indexOf('target.verified')).toBeGreaterThan(firstMiss);
    const verified = history.find((e) => e.type === 'target.verified')!;
    expect(verified.data).toMatchObject({
      method: expect.stringContaining('GET /keys'),
      observation: { listed: [] },
    });
    expect((await grantline.checkChain(c.id)).valid).toBe(true);
    await grantline.close();
  });

  it('a revoke that meets 503s stays revoking and is finished by the sweeper', async () => {
    service = await startKeyService({ mode: 'consistent' });
    const executor = createApiKeyExecutor({
      baseUrl: service.url,
      adminToken: service.adminToken,
      maxAttempts: 2,
    });
    const grantline = createGrantline({
      store: createMemoryStore(),
      policy,
      executors: [executor],
      retry: { baseMs: 20, maxMs: 100 },
    });
    const c = await grantline.request(request);
    await grantline.approve(c.id, { approver: sam });
    const { credentials } = await grantline.issue(c.id);

    // #region revoke-fails
    service.forceStatus(503);
    // complete does not throw: the case stays `revoking` and the failure is an audit event.
    const completed = await grantline.complete(c.id, { actor: ci, reason: 'report done' });
    expect(completed.state).toBe('revoking');
    expect(service.statusCounts[503]).toBeGreaterThanOrEqual(2);
    const failure = (await grantline.history(c.id)).find((e) => e.type === 'target.revoke-failed');
    expect(failure?.data).toMatchObject({
      error: { code: 'ERR_EXECUTOR', retryable: true },
      exhausted: false,
    });
    expect(await keyWorks(service.url, credentials.reports!.apiKey!)).toBe(true);

    service.forceStatus(null);
    await sweepUntilVerified(grantline, c.id);
    expect((await grantline.get(c.id)).state).toBe('verified');
    expect(await keyWorks(service.url, credentials.reports!.apiKey!)).toBe(false);
    // #endregion
    await grantline.close();
  });
});
