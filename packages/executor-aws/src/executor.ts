import type { CloudTrailClient } from '@aws-sdk/client-cloudtrail';
import { IAMClient } from '@aws-sdk/client-iam';
import type { SSOAdminClient } from '@aws-sdk/client-sso-admin';
import { STSClient } from '@aws-sdk/client-sts';
import {
  ErrorCodes,
  type Executor,
  type ExecutorContext,
  GrantlineError,
  type Issuance,
  type Logger,
  type RevokeContext,
  type UsageRecord,
  silentLogger,
} from '@grantline/core';
import { createAssumedRoleStrategy } from './assumed-role.js';
import {
  type AssignmentHolders,
  PROBE_USER_AGENT,
  type ProbeClientFactory,
  type ProbeCredentials,
} from './deps.js';
import { createIamUserStrategy } from './iam-user.js';
import { invalid } from './errors.js';
import { createIdentityCenterStrategy } from './identity-center.js';
import {
  type AssumedRoleParams,
  type AwsParams,
  awsParamsSchema,
  type IamUserParams,
  type IdentityCenterParams,
} from './params.js';
import type { ProbePolicy } from './probe.js';
import { SessionMemory } from './session-memory.js';
import { isProbeRecord, lookupEventsByAccessKey, usageFromCloudTrail } from './usage.js';

/** Options of {@link createAwsExecutor}. The package never reads credentials from the environment. */
export interface AwsExecutorOptions {
  /** `system` of the targets served (default `aws`). */
  system?: string;
  /** STS client with the executor's own credentials (assumed-role strategy). */
  sts: STSClient;
  /** IAM client with the executor's own credentials (role policies, IAM users). */
  iam: IAMClient;
  /** SSO Admin client (Identity Center strategy); without it that strategy fails non-retryably. */
  ssoAdmin?: SSOAdminClient;
  /** CloudTrail client: enables `usage()` (LookupEvents by the issued access key id). */
  cloudtrail?: CloudTrailClient;
  /**
   * Builds the clients that sign probes with the credentials under test. Default: clients with the
   * `iam` and `sts` clients' region, endpoint and request handler, the given credentials, a
   * `grantline-probe/<case>` user agent and no SDK retries.
   */
  probeClients?: ProbeClientFactory;
  /** Consecutive-rejection probing (defaults: 3 rejections, 1 s then doubling up to 8 s). */
  probe?: Partial<ProbePolicy>;
  /** Identity Center status polling (defaults: 1 s doubling, give up after 60 s as retryable). */
  poll?: { intervalMs?: number; timeoutMs?: number };
  /**
   * Who holds which Identity Center assignment, and whether a case created it. Required with
   * `ssoAdmin`: there is no default, because a registry in one process's memory loses overlap and
   * ownership on a restart or across instances (a shared assignment deleted early). Use
   * `createStoreAssignmentHolders(store)` in a deployment; `createMemoryAssignmentHolders()` only
   * for tests and a single process.
   */
  assignmentHolders?: AssignmentHolders;
  /** A session ending at most this long after the window needs no Deny at natural expiry (default 1,000 ms). */
  expiryToleranceMs?: number;
  logger?: Logger;
  /** Injected for tests; default `setTimeout`. */
  sleep?: (ms: number) => Promise<void>;
  /** Clock for in-memory bookkeeping (default system time). */
  now?: () => Date;
}

/** The AWS executor plus maintenance the host may schedule. */
export interface AwsExecutor extends Executor<AwsParams> {
  /**
   * Removes revocation Deny policies on `roleArn` whose sessions have expired. Revoke also does this
   * for the role it touches; call it from a daily job for roles that see few revocations.
   * @returns the number of policies removed.
   */
  collectGarbage(roleArn: string): Promise<number>;
}

function defaultProbeClients(sts: STSClient, iam: IAMClient): ProbeClientFactory {
  return (credentials: ProbeCredentials, caseId: string) => {
    const common = (c: STSClient | IAMClient) => ({
      region: c.config.region,
      // biome-ignore lint/suspicious/noExplicitAny: the resolved endpoint provider is accepted back by the constructor.
      ...(c.config.endpoint ? { endpoint: c.config.endpoint as any } : {}),
      requestHandler: c.config.requestHandler,
      credentials,
      // One attempt: the probe loop does its own spacing, and a probe must not be retried into success.
      maxAttempts: 1,
      customUserAgent: [[PROBE_USER_AGENT, caseId.replace(/[^\w.-]/g, '_').slice(0, 64)]] as [
        string,
        string,
      ][],
    });
    return { sts: new STSClient(common(sts)), iam: new IAMClient(common(iam)) };
  };
}

/**
 * Creates the AWS executor: assumed-role sessions (default), IAM user access keys and Identity
 * Center account assignments, chosen per target by `params.strategy`. Clients are passed in, with
 * whatever credentials the host chose; nothing is read from the environment.
 *
 * Secret material is returned once from `issue` (`secretAccessKey`, `sessionToken`; the access key
 * id is a non-secret reference in `ref.accessKeyId`). Assumed-role credentials are also held in
 * this process's memory until their removal is verified, for the signed probe; see the README.
 *
 * @throws GrantlineError `ERR_VALIDATION` (path `assignmentHolders`) when `ssoAdmin` is given
 * without `assignmentHolders`.
 */
