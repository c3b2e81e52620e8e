import { type Clock, createGrantline, type GrantlineOptions, type GrantStore } from '@grantline/core';
import { createMemoryStore } from '@grantline/store-memory';
import { type AwsExecutorOptions, createAwsExecutor, createStoreAssignmentHolders } from '../../src/index.js';

/** A clock the test moves by hand. */
export function manualClock(start = new Date()): Clock & { advance(ms: number): void } {
  let t = start.getTime();
  return {
    now: () => new Date(t),
    advance: (ms) => {
      t += ms;
    },
  };
}

/** The service over the memory store with one rule for `aws` targets (optionally with source CIDRs). */
export function service(
  executors: GrantlineOptions['executors'],
  opts: {
    sourceCidrs?: string[];
    clock?: Clock;
    store?: GrantlineOptions['store'];
    extension?: boolean;
  } = {},
) {
  return createGrantline({
    store: opts.store ?? createMemoryStore(),
    executors,
    ...(opts.clock ? { clock: opts.clock } : {}),
    retry: { baseMs: 10, maxMs: 50, maxAttempts: 8 },
    policy: {
      id: 'aws-test',
      version: '1',
      owner: 'iam-governance',
      rules: [
        {
          id: 'aws-workloads',
          risk: 'medium',
          match: { systems: ['aws'] },
          operator: 'platform',
          maxDurationSeconds: 3600,
          require: { ticket: {} },
          approvals: { count: 1, roles: ['approver'] },
          ...(opts.sourceCidrs ? { constraints: { sourceCidrs: opts.sourceCidrs } } : {}),
          ...(opts.extension ? { extension: { requiresApproval: false, maxExtensions: 1 } } : {}),
        },
      ],
    },
  });
}

/**
 * The service over `store` with one AWS executor whose Identity Center assignment holders are read
 * from that same store (what a deployment runs: nothing kept in process memory).
 */
export function storeBackedService(
  clients: Pick<AwsExecutorOptions, 'iam' | 'sts' | 'ssoAdmin'>,
  store: GrantStore,
) {
  return service(
    [
      createAwsExecutor({
        ...clients,
        poll: { intervalMs: 10 },
        assignmentHolders: createStoreAssignmentHolders(store),
      }),
    ],
    { store },
  );
}

export const alice = { id: 'alice', kind: 'human' as const, roles: ['developer'], teams: ['payments'] };
export const bob = { id: 'bob', kind: 'human' as const, roles: ['approver'], teams: ['security'] };
export const deployBot = { id: 'svc-deploy', kind: 'workload' as const, roles: [], teams: [] };
