import { createGrantline, isGrantlineError } from '@grantline/core';
import { makeGrant } from '@grantline/core/testing';
import { createMemoryStore } from '@grantline/store-memory';
import { afterEach, describe, expect, it } from 'vitest';
import { type KeyService, createApiKeyExecutor, keyWorks, startKeyService } from '../src/index.js';

const target = {
  id: 'reports-api',
  system: 'apikey',
  resource: 'https://api.example.com/reports',
  params: { scopes: ['reports:read'] },
};

function issueCtx() {
  const { grant } = makeGrant({ state: 'issuing' });
  const now = new Date();
  return {
    grant: {
      ...grant,
      targets: [target],
      window: { ...grant.window, expiresAt: new Date(now.getTime() + 60_000).toISOString() },
    },
    target,
    now,
  };
}

async function errorOf(p: Promise<unknown>) {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isGrantlineError(err)) throw new Error(`expected a GrantlineError, got ${String(err)}`);
  return err;
}

const admin = (s: KeyService, init: RequestInit & { path: string }) =>
  fetch(`${s.url}${init.path}`, {
    ...init,
    headers: { authorization: `Bearer ${s.adminToken}`, 'content-type': 'application/json' },
  });

let service: KeyService | undefined;
afterEach(async () => {
  await service?.close();
  service = undefined;
});

describe('the key service stand-in', () => {
  it('eventual mode: a deleted key keeps authenticating until the delete propagates, then gets 401', async () => {
    service = await startKeyService({ mode: 'eventual', propagationMs: 300 });
    const created = (await (
      await admin(service, {
        path: '/keys',
        method: 'POST',
        body: JSON.stringify({
          name: 'x',
          scopes: ['a:b'],
          expiresAt: new Date(Date.now() + 60_000).toISOString(),
        }),
      })
    ).json()) as { id: string; secret: string };
    expect(await keyWorks(service.url, created.secret)).toBe(true);
    expect((await admin(service, { path: `/keys/${created.id}`, method: 'DELETE' })).status).toBe(204);
    expect(await keyWorks(service.url, created.secret)).toBe(true);
    const listed = (await (await admin(service, { path: '/keys?name=x', method: 'GET' })).json()) as {
      keys: { status: string }[];
    };
    expect(listed.keys.map((k) => k.status)).toEqual(['deleting']);
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(await keyWorks(service.url, created.secret)).toBe(false);
  });

  it('flaky mode: every third admin request answers 503', async () => {
    service = await startKeyService({ mode: 'flaky' });
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++)
      statuses.push((await admin(service, { path: '/keys', method: 'GET' })).status);
    expect(statuses).toEqual([200, 200, 503, 200, 200, 503]);
  });
});

describe('apikey executor errors', () => {
  it('a wrong admin token is not retryable and the message does not quote it', async () => {
    service = await startKeyService();
    const executor = createApiKeyExecutor({ baseUrl: service.url, adminToken: 'adm_wrong-token-value' });
    const err = await errorOf(executor.issue(issueCtx()));
    expect(err.code).toBe('ERR_EXECUTOR');
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('HTTP 401');
    expect(JSON.stringify(err.toJSON())).not.toContain('wrong-token-value');
  });

  it('an outage (503 on every call) is retryable after the configured attempts', async () => {
    service = await startKeyService();
    service.forceStatus(503);
    const executor = createApiKeyExecutor({
      baseUrl: service.url,
      adminToken: service.adminToken,
      maxAttempts: 3,
    });
    const err = await errorOf(executor.issue(issueCtx()));
    expect(err).toMatchObject({
      code: 'ERR_EXECUTOR',
      retryable: true,
      details: { status: 503 },
    });
    expect(service.statusCounts[503]).toBe(3);
  });

  it('throttling (429) is retryable, a 400 is not', async () => {
    service = await startKeyService();
    const executor = createApiKeyExecutor({
      baseUrl: service.url,
      adminToken: service.adminToken,
      maxAttempts: 2,
    });
    service.forceStatus(429);
    expect((await errorOf(executor.issue(issueCtx()))).retryable).toBe(true);
    service.forceStatus(400);
    expect((await errorOf(executor.issue(issueCtx()))).retryable).toBe(false);
  });

  it('a service that does not answer is retryable', async () => {
    service = await startKeyService();
    const { url, adminToken } = service;
    await service.close();
    service = undefined;
    const executor = createApiKeyExecutor({ baseUrl: url, adminToken, maxAttempts: 2 });
    const err = await errorOf(executor.issue(issueCtx()));
    expect(err).toMatchObject({ code: 'ERR_EXECUTOR', retryable: true });
    expect(err.message).toContain('no answer');
  });

  it('revoke never touches keys it did not create', async () => {
    service = await startKeyService();
    const foreign = (await (
      await admin(service, {
        path: '/keys',
        method: 'POST',
        body: JSON.stringify({
          name: 'deploy-bot',
          scopes: ['deploy:*'],
          expiresAt: new Date(Date.now() + 60_000).toISOString(),
        }),
      })
    ).json()) as { secret: string };
    const executor = createApiKeyExecutor({ baseUrl: service.url, adminToken: service.adminToken });
    const ctx = issueCtx();
    const issued = await executor.issue(ctx);
    const out = await executor.revoke({ ...ctx, trigger: 'manual', reason: 'test' });
    expect(out.alreadyGone).not.toBe(true);
    expect(await keyWorks(service.url, issued.secret!.apiKey!)).toBe(false);
    expect(await keyWorks(service.url, foreign.secret)).toBe(true);
  });

  it('bad target params are refused at request time with the params path', async () => {
    service = await startKeyService();
    const grantline = createGrantline({
      store: createMemoryStore(),
      policy: {
        id: 'p',
        version: '1',
        owner: 'iam',
        rules: [
          {
            id: 'r',
            risk: 'medium' as const,
            match: { systems: ['apikey'], resources: [target.resource] },
            operator: 'ops',
            maxDurationSeconds: 600,
            approvals: { count: 1, roles: ['security-officer'] },
          },
        ],
      },
      executors: [createApiKeyExecutor({ baseUrl: service.url, adminToken: service.adminToken })],
    });
    const ci = { id: 'ci:x', kind: 'workload' as const, roles: [] };
    const err = await errorOf(
      grantline.request({
        requester: ci,
        subject: ci,
        justification: { reason: 'test' },
        targets: [{ ...target, params: { scopes: ['NOT A SCOPE'] } }],
        durationSeconds: 60,
      }),
    );
    expect(err.code).toBe('ERR_VALIDATION');
    expect(err.message).toContain('targets.0.params.scopes.0');
    await grantline.close();
  });
});