export function createAwsExecutor(options: AwsExecutorOptions): AwsExecutor {
  if (options.ssoAdmin && !options.assignmentHolders) {
    throw invalid(
      'createAwsExecutor',
      ['assignmentHolders'],
      'an ssoAdmin client needs assignmentHolders: createStoreAssignmentHolders(store) shares holders ' +
        'across restarts and instances; createMemoryAssignmentHolders() is for tests and a single process',
    );
  }
  const now = options.now ?? (() => new Date());
  const deps = {
    sts: options.sts,
    iam: options.iam,
    ssoAdmin: options.ssoAdmin,
    probeClients: options.probeClients ?? defaultProbeClients(options.sts, options.iam),
    memory: new SessionMemory(now),
    probe: { consecutiveRejections: 3, backoffMs: 1_000, maxBackoffMs: 8_000, ...options.probe },
    sleep: options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms))),
    logger: options.logger ?? silentLogger,
    expiryToleranceMs: options.expiryToleranceMs ?? 1_000,
    poll: { intervalMs: options.poll?.intervalMs ?? 1_000, timeoutMs: options.poll?.timeoutMs ?? 60_000 },
    holders: options.assignmentHolders,
  };
  const role = createAssumedRoleStrategy(deps);
  const user = createIamUserStrategy(deps);
  const center = createIdentityCenterStrategy(deps);

  // biome-ignore lint/suspicious/noExplicitAny: narrows the union context to one strategy's params.
  const as = <P>(ctx: ExecutorContext<AwsParams>) => ctx as any as P;
  return {
    system: options.system ?? 'aws',
    paramsSchema: awsParamsSchema as unknown as Executor<AwsParams>['paramsSchema'],
    async issue(ctx) {
      const s = ctx.target.params.strategy;
      if (s === 'iam-user') return user.issue(as<ExecutorContext<IamUserParams>>(ctx));
      if (s === 'identity-center') return center.issue(as<ExecutorContext<IdentityCenterParams>>(ctx));
      return role.issue(as<ExecutorContext<AssumedRoleParams>>(ctx));
    },
    async revoke(ctx) {
      const s = ctx.target.params.strategy;
      if (s === 'iam-user') return user.revoke(as<RevokeContext<IamUserParams>>(ctx));
      if (s === 'identity-center') return center.revoke(as<RevokeContext<IdentityCenterParams>>(ctx));
      return role.revoke(as<RevokeContext<AssumedRoleParams>>(ctx));
    },
    async verify(ctx) {
      const s = ctx.target.params.strategy;
      if (s === 'iam-user') return user.verify(as<RevokeContext<IamUserParams>>(ctx));
      if (s === 'identity-center') return center.verify(as<RevokeContext<IdentityCenterParams>>(ctx));
      return role.verify(as<RevokeContext<AssumedRoleParams>>(ctx));
    },
    async renew(ctx) {
      if (ctx.target.params.strategy === 'assumed-role') {
        return role.renew(
          as<ExecutorContext<AssumedRoleParams> & { issuance: Issuance; expiresAt: Date }>(ctx),
        );
      }
      // Access keys and account assignments do not expire by themselves: the sweeper revokes them
      // at the (new) end of the window, so there is nothing to renew at AWS.
      return { expiresAt: ctx.expiresAt };
    },
    collectGarbage: (roleArn) => role.collectGarbage(roleArn, now()),
    ...(options.cloudtrail ? { usage: (ctx: UsageContext) => pullUsage(options.cloudtrail!, ctx) } : {}),
  };
}

/** `Executor.usage`: CloudTrail records of the issued access key, probes excluded. */
type UsageContext = Parameters<NonNullable<Executor<AwsParams>['usage']>>[0];

async function pullUsage(cloudtrail: CloudTrailClient, ctx: UsageContext): Promise<UsageRecord[]> {
  const keyId = ctx.issuance.ref.accessKeyId;
  // Identity Center assignments have no key of their own: their sessions are attributed from trail
  // records handed to `attributeRecords` instead.
  if (!keyId) return [];
  const records = await lookupEventsByAccessKey(cloudtrail, keyId, ctx.since);
  return records
    .filter((r) => !isProbeRecord(r))
    .flatMap((r) => {
      const u = usageFromCloudTrail(r);
      return u ? [u] : [];
    });
}

/**
 * The full AWS credential for one target of an issue outcome: the non-secret access key id from
 * the case's reference plus the secret parts returned once by `issue`.
 */
export function awsCredentialsOf(
  issuance: { ref: Record<string, string>; expiresAt?: string },
  secret: Record<string, string> | undefined,
): { accessKeyId: string; secretAccessKey: string; sessionToken?: string; expiration?: Date } {
  if (!issuance.ref.accessKeyId || !secret?.secretAccessKey) {
    throw new GrantlineError(ErrorCodes.VALIDATION, 'awsCredentialsOf: no AWS access key in this issuance', {
      details: {
        where: 'awsCredentialsOf',
        issues: [{ path: ['ref', 'accessKeyId'], code: 'custom', message: 'missing' }],
      },
    });
  }
  return {
    accessKeyId: issuance.ref.accessKeyId,
    secretAccessKey: secret.secretAccessKey,
    ...(secret.sessionToken ? { sessionToken: secret.sessionToken } : {}),
    ...(issuance.ref.sessionExpiresAt ? { expiration: new Date(issuance.ref.sessionExpiresAt) } : {}),
  };
}
