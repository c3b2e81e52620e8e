import {
  CreateAccountAssignmentCommand,
  DeleteAccountAssignmentCommand,
  DescribeAccountAssignmentCreationStatusCommand,
  DescribeAccountAssignmentDeletionStatusCommand,
  DescribePermissionSetProvisioningStatusCommand,
  GetInlinePolicyForPermissionSetCommand,
  ListAccountAssignmentsCommand,
  ProvisionPermissionSetCommand,
  PutInlinePolicyToPermissionSetCommand,
  type SSOAdminClient,
} from '@aws-sdk/client-sso-admin';
import {
  ErrorCodes,
  type ExecutorContext,
  GrantlineError,
  type Grant,
  type GrantStore,
  type IssueResult,
  type RevokeContext,
  type RevokeResult,
  type VerifyResult,
} from '@grantline/core';
import type { AssignmentHolders, AssignmentOrigin, StrategyDeps } from './deps.js';
import { toExecutorError } from './errors.js';
import { deriveNames } from './names.js';
import { permissionSetLockKey, withPolicyLock } from './policy-lock.js';
import { type IdentityCenterParams, identityCenterParamsSchema } from './params.js';

type Ctx = ExecutorContext<IdentityCenterParams>;
type RCtx = RevokeContext<IdentityCenterParams>;

/** The longest session a permission set can grant (`SessionDuration` PT12H). */
const MAX_SSO_SESSION_MS = 12 * 3600 * 1000;

/** Identifies one account assignment: instance, account, permission set and principal. */
export function assignmentKey(p: IdentityCenterParams): string {
  return [p.instanceArn, p.accountId, p.permissionSetArn, p.principalType, p.principalId].join('|');
}

/**
 * An in-process {@link AssignmentHolders}: holders and origins live in this process's memory only.
 * Only for tests and a single process that never restarts with cases open: after a restart or on a
 * second instance, overlap is lost (a shared assignment is deleted early) and crash recovery cannot
 * prove an assignment its own, so it keeps it (verify then reports it present). Origins are kept
 * after `release` so a repeated revoke or verify still knows them (one small entry per case).
 */
export function createMemoryAssignmentHolders(): AssignmentHolders {
  const holders = new Map<string, Set<string>>();
  const origins = new Map<string, AssignmentOrigin>();
  return {
    async list(key) {
      return [...(holders.get(key) ?? [])];
    },
    async acquire(key, caseId, origin) {
      const s = holders.get(key) ?? new Set<string>();
      s.add(caseId);
      holders.set(key, s);
      origins.set(`${key}#${caseId}`, origin);
    },
    async release(key, caseId) {
      holders.get(key)?.delete(caseId);
      if (holders.get(key)?.size === 0) holders.delete(key);
    },
    async originOf(key, caseId) {
      return origins.get(`${key}#${caseId}`);
    },
  };
}

