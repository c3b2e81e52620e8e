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
            executor: createApiKeyExecutor({ baseUrl: service.url, adminToken: service.adminToken }),
            target: {
              id: 'reports-api',
              system: 'apikey',
              resource: 'https://api.example.com/reports',
              params: { scopes: ['reports:read'] },
            },
            usable: (secret) => keyWorks(service.url, secret.apiKey!),
          };
        },
      },
    );
  });
}
