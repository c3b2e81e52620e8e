import { createGrantline, createTokenAuthority } from '@grantline/core';
import { createMemoryStore } from '@grantline/store-memory';

export async function main() {
  const tokens = await createTokenAuthority({ issuer: 'https://grantline.example' });
  const grantline = createGrantline({
    store: createMemoryStore(),
    executors: [tokens.executor],
    policy: {
      id: 'minimal',
      version: '1',
      owner: 'iam-governance',
      rules: [
        {
          id: 'orders-read',
          risk: 'medium',
          match: { systems: ['token'], resources: ['api://orders'] },
          operator: 'platform-ops',
          maxDurationSeconds: 900,
          require: { ticket: {} },
          approvals: { count: 1, roles: ['service-owner'] },
        },
      ],
    },
  });
  const job = { id: 'ci:nightly-export', kind: 'workload' as const, roles: [] };
  const owner = { id: 'olga', kind: 'human' as const, roles: ['service-owner'] };

  const req = await grantline.request({
    requester: job,
    subject: job,
    justification: { reason: 'nightly export', ticket: 'OPS-7' },
    targets: [{ id: 'orders', system: 'token', resource: 'api://orders', permissions: ['orders:read'] }],
    durationSeconds: 600,
  });
  await grantline.approve(req.id, { approver: owner });
  const { credentials } = await grantline.issue(req.id); // secrets: returned once, stored nowhere
  await tokens.verifier.verify(credentials.orders!.token!, { audience: 'api://orders' });
  await grantline.recordUsage(req.id, { sourceIp: '10.0.0.5', action: 'orders:export' });
  const done = await grantline.complete(req.id, { actor: job, reason: 'export finished' });
  return { state: done.state, events: (await grantline.history(req.id)).map((e) => e.type) };
}