/** Identity Center account assignments, created and deleted with status polling, overlap-aware. */
export function createIdentityCenterStrategy(deps: StrategyDeps) {
  const client = (): SSOAdminClient => {
    if (!deps.ssoAdmin) {
      throw new GrantlineError(
        ErrorCodes.EXECUTOR,
        'aws identity-center: no SSO Admin client was given to createAwsExecutor',
        { retryable: false, details: { option: 'ssoAdmin' } },
      );
    }
    return deps.ssoAdmin;
  };
  const registry = (): AssignmentHolders => {
    client();
    if (!deps.holders) {
      throw new GrantlineError(
        ErrorCodes.EXECUTOR,
        'aws identity-center: no assignmentHolders were given to createAwsExecutor',
        { retryable: false, details: { option: 'assignmentHolders' } },
      );
    }
    return deps.holders;
  };

  const exists = async (p: IdentityCenterParams): Promise<boolean> => {
    let token: string | undefined;
    try {
      do {
        const out = await client().send(
          new ListAccountAssignmentsCommand({
            InstanceArn: p.instanceArn,
            AccountId: p.accountId,
            PermissionSetArn: p.permissionSetArn,
            ...(token ? { NextToken: token } : {}),
          }),
        );
        if (
          out.AccountAssignments?.some(
            (a) => a.PrincipalId === p.principalId && a.PrincipalType === p.principalType,
          )
        )
          return true;
        token = out.NextToken;
      } while (token);
    } catch (err) {
      throw toExecutorError(err, 'sso:ListAccountAssignments', [], { accountId: p.accountId });
    }
    return false;
  };

  /** Polls an asynchronous Identity Center request until it leaves IN_PROGRESS. */
  const poll = async (
    operation: string,
    describe: () => Promise<{ Status?: string; FailureReason?: string } | undefined>,
  ) => {
    const started = Date.now();
    let delay = deps.poll.intervalMs;
    for (;;) {
      let status: { Status?: string; FailureReason?: string } | undefined;
      try {
        status = await describe();
      } catch (err) {
        throw toExecutorError(err, operation);
      }
      if (status?.Status === 'SUCCEEDED') return;
      if (status?.Status === 'FAILED') {
        throw new GrantlineError(
          ErrorCodes.EXECUTOR,
          `aws ${operation}: request failed: ${status.FailureReason ?? 'no reason given'}`,
          {
            retryable: false,
            details: { operation, status: 'FAILED' },
          },
        );
      }
      if (Date.now() - started > deps.poll.timeoutMs) {
        // Still IN_PROGRESS: the request stands at AWS; trying again later observes its outcome.
        throw new GrantlineError(
          ErrorCodes.EXECUTOR,
          `aws ${operation}: still ${status?.Status ?? 'unknown'} after ${deps.poll.timeoutMs} ms`,
          {
            retryable: true,
            details: { operation, status: status?.Status },
          },
        );
      }
      await deps.sleep(delay);
      delay = Math.min(delay * 2, 10_000);
    }
  };

  async function issue(ctx: Ctx): Promise<IssueResult> {
    deriveNames(ctx.grant, ctx.target, 'aws identity-center issue');
    const p = ctx.target.params;
    const key = assignmentKey(p);
    const end = ctx.grant.window.expiresAt
      ? new Date(ctx.grant.window.expiresAt)
      : new Date(ctx.now.getTime() + ctx.grant.window.durationSeconds * 1000);
    const heldByOthers = (await registry().list(key)).filter((c) => c !== ctx.grant.id);
    const already = await exists(p);
    // Standing access that no other case holds is not ours: recorded as such, and never deleted.
    // Why not "held by this case" as a sign of a repeated issue: a store-backed registry lists this
    // very case while it is `issuing`, so only the origin recorded by an earlier issue counts.
    const recorded = await registry().originOf(key, ctx.grant.id);
    const origin: AssignmentOrigin =
      recorded ?? (already && heldByOthers.length === 0 ? 'preexisting' : 'created');
    const preexisting = origin === 'preexisting';
    // Hold and origin are recorded before the assignment exists, so a crash leaves a record that lets
    // revoke tell an assignment it created from one that was already there.
    await registry().acquire(key, ctx.grant.id, origin);
    let requestId = '';
    if (!already) {
      try {
        const out = await client().send(
          new CreateAccountAssignmentCommand({
            InstanceArn: p.instanceArn,
            TargetId: p.accountId,
            TargetType: 'AWS_ACCOUNT',
            PermissionSetArn: p.permissionSetArn,
            PrincipalType: p.principalType,
            PrincipalId: p.principalId,
          }),
        );
        requestId = out.AccountAssignmentCreationStatus?.RequestId ?? '';
        const first = out.AccountAssignmentCreationStatus;
        if (first?.Status !== 'SUCCEEDED') {
          await poll(
            'sso:DescribeAccountAssignmentCreationStatus',
            async () =>
              (
                await client().send(
                  new DescribeAccountAssignmentCreationStatusCommand({
                    InstanceArn: p.instanceArn,
                    AccountAssignmentCreationRequestId: requestId,
                  }),
                )
              ).AccountAssignmentCreationStatus,
          );
        }
      } catch (err) {
        throw toExecutorError(err, 'sso:CreateAccountAssignment', [], { accountId: p.accountId });
      }
    }
    return {
      ref: {
        strategy: 'identity-center',
        instanceArn: p.instanceArn,
        accountId: p.accountId,
        permissionSetArn: p.permissionSetArn,
        principalType: p.principalType,
        principalId: p.principalId,
        ...(requestId ? { creationRequestId: requestId } : {}),
        ...(preexisting ? { preexisting: 'true' } : {}),
        ...(heldByOthers.length > 0 ? { sharedWith: heldByOthers.join(',') } : {}),
      },
      expiresAt: end,
    };
  }

  /** How many times a Deny write is re-read and written again when another writer overwrote it. */
  const DENY_WRITE_ATTEMPTS = 5;

  const denySid = (p: IdentityCenterParams) =>
    `GrantlineRevoke${deriveNames({ id: p.principalId }, { id: p.permissionSetArn.slice(-16) }, 'deny').hash.slice(0, 12)}`;
  const cutoffOf = (st: Record<string, unknown> | undefined): number | undefined => {
    const c = (st?.Condition as { DateLessThan?: Record<string, string> } | undefined)?.DateLessThan?.[
      'aws:TokenIssueTime'
    ];
    return c === undefined ? undefined : Date.parse(c);
  };

  type PolicyDoc = { Version: string; Statement: Record<string, unknown>[] };
  const readInline = async (p: IdentityCenterParams): Promise<PolicyDoc> => {
    try {
      const out = await client().send(
        new GetInlinePolicyForPermissionSetCommand({
          InstanceArn: p.instanceArn,
          PermissionSetArn: p.permissionSetArn,
        }),
      );
      const doc: PolicyDoc = out.InlinePolicy
        ? JSON.parse(out.InlinePolicy)
        : { Version: '2012-10-17', Statement: [] };
      if (!Array.isArray(doc.Statement)) doc.Statement = doc.Statement ? [doc.Statement] : [];
      return doc;
    } catch (err) {
      throw toExecutorError(err, 'sso:GetInlinePolicyForPermissionSet');
    }
  };

  /** This user's Grantline Deny in `doc` when its cut-off is at or after `covers`, else `undefined`. */
  const coveringDeny = (doc: PolicyDoc, p: IdentityCenterParams, covers: Date) => {
    const st = doc.Statement.find((x) => x.Sid === denySid(p));
    const cutoff = cutoffOf(st);
    return st && cutoff !== undefined && cutoff >= covers.getTime() ? st : undefined;
  };

  /**
   * The moment a Deny for this case must reach: sessions could start until the assignment was
   * deleted, which is after the revocation was requested. A Deny with a cut-off at or after it was
   * written by this revocation (it is written only once the assignment is gone).
   */
  const denyAnchor = (ctx: RCtx): Date | undefined => {
    const t = ctx.grant.revocation?.requestedAt ?? ctx.issuance?.issuedAt;
    return t ? new Date(t) : undefined;
  };

  /**
   * Makes sure the permission set's inline policy denies the user's sessions issued before `at`
   * (kept as is when a Deny of this user already reaches `covers`), then provisions it. Idempotent:
   * a repeated call after a failure (e.g. throttled provisioning) finds the statement and provisions
   * again, so a revocation counts only once the Deny is in place and provisioned.
   *
   * Why the lock and the re-read after the write: the inline policy is one document,
   * read-modify-written; two revocations at once (two users of one permission set) would otherwise
   * lose one Deny. Only a statement seen in place after the write counts; verify checks it again later.
   */
  const denySessions = async (p: IdentityCenterParams, at: Date, covers: Date = at) => {
    const sid = denySid(p);
    // Garbage collection: a Grantline Deny whose cut-off is older than the longest session Identity
    // Center allows (12 h) can no longer match any live session, so it is dropped on the way.
    const stale = (st: Record<string, unknown>) => {
      if (typeof st.Sid !== 'string' || !st.Sid.startsWith('GrantlineRevoke')) return false;
      const cutoff = cutoffOf(st);
      return cutoff !== undefined && cutoff < at.getTime() - MAX_SSO_SESSION_MS;
    };
    // Every write to this permission set's inline policy in this process (any executor instance)
    // takes turns under one lock, so none works from a stale read; the re-read after the write
    // catches a loss to a writer in another process (Identity Center has no compare-and-set).
    const placed = await withPolicyLock(permissionSetLockKey(p.instanceArn, p.permissionSetArn), async () => {
      let found: Record<string, unknown> | undefined;
      for (let attempt = 0; attempt < DENY_WRITE_ATTEMPTS && !found; attempt++) {
        const doc = await readInline(p);
        found = coveringDeny(doc, p, covers);
        if (found) break;
        // Why TokenIssueTime: sessions issued before the revocation are denied, while a later case of
        // the same user with the same permission set still works (AWS's documented revoke-older-sessions form).
        const statement = {
          Sid: sid,
          Effect: 'Deny',
          Action: '*',
          Resource: '*',
          Condition: {
            StringEquals: { 'identitystore:userId': p.principalId },
            DateLessThan: { 'aws:TokenIssueTime': at.toISOString() },
          },
        };
        doc.Statement = [...doc.Statement.filter((st) => st.Sid !== sid && !stale(st)), statement];
        try {
          await client().send(
            new PutInlinePolicyToPermissionSetCommand({
              InstanceArn: p.instanceArn,
              PermissionSetArn: p.permissionSetArn,
              InlinePolicy: JSON.stringify(doc),
            }),
          );
        } catch (err) {
          throw toExecutorError(err, 'sso:PutInlinePolicyToPermissionSet');
        }
        found = coveringDeny(await readInline(p), p, covers);
      }
      return found;
    });
    if (!placed) {
      throw new GrantlineError(
        ErrorCodes.EXECUTOR,
        `aws sso:PutInlinePolicyToPermissionSet: the session Deny was overwritten by concurrent writers ${DENY_WRITE_ATTEMPTS} times`,
        { retryable: true, details: { operation: 'sso:PutInlinePolicyToPermissionSet', sid } },
      );
    }
    try {
      const out = await client().send(
        new ProvisionPermissionSetCommand({
          InstanceArn: p.instanceArn,
          PermissionSetArn: p.permissionSetArn,
          TargetType: 'AWS_ACCOUNT',
          TargetId: p.accountId,
        }),
      );
      const requestId = out.PermissionSetProvisioningStatus?.RequestId ?? '';
      if (out.PermissionSetProvisioningStatus?.Status !== 'SUCCEEDED') {
        await poll(
          'sso:DescribePermissionSetProvisioningStatus',
          async () =>
            (
              await client().send(
                new DescribePermissionSetProvisioningStatusCommand({
                  InstanceArn: p.instanceArn,
                  ProvisionPermissionSetRequestId: requestId,
                }),
              )
            ).PermissionSetProvisioningStatus,
        );
      }
      return {
        sid,
        provisioningRequestId: requestId,
        tokenIssuedBefore: new Date(cutoffOf(placed)!).toISOString(),
      };
    } catch (err) {
      throw toExecutorError(err, 'sso:ProvisionPermissionSet');
    }
  };

  /**
   * Whose the assignment is for this case: the recorded issuance says it (an issuance without
   * `preexisting` was created or shared by a case); without one, only the holders' record can.
   */
  const originFor = async (ctx: RCtx, key: string): Promise<AssignmentOrigin | undefined> => {
    if (ctx.issuance) return ctx.issuance.ref.preexisting === 'true' ? 'preexisting' : 'created';
    return registry().originOf(key, ctx.grant.id);
  };

  async function revoke(ctx: RCtx): Promise<RevokeResult> {
    deriveNames(ctx.grant, ctx.target, 'aws identity-center revoke');
    const p = ctx.target.params;
    const key = assignmentKey(p);
    const others = (await registry().list(key)).filter((c) => c !== ctx.grant.id);
    const origin = await originFor(ctx, key);
    if (origin === 'preexisting' || origin === 'not-issued') {
      await registry().release(key, ctx.grant.id);
      return {
        alreadyGone: true,
        detail:
          origin === 'preexisting'
            ? {
                method: 'assignment-preexisting',
                note: "the assignment existed before this case and is not Grantline's to delete",
              }
            : {
                method: 'assignment-not-issued',
                note: 'issue never reached this target of the case; nothing of it exists to delete',
              },
      };
    }
    if (others.length > 0) {
      await registry().release(key, ctx.grant.id);
      return { alreadyGone: false, detail: { method: 'assignment-handoff', keptFor: others } };
    }
    const denies = p.revokeSessions && p.principalType === 'USER';
    if (!(await exists(p))) {
      // An earlier attempt may have deleted the assignment and failed before the Deny was in place
      // and provisioned: for a case that created it, the Deny is made sure of before this counts.
      const sessions =
        denies && origin === 'created'
          ? await denySessions(p, ctx.now, denyAnchor(ctx) ?? ctx.now)
          : undefined;
      await registry().release(key, ctx.grant.id);
      return {
        alreadyGone: true,
        detail: { method: 'assignment-delete', ...(sessions ? { sessionDeny: sessions } : {}) },
      };
    }
    if (origin === undefined) {
      // No recorded issuance and no recorded origin: the assignment may be standing access (this
      // target was never reached, or issue found it there) or one a crashed issue created. Deleting
      // on a guess could cut standing access (and with revokeSessions its live sessions), so it is
      // kept, and verify reports it present for a human to decide.
      await registry().release(key, ctx.grant.id);
      return {
        alreadyGone: false,
        detail: {
          method: 'assignment-kept-unproven',
          note: 'no record proves this case created the assignment; it was not deleted',
        },
      };
    }
    let requestId = '';
    try {
      const out = await client().send(
        new DeleteAccountAssignmentCommand({
          InstanceArn: p.instanceArn,
          TargetId: p.accountId,
          TargetType: 'AWS_ACCOUNT',
          PermissionSetArn: p.permissionSetArn,
          PrincipalType: p.principalType,
          PrincipalId: p.principalId,
        }),
      );
      requestId = out.AccountAssignmentDeletionStatus?.RequestId ?? '';
      if (out.AccountAssignmentDeletionStatus?.Status !== 'SUCCEEDED') {
        await poll(
          'sso:DescribeAccountAssignmentDeletionStatus',
          async () =>
            (
              await client().send(
                new DescribeAccountAssignmentDeletionStatusCommand({
                  InstanceArn: p.instanceArn,
                  AccountAssignmentDeletionRequestId: requestId,
                }),
              )
            ).AccountAssignmentDeletionStatus,
        );
      }
    } catch (err) {
      throw toExecutorError(err, 'sso:DeleteAccountAssignment', [], { accountId: p.accountId });
    }
    // Deleting the assignment does not end sessions already started from it; the Deny does.
    const sessions = denies ? await denySessions(p, ctx.now) : undefined;
    await registry().release(key, ctx.grant.id);
    return {
      alreadyGone: false,
      detail: {
        method: 'assignment-delete',
        deletionRequestId: requestId,
        ...(sessions ? { sessionDeny: sessions } : {}),
      },
    };
  }

  async function verify(ctx: RCtx): Promise<VerifyResult> {
    deriveNames(ctx.grant, ctx.target, 'aws identity-center verify');
    const p = ctx.target.params;
    const present = await exists(p);
    const base = {
      accountId: p.accountId,
      permissionSetArn: p.permissionSetArn,
      principalType: p.principalType,
      principalId: p.principalId,
      checkedAt: ctx.now.toISOString(),
    };
    if (!present) {
      // With revokeSessions, sessions started from the assignment outlive it: only the Deny ends
      // them, so a removal this case made is verified once that Deny is seen in the policy.
      if (
        p.revokeSessions &&
        p.principalType === 'USER' &&
        (await originFor(ctx, assignmentKey(p))) === 'created'
      ) {
        const anchor = denyAnchor(ctx);
        const doc = await readInline(p);
        const st = anchor ? coveringDeny(doc, p, anchor) : doc.Statement.find((x) => x.Sid === denySid(p));
        if (!st)
          return {
            status: 'present',
            method: 'session-deny-state',
            observation: {
              ...base,
              assignment: 'absent',
              sessionDeny: 'missing: sessions started from the assignment are not denied',
            },
          };
        return {
          status: 'absent',
          method: 'assignment-state',
          observation: {
            ...base,
            assignment: 'absent',
            sessionDeny: { sid: st.Sid, tokenIssuedBefore: new Date(cutoffOf(st)!).toISOString() },
          },
        };
      }
      return { status: 'absent', method: 'assignment-state', observation: { ...base, assignment: 'absent' } };
    }
    const others = (await registry().list(assignmentKey(p))).filter((c) => c !== ctx.grant.id);
    if (others.length > 0)
      return {
        status: 'absent',
        method: 'assignment-handoff',
        observation: { ...base, assignment: 'held by other cases', heldBy: others },
      };
    const origin = await originFor(ctx, assignmentKey(p));
    if (origin === 'preexisting' || origin === 'not-issued')
      return {
        status: 'absent',
        method: `assignment-${origin}`,
        observation: {
          ...base,
          assignment:
            origin === 'preexisting'
              ? 'standing, not granted by this case'
              : 'present, but this case never reached it at issue',
        },
      };
    if (origin === undefined)
      return {
        status: 'present',
        method: 'assignment-unproven',
        observation: {
          ...base,
          assignment: 'present; no record shows whether this case created it (not deleted)',
        },
      };
    return { status: 'present', method: 'assignment-state', observation: { ...base, assignment: 'present' } };
  }

  return { issue, revoke, verify };
}

