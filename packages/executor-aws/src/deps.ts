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
  /** Always given with `ssoAdmin` (checked by `createAwsExecutor`). */
  holders: AssignmentHolders | undefined;
}

/**
 * Where a case's hold on an Identity Center assignment came from, recorded before any create call:
 * `created` when the case found it absent and creates it (or shares one another case created),
 * `preexisting` when it was standing access no case held (never the case's to delete),
 * `not-issued` when issue never reached this target of the case (nothing of the case exists).
 */
export type AssignmentOrigin = 'created' | 'preexisting' | 'not-issued';

/**
 * Who holds an Identity Center assignment, and why. Two active cases can grant the same principal
 * the same permission set in the same account; the assignment must survive until the last one ends.
 * A revoke without a recorded issuance (crash recovery, a target never reached) deletes only when
 * {@link AssignmentHolders.originOf} says `created`: anything else may be standing access.
 *
 * Why this must be shared and durable: a holder or origin known to one process only is lost on a
 * restart and invisible to a second instance, and then overlap and ownership are guessed wrong.
 */
export interface AssignmentHolders {
  /** Ids of every case that currently holds `assignmentKey` (the asking case may be among them). */
  list(assignmentKey: string): Promise<string[]>;
  /** Records that `caseId` holds `assignmentKey` and its origin (called before the assignment is created). */
  acquire(assignmentKey: string, caseId: string, origin: AssignmentOrigin): Promise<void>;
  /** Records that `caseId` let go of `assignmentKey` (its origin stays known). */
  release(assignmentKey: string, caseId: string): Promise<void>;
  /** The origin `acquire` recorded for `caseId`, or `undefined` when nothing is known. */
  originOf(assignmentKey: string, caseId: string): Promise<AssignmentOrigin | undefined>;
}

/** Probe user agent product name; CloudTrail records carrying it (for probe calls) are not usage. */
export const PROBE_USER_AGENT = 'grantline-probe';
