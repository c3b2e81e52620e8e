import { describeExecutorConformance } from '@grantline/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type KeyService,
  type KeyServiceMode,
  createApiKeyExecutor,
  keyWorks,
  startKeyService,
} from '../src/index.js';

// The same kit runs against each behaviour of the key service: immediate deletes, deletes that
// propagate after ~100 ms, and an admin API that answers 503 to every third request.
for (const mode of ['consistent', 'eventual', 'flaky'] as KeyServiceMode[]) {
  describe(`apikey executor on a ${mode} key service`, () => {
    let service: KeyService;
    beforeAll(async () => {
      service = await startKeyService({ mode });
    });
    afterAll(async () => {
      if (mode === 'flaky') expect(service.statusCounts[503] ?? 0).toBeGreaterThan(0);
      await service.close();
    });

    describeExecutorConformance(
      { describe, it },
      {
        name: `apikey (${mode})`,
        async create() {
          return {
            // On the eventual service revoke does not wait (settleMs 0): verify then honestly says
            // `present` until the delete propagates, and the kit polls it as the sweeper would.
            executor: createApiKeyExecutor({
              baseUrl: service.url,
              adminToken: service.adminToken,
              ...(mode === 'eventual' ? { settleMs: 0 } : {}),
            }),
            target: {
              id: 'reports-api',
              system: 'apikey',
              resource: 'https://api.example.com/reports',
              params: { scopes: ['reports:read'] },
            },
            usable: (secret) => keyWorks(service.url, secret.apiKey!),
            // Another tool's key on the same service: revoking cases must never delete it.
            async foreign() {
              const admin = { authorization: `Bearer ${service.adminToken}` };
              let res: Response;
              do {
                // The flaky service answers 503 now and then: ask again.
                res = await fetch(`${service.url}/keys`, {
                  method: 'POST',
                  headers: { ...admin, 'content-type': 'application/json' },
                  body: JSON.stringify({
                    name: 'ci-standing-key',
                    scopes: ['reports:read'],
                    expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
                  }),
                });
              } while (res.status === 503);
              expect(res.status).toBe(201);
              const { id, secret } = (await res.json()) as { id: string; secret: string };
              return {
                exists: () => keyWorks(service.url, secret),
                async remove() {
                  await fetch(`${service.url}/keys/${id}`, { method: 'DELETE', headers: admin });
                },
              };
            },
            // An outage (503) is transient; a revoked admin token (403) is permanent.
            async simulateFailure(kind) {
              service.forceStatus(kind === 'transient' ? 503 : 403);
              return async () => service.forceStatus(null);
            },
          };
        },
      },
    );
  });
}
