import { describeExecutorConformance } from '@grantline/core/testing';
import { describe, expect, it } from 'vitest';
import { createTokenAuthority } from '../src/index.js';

describeExecutorConformance(
  { describe, it },
  {
    name: 'token',
    async create() {
      const authority = await createTokenAuthority({ issuer: 'kit' });
      return {
        executor: authority.executor,
        target: { id: 't1', system: 'token', resource: 'api://orders', permissions: ['orders:read'] },
        async usable(secret) {
          try {
            await authority.verifier.verify(secret.token!, { audience: 'api://orders' });
            return true;
          } catch {
            return false;
          }
        },
      };
    },
  },
);

describe('token verifier', () => {
  it('rejects tokens from another authority, wrong audience and garbage', async () => {
    const a = await createTokenAuthority({ issuer: 'same' });
    const b = await createTokenAuthority({ issuer: 'same' });
    const { makeGrant } = await import('@grantline/core/testing');
    const { grant } = makeGrant();
    const g = {
      ...grant,
      window: { ...grant.window, expiresAt: new Date(Date.now() + 60_000).toISOString() },
    };
    const target = { id: 't1', system: 'token', resource: 'api://orders', params: {} };
    const res = await b.executor.issue({ grant: g, target, now: new Date() });
    await expect(a.verifier.verify(res.secret!.token!, { audience: 'api://orders' })).rejects.toMatchObject({
      code: 'ERR_TOKEN_REJECTED',
      details: { reason: 'invalid' },
    });
    const own = await a.executor.issue({ grant: g, target, now: new Date() });
    await expect(a.verifier.verify(own.secret!.token!, { audience: 'api://billing' })).rejects.toMatchObject({
      details: { reason: 'audience' },
    });
    await expect(a.verifier.verify('abc', { audience: 'api://orders' })).rejects.toMatchObject({
      details: { reason: 'invalid' },
    });
    const ok = await a.verifier.verify(own.secret!.token!, { audience: 'api://orders' });
    expect(ok.caseId).toBe(g.id);
    expect(ok.subject).toBe(g.subject.id);
  });

  it('accepts nothing without the audience of the service that asks: a service that forgot it is told, not opened', async () => {
    const a = await createTokenAuthority({ issuer: 'same' });
    const { makeGrant } = await import('@grantline/core/testing');
    const { grant } = makeGrant();
    const g = {
      ...grant,
      window: { ...grant.window, expiresAt: new Date(Date.now() + 60_000).toISOString() },
    };
    // A low-risk token (a pre-approved template's, say) must not open the payments API.
    const metrics = { id: 'm', system: 'token', resource: 'api://metrics', params: {} };
    const token = (await a.executor.issue({ grant: g, target: metrics, now: new Date() })).secret!.token!;
    for (const expected of [undefined, {}, { audience: '' }, { audience: 42 }]) {
      await expect(
        a.verifier.verify(token, expected as unknown as { audience: string }),
      ).rejects.toMatchObject({
        code: 'ERR_VALIDATION',
        details: { where: 'verify', path: ['expected', 'audience'] },
      });
    }
    await expect(a.verifier.verify(token, { audience: 'api://payments' })).rejects.toMatchObject({
      code: 'ERR_TOKEN_REJECTED',
      details: { reason: 'audience' },
    });
    expect((await a.verifier.verify(token, { audience: 'api://metrics' })).audience).toBe('api://metrics');
  });

  it('rejects an expired token', async () => {
    let now = new Date('2026-01-01T00:00:00Z');
    const a = await createTokenAuthority({ issuer: 'x', clock: { now: () => now } });
    const { makeGrant } = await import('@grantline/core/testing');
    const { grant } = makeGrant();
    const g = {
      ...grant,
      window: { ...grant.window, expiresAt: new Date(now.getTime() + 60_000).toISOString() },
    };
    const res = await a.executor.issue({
      grant: g,
      target: { id: 't1', system: 'token', resource: 'api://x', params: {} },
      now,
    });
    now = new Date(now.getTime() + 120_000);
    await expect(a.verifier.verify(res.secret!.token!, { audience: 'api://x' })).rejects.toMatchObject({
      details: { reason: 'expired' },
    });
  });
});
