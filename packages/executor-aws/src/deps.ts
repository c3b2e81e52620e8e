import type { IAMClient } from '@aws-sdk/client-iam';
import type { SSOAdminClient } from '@aws-sdk/client-sso-admin';
import type { STSClient } from '@aws-sdk/client-sts';
import type { Logger } from '@grantline/core';
import type { ProbePolicy } from './probe.js';
import type { SessionMemory } from './session-memory.js';

/** Credentials a probe signs with. */
export interface ProbeCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** Clients signing with the credentials under test, tagged with the probe user agent. */
export interface ProbeClients {
  sts: STSClient;
  iam: IAMClient;
}

/** Builds probe clients for a case. */
export type ProbeClientFactory = (credentials: ProbeCredentials, caseId: string) => ProbeClients;

/** What every strategy gets from `createAwsExecutor`. */
export interface StrategyDeps {
  sts: STSClient;
  iam: IAMClient;
  ssoAdmin: SSOAdminClient | undefined;
  probeClients: ProbeClientFactory;
  memory: SessionMemory;
  probe: ProbePolicy;
  sleep(ms: number): Promise<void>;
  logger: Logger;
  /** Tolerance when comparing a session's own expiry with the end of the window (ms). */
  expiryToleranceMs: number;
  /** Identity Center status polling. */
  poll: { intervalMs: number; timeoutMs: number };
  holders: AssignmentHolders;
}

/**
 * Who else holds an Identity Center assignment. Two active cases can grant the same principal the
 * same permission set in the same account; the assignment must survive until the last one ends.
 */
export interface AssignmentHolders {
  /** Ids of every case that currently holds `assignmentKey`. */
  list(assignmentKey: string): Promise<string[]>;
  /** Records that `caseId` holds `assignmentKey` (called after the assignment exists). */
  acquire(assignmentKey: string, caseId: string): Promise<void>;
  /** Records that `caseId` let go of `assignmentKey`. */
  release(assignmentKey: string, caseId: string): Promise<void>;
}

/** Probe user agent product name; CloudTrail records carrying it (for probe calls) are not usage. */
export const PROBE_USER_AGENT = 'grantline-probe';