/**
 * {@link AssignmentHolders} read from the Grantline store itself, so every application instance
 * sees the same holders and nothing extra is persisted: a case holds an assignment while it is
 * `issued` or `revoking` with that target issued and its revocation not yet confirmed, or while it
 * is `issuing` (it is about to).
 * `acquire` and `release` are no-ops because the case record is the source of truth.
 *
 * `originOf` is read from the case too: a recorded issuance says `preexisting` or `created`; a
 * target without one in a case whose `issue.failed` event names another target was never reached
 * (`not-issued`: the core records every target issued before the failure). Anything else, above
 * all a crash between the create call and the store write, is unknown (`undefined`): a revoke
 * without a recorded issuance then keeps an existing assignment rather than guess, and verify
 * reports it present (`assignment-unproven`) for a human to decide.
 *
 * Known limit: a case issued at the very moment another case's revocation deletes the same
 * assignment can find it gone; its verification then reports the access absent and the host can
 * re-issue. Reads are one `list` of the active cases per call.
 */
export function createStoreAssignmentHolders(
  store: Pick<GrantStore, 'list' | 'get' | 'events'>,
  system = 'aws',
): AssignmentHolders {
  const targetOf = (targets: Grant['targets'], key: string) =>
    targets.find((t) => {
      if (t.system !== system) return false;
      const parsed = identityCenterParamsSchema.safeParse(t.params ?? {});
      return parsed.success && assignmentKey(parsed.data) === key;
    });
  return {
    async list(key) {
      const out: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await store.list({
          // Why `revoking`: a case whose revocation of this target is still being retried has not
          // let go of the assignment; without it, a case issued meanwhile would find the assignment
          // held by no one, record it as standing access, and never delete it.
          states: ['issuing', 'issued', 'revoking'],
          limit: 500,
          ...(cursor ? { cursor } : {}),
        });
        for (const g of page.grants) {
          const t = targetOf(g.targets, key);
          if (t && (g.state === 'issuing' ? !t.issuance : t.issuance && !t.revocation?.confirmedAt))
            out.push(g.id);
        }
        cursor = page.nextCursor;
      } while (cursor);
      return out;
    },
    async acquire() {},
    async release() {},
    async originOf(key, caseId) {
      const g = await store.get(caseId);
      const t = g && targetOf(g.targets, key);
      if (!t) return undefined;
      if (t.issuance) return t.issuance.ref.preexisting === 'true' ? 'preexisting' : 'created';
      const failed = (await store.events(caseId)).filter((e) => e.type === 'issue.failed').at(-1);
      const failedTarget = failed?.data.failedTargetId;
      return typeof failedTarget === 'string' && failedTarget !== t.id ? 'not-issued' : undefined;
    },
  };
}
