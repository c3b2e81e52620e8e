import {
  DeleteRolePolicyCommand,
  GetRoleCommand,
  GetRolePolicyCommand,
  ListRolePoliciesCommand,
  PutRolePolicyCommand,
} from '@aws-sdk/client-iam';
import { AssumeRoleCommand, type AssumeRoleCommandOutput } from '@aws-sdk/client-sts';
import {
  ErrorCodes,
  type ExecutorContext,
  GrantlineError,
  type Issuance,
  type IssueResult,
  type RevokeContext,
  type RevokeResult,
  type VerifyResult,
} from '@grantline/core';
import type { StrategyDeps } from './deps.js';
import { invalid, isNotFound, toExecutorError } from './errors.js';
import { checkSourceIdentity, checkTag, deriveNames, parseDenyPolicyName, roleNameOf } from './names.js';
import { type AssumedRoleParams, grantedActions } from './params.js';
import { roleLockKey, withPolicyLock } from './policy-lock.js';
import { type ProbeObservation, type ProbeRun, probeOnce, probeUntilRejected } from './probe.js';

/** The smallest `DurationSeconds` STS accepts. */
export const MIN_SESSION_SECONDS = 900;
/** AWS's limit on a plaintext inline session policy. */
export const MAX_SESSION_POLICY_CHARS = 2048;
/** Extra time a Deny stays attached beyond the session's expiry, for clock skew. */
const DENY_MARGIN_SECONDS = 300;

type Ctx = ExecutorContext<AssumedRoleParams>;
type RCtx = RevokeContext<AssumedRoleParams>;

/** The end of the case window as the executor sees it. */
function windowEnd(ctx: Ctx): Date {
  return ctx.grant.window.expiresAt
    ? new Date(ctx.grant.window.expiresAt)
    : new Date(ctx.now.getTime() + ctx.grant.window.durationSeconds * 1000);
}

/** The session policy: the grant's actions (and source CIDRs), plus the probe's read of the role itself. */
export function sessionPolicy(ctx: Ctx, where: string): string {
  const actions = grantedActions(ctx.target, where, 'an assumed-role session');
  const cidrs = ctx.grant.policy.constraints?.sourceCidrs ?? [];
  const grantStatement: Record<string, unknown> = {
    Sid: 'Grant',
    Effect: 'Allow',
    Action: actions,
    Resource: ctx.target.params.resources ?? '*',
    ...(cidrs.length > 0 ? { Condition: { IpAddress: { 'aws:SourceIp': cidrs } } } : {}),
  };
  // Why the probe statement: verification signs `iam:GetRole` on the role with the session's own
  // credentials; it must be allowed while the session is live so that a later rejection means the
  // Deny, not a missing permission. It reveals only the role's metadata to its own session, and has
  // no source-IP condition because the probe runs from the executor's host.
  const probeStatement = {
    Sid: 'GrantlineProbe',
    Effect: 'Allow',
    Action: 'iam:GetRole',
    Resource: ctx.target.params.roleArn,
  };
  const doc = JSON.stringify({ Version: '2012-10-17', Statement: [grantStatement, probeStatement] });
  if (doc.length > MAX_SESSION_POLICY_CHARS) {
    throw invalid(
      where,
      ['target', 'permissions'],
      `the session policy is ${doc.length} characters; AWS allows ${MAX_SESSION_POLICY_CHARS} (use wildcards or fewer resources)`,
    );
  }
  return doc;
}

/**
 * Name of the one inline role policy in which Grantline denies, on that role, every session it
 * revoked early. Why one policy and not one per session: IAM caps a role's inline policies at
 * 10,240 characters in total, so a policy per revocation (~250 characters each) hits
 * `LimitExceeded` (not retryable) after a few dozen concurrent revocations; one policy listing the
 * session ids grows by one id (~90 characters) per session and sheds them as they expire.
 */
export const DENY_POLICY_NAME = 'grantline-deny';
/** Deny end times are rounded up to this, so sessions revoked around the same time share a statement. */
export const DENY_BUCKET_SECONDS = 900;
/** How many times the Deny policy is re-read and written again when another writer overwrote it. */
const DENY_WRITE_ATTEMPTS = 5;
const DENY_SID = /^GrantlineRevokedUntil(\d{9,11})$/;

/** One session denied by {@link DENY_POLICY_NAME}: its `aws:userid` and the end of its Deny (epoch s). */
export interface DeniedSession {
  userId: string;
  until: number;
}

/**
 * The document of {@link DENY_POLICY_NAME}: `Deny *` for the listed sessions, one statement per
 * Deny end time (`Sid` `GrantlineRevokedUntil<epoch>`), the session ids in its `aws:userid`
 * condition. Why aws:userid: for an assumed-role session it is "<role id>:<session name>", so the
 * Deny hits exactly the sessions of a case and target on this role (also a re-issued one), and never
 * another case's session of the same role.
 */
export function denyDocument(sessions: DeniedSession[]): string {
  const byUntil = new Map<number, Set<string>>();
  for (const x of sessions) byUntil.set(x.until, (byUntil.get(x.until) ?? new Set()).add(x.userId));
  return JSON.stringify({
    Version: '2012-10-17',
    Statement: [...byUntil.entries()]
      .sort(([a], [b]) => a - b)
      .map(([until, ids]) => ({
        Sid: `GrantlineRevokedUntil${until}`,
        Effect: 'Deny',
        Action: '*',
        Resource: '*',
        Condition: { StringEquals: { 'aws:userid': [...ids].sort() } },
      })),
  });
}

/** The sessions a {@link denyDocument} denies; statements not of that form are ignored. */
export function parseDenyDocument(doc: string | undefined): DeniedSession[] {
  const parsed = parsePolicy(doc);
  const out: DeniedSession[] = [];
  for (const st of parsed?.Statement ?? []) {
    const m = DENY_SID.exec(String(st.Sid ?? ''));
    const all = st.Action === '*' || (Array.isArray(st.Action) && st.Action.includes('*'));
    if (!m || st.Effect !== 'Deny' || !all) continue;
    const ids = st.Condition?.StringEquals?.['aws:userid'];
    for (const userId of Array.isArray(ids) ? ids : ids ? [ids] : [])
      out.push({ userId, until: Number(m[1]) });
  }
  return out;
}

/** Assumed-role sessions: STS `AssumeRole`, revoked early by a session-scoped Deny on the role. */
export function createAssumedRoleStrategy(deps: StrategyDeps) {
  const getRole = async (roleArn: string) => {
    try {
      const out = await deps.iam.send(new GetRoleCommand({ RoleName: roleNameOf(roleArn) }));
      return { roleId: out.Role?.RoleId ?? '', maxSessionSeconds: out.Role?.MaxSessionDuration ?? 3600 };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw toExecutorError(err, 'iam:GetRole', [], { roleArn });
    }
  };

  const denyPolicies = async (roleArn: string) => {
    const names: string[] = [];
    let marker: string | undefined;
    try {
      do {
        const out = await deps.iam.send(
          new ListRolePoliciesCommand({
            RoleName: roleNameOf(roleArn),
            ...(marker ? { Marker: marker } : {}),
          }),
        );
        names.push(...(out.PolicyNames ?? []));
        marker = out.IsTruncated ? out.Marker : undefined;
      } while (marker);
    } catch (err) {
      throw toExecutorError(err, 'iam:ListRolePolicies', [], { roleArn });
    }
    return names.flatMap((n) => {
      const p = parseDenyPolicyName(n);
      return p ? [{ name: n, ...p }] : [];
    });
  };

  /** The sessions denied by the role's {@link DENY_POLICY_NAME} (none when it does not exist). */
  const readDenied = async (roleArn: string): Promise<DeniedSession[]> => {
    try {
      const out = await deps.iam.send(
        new GetRolePolicyCommand({ RoleName: roleNameOf(roleArn), PolicyName: DENY_POLICY_NAME }),
      );
      return parseDenyDocument(out.PolicyDocument);
    } catch (err) {
      if (isNotFound(err)) return [];
      throw toExecutorError(err, 'iam:GetRolePolicy', [], { roleArn, policyName: DENY_POLICY_NAME });
    }
  };

  /**
   * Adds `userId` to the role's Deny policy until at least `until` (rounded up to
   * {@link DENY_BUCKET_SECONDS}), dropping sessions whose Deny has ended. The policy is one document,
   * read-modify-written, and IAM has no compare-and-set: within this process every write to the
   * role's policy (this and {@link collectGarbage}, from any executor instance) runs under one lock
   * per role, so none works from a stale read. Across processes a stale writer can still drop the
   * entry: the re-read after the write catches a loss that happened before it (the write is then
   * repeated), and verify catches a later one (the entry must be in place for `absent`).
   */
  const denySession = (roleArn: string, userId: string, until: number, now: Date) =>
    withPolicyLock(roleLockKey(roleArn), async () => {
      const bucketed = Math.ceil(until / DENY_BUCKET_SECONDS) * DENY_BUCKET_SECONDS;
      const covers = (xs: DeniedSession[]) => xs.find((x) => x.userId === userId && x.until >= until);
      for (let attempt = 0; attempt < DENY_WRITE_ATTEMPTS; attempt++) {
        const current = await readDenied(roleArn);
        const live = current.filter((x) => x.until * 1000 > now.getTime() && x.userId !== userId);
        try {
          await deps.iam.send(
            new PutRolePolicyCommand({
              RoleName: roleNameOf(roleArn),
              PolicyName: DENY_POLICY_NAME,
              PolicyDocument: denyDocument([...live, { userId, until: bucketed }]),
            }),
          );
        } catch (err) {
          throw toExecutorError(err, 'iam:PutRolePolicy', [], { roleArn, policyName: DENY_POLICY_NAME });
        }
        const placed = covers(await readDenied(roleArn));
        if (placed) return placed;
      }
      throw new GrantlineError(
        ErrorCodes.EXECUTOR,
        `aws iam:PutRolePolicy: the session Deny was overwritten by concurrent writers ${DENY_WRITE_ATTEMPTS} times`,
        {
          retryable: true,
          details: { operation: 'iam:PutRolePolicy', roleArn, policyName: DENY_POLICY_NAME },
        },
      );
    });

  /**
   * Removes Denies whose session has long expired: sessions from {@link DENY_POLICY_NAME}, and the
   * per-session policies of earlier versions ({@link parseDenyPolicyName}). Best effort: failures are
   * logged only.
   */
  const collectGarbage = async (roleArn: string, now: Date) => {
    let removed = 0;
    for (const p of await denyPolicies(roleArn)) {
      if (p.until * 1000 > now.getTime()) continue;
      try {
        await deps.iam.send(
          new DeleteRolePolicyCommand({ RoleName: roleNameOf(roleArn), PolicyName: p.name }),
        );
        removed++;
      } catch (err) {
        if (!isNotFound(err))
          deps.logger.warn('grantline-aws: could not remove an expired deny policy', {
            roleArn,
            policy: p.name,
            code: toExecutorError(err, 'iam:DeleteRolePolicy').details.awsCode,
          });
      }
    }
    // The consolidated policy sheds sessions whose Deny has ended (deleted once none is left). Under
    // the role's lock, so the read is fresh: the write keeps every entry another revoke added.
    removed += await withPolicyLock(roleLockKey(roleArn), async () => {
      const denied = await readDenied(roleArn);
      const live = denied.filter((x) => x.until * 1000 > now.getTime());
      if (live.length === denied.length) return 0;
      try {
        if (live.length === 0)
          await deps.iam.send(
            new DeleteRolePolicyCommand({ RoleName: roleNameOf(roleArn), PolicyName: DENY_POLICY_NAME }),
          );
        else
          await deps.iam.send(
            new PutRolePolicyCommand({
              RoleName: roleNameOf(roleArn),
              PolicyName: DENY_POLICY_NAME,
              PolicyDocument: denyDocument(live),
            }),
          );
        return denied.length - live.length;
      } catch (err) {
        if (!isNotFound(err))
          deps.logger.warn('grantline-aws: could not prune the deny policy', {
            roleArn,
            policy: DENY_POLICY_NAME,
            code: toExecutorError(err, 'iam:PutRolePolicy').details.awsCode,
          });
        return 0;
      }
    });
    return removed;
  };

  /** AssumeRole for the case and target, for a session that should end at `end`. */
  async function assume(ctx: Ctx, end: Date, where: string) {
    const names = deriveNames(ctx.grant, ctx.target, where);
    const sourceIdentity = checkSourceIdentity(ctx.grant.subject.id, where);
    const tags = [
      checkTag('grantline:case', ctx.grant.id, where, ['grant', 'id']),
      checkTag('grantline:target', ctx.target.id, where, ['target', 'id']),
      checkTag('grantline:requester', ctx.grant.requester.id, where, ['grant', 'requester', 'id']),
      ...(ctx.grant.justification.ticket
        ? [
            checkTag('grantline:ticket', ctx.grant.justification.ticket, where, [
              'grant',
              'justification',
              'ticket',
            ]),
          ]
        : []),
    ];
    const policy = sessionPolicy(ctx, where);
    const role = await getRole(ctx.target.params.roleArn);
    if (!role)
      throw toExecutorError(
        Object.assign(new Error(`role ${ctx.target.params.roleArn} does not exist`), {
          name: 'NoSuchEntity',
        }),
        'iam:GetRole',
      );
    const remaining = Math.floor((end.getTime() - ctx.now.getTime()) / 1000);
    if (remaining <= 0)
      throw invalid(where, ['grant', 'window', 'expiresAt'], 'the window has already ended');
    const cap = Math.min(role.maxSessionSeconds, ctx.target.params.maxSessionDurationSeconds ?? 43_200);
    // Clamped to the remaining window, but never below STS's 900 s minimum: a shorter window gets a
    // 900 s session and a Deny at the window's end (see revoke).
    const duration = Math.max(MIN_SESSION_SECONDS, Math.min(remaining, cap));
    let out: AssumeRoleCommandOutput;
    try {
      out = await deps.sts.send(
        new AssumeRoleCommand({
          RoleArn: ctx.target.params.roleArn,
          RoleSessionName: names.principalName,
          SourceIdentity: sourceIdentity,
          DurationSeconds: duration,
          Policy: policy,
          Tags: tags,
          ...(ctx.target.params.externalId ? { ExternalId: ctx.target.params.externalId } : {}),
        }),
      );
    } catch (err) {
      throw toExecutorError(err, 'sts:AssumeRole', [], {
        roleArn: ctx.target.params.roleArn,
        sessionName: names.principalName,
      });
    }
    const c = out.Credentials;
    if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken || !c.Expiration) {
      throw toExecutorError(
        Object.assign(new Error('AssumeRole returned no credentials'), { name: 'InternalFailure' }),
        'sts:AssumeRole',
      );
    }
    const sessionExpiresAt = new Date(c.Expiration);
    const secretValues = [c.SecretAccessKey, c.SessionToken];
    // Baseline probe: the probe is only meaningful if it works while the session is live.
    let baseline: 'accepted' | 'denied' = 'denied';
    try {
      const probe = deps.probeClients(
        { accessKeyId: c.AccessKeyId, secretAccessKey: c.SecretAccessKey, sessionToken: c.SessionToken },
        ctx.grant.id,
      );
      const o = await probeOnce(
        () => probe.iam.send(new GetRoleCommand({ RoleName: roleNameOf(ctx.target.params.roleArn) })),
        () => new Date(),
      );
      baseline = o.outcome === 'accepted' ? 'accepted' : 'denied';
    } catch (err) {
      deps.logger.warn(
        'grantline-aws: baseline probe failed; verification will rely on the deny policy state',
        {
          caseId: ctx.grant.id,
          targetId: ctx.target.id,
          code: toExecutorError(err, 'iam:GetRole', secretValues).details.awsCode,
        },
      );
    }
    deps.memory.add(names.key, {
      accessKeyId: c.AccessKeyId,
      secretAccessKey: c.SecretAccessKey,
      sessionToken: c.SessionToken,
      expiresAt: sessionExpiresAt,
      baseline,
    });
    return {
      ref: {
        strategy: 'assumed-role',
        roleArn: ctx.target.params.roleArn,
        roleId: role.roleId,
        sessionName: names.principalName,
        sourceIdentity,
        accessKeyId: c.AccessKeyId,
        assumedRoleArn: out.AssumedRoleUser?.Arn ?? '',
        sessionExpiresAt: sessionExpiresAt.toISOString(),
        durationSeconds: String(duration),
        probeBaseline: baseline,
      },
      sessionExpiresAt,
      secret: { secretAccessKey: c.SecretAccessKey, sessionToken: c.SessionToken },
    };
  }

  async function issue(ctx: Ctx): Promise<IssueResult> {
    const end = windowEnd(ctx);
    const a = await assume(ctx, end, 'aws assumed-role issue');
    return {
      ref: a.ref,
      expiresAt: new Date(Math.min(a.sessionExpiresAt.getTime(), end.getTime())),
      secret: a.secret,
    };
  }

  /**
   * An extension past the session's expiry needs a new session: same session name, SourceIdentity,
   * tags and session policy, so the same Deny covers old and new. The old session stays valid until
   * its own expiry. The new access key id is returned with the secret (the case's reference keeps
   * the first one; attribution also matches by role session). The expiry returned is the session's
   * own, so that a revoke after a restart still covers it.
   */
  async function renew(
    ctx: Ctx & { issuance: Issuance; expiresAt: Date },
  ): Promise<{ expiresAt: Date; secret?: Record<string, string> }> {
    const current = Date.parse(ctx.issuance.ref.sessionExpiresAt ?? ctx.issuance.expiresAt);
    const held = deps.memory.latestExpiry(deriveNames(ctx.grant, ctx.target, 'aws assumed-role renew').key);
    const live = Math.max(current, held?.getTime() ?? 0);
    if (live >= ctx.expiresAt.getTime()) return { expiresAt: new Date(live) };
    const a = await assume(ctx, ctx.expiresAt, 'aws assumed-role renew');
    return { expiresAt: a.sessionExpiresAt, secret: { accessKeyId: a.ref.accessKeyId, ...a.secret } };
  }

  /** Latest time any session of this case+target can still be valid, and whether we know it was issued. */
  const sessionHorizon = (ctx: RCtx, key: string, roleMaxSeconds: number) => {
    const known: number[] = [];
    const fromRef = ctx.issuance?.ref.sessionExpiresAt
      ? Date.parse(ctx.issuance.ref.sessionExpiresAt)
      : Number.NaN;
    if (!Number.isNaN(fromRef)) known.push(fromRef);
    // After an extension the issuance's expiry is the renewed session's own expiry.
    if (ctx.issuance) known.push(Date.parse(ctx.issuance.expiresAt));
    const held = deps.memory.latestExpiry(key);
    if (held) known.push(held.getTime());
    if (known.length > 0) return { until: new Date(Math.max(...known)), knownIssued: true };
    // Nothing recorded (crash between intent and answer, or a restart): assume the worst, a session
    // of the role's maximum length starting now.
    return { until: new Date(ctx.now.getTime() + roleMaxSeconds * 1000), knownIssued: false };
  };

  async function revoke(ctx: RCtx): Promise<RevokeResult> {
    const where = 'aws assumed-role revoke';
    const names = deriveNames(ctx.grant, ctx.target, where);
    const roleArn = ctx.target.params.roleArn;
    const now = ctx.now.getTime();
    const end = ctx.grant.window.expiresAt ? Date.parse(ctx.grant.window.expiresAt) : undefined;
    // Decided before any AWS call: a session known to be over (or ending now) needs nothing.
    const known = sessionHorizon(ctx, names.key, 0);
    if (
      ctx.trigger === 'expiry' &&
      known.knownIssued &&
      known.until.getTime() <= now + deps.expiryToleranceMs
    ) {
      // Natural expiry: the session's own expiry matches the window; STS ends it, no call is needed.
      return {
        alreadyGone: true,
        detail: { method: 'natural-expiry', sessionExpiresAt: known.until.toISOString() },
      };
    }
    if (known.knownIssued && known.until.getTime() <= now) {
      return {
        alreadyGone: true,
        detail: { method: 'session-expired', sessionExpiresAt: known.until.toISOString() },
      };
    }
    const role = await getRole(roleArn);
    if (!role) {
      // A deleted role takes its sessions with it: nothing can be denied and nothing is left to deny.
      deps.memory.forget(names.key);
      return { alreadyGone: true, detail: { method: 'role-deleted', roleArn } };
    }
    const roleId = ctx.issuance?.ref.roleId || role.roleId;
    const horizon = known.knownIssued ? known : sessionHorizon(ctx, names.key, role.maxSessionSeconds);
    const until = Math.ceil(horizon.until.getTime() / 1000) + DENY_MARGIN_SECONDS;
    const userId = `${roleId}:${names.principalName}`;
    const needed = until - DENY_MARGIN_SECONDS;
    const legacy = (await denyPolicies(roleArn)).filter((p) => p.sessionName === names.principalName);
    const covering =
      (await readDenied(roleArn)).find((x) => x.userId === userId && x.until >= needed) ??
      legacy.find((p) => p.until >= needed);
    if (covering) {
      return {
        alreadyGone: true,
        detail: {
          method: 'session-deny',
          policyName: 'name' in covering ? covering.name : DENY_POLICY_NAME,
          roleArn,
          denyUntil: new Date(covering.until * 1000).toISOString(),
        },
      };
    }
    const placed = await denySession(roleArn, userId, until, ctx.now);
    // Per-session Denies of earlier versions for this session are superseded by the entry just written.
    for (const old of legacy) {
      await deps.iam
        .send(new DeleteRolePolicyCommand({ RoleName: roleNameOf(roleArn), PolicyName: old.name }))
        .catch(() => undefined);
    }
    await collectGarbage(roleArn, ctx.now).catch((err) =>
      deps.logger.warn('grantline-aws: deny policy garbage collection failed', {
        roleArn,
        code: toExecutorError(err, 'gc').details.awsCode,
      }),
    );
    return {
      // Without a record of the session this Deny is a precaution: nothing is known to have existed.
      alreadyGone: !horizon.knownIssued,
      detail: {
        method: 'session-deny',
        roleArn,
        policyName: DENY_POLICY_NAME,
        condition: `aws:userid=${userId}`,
        denyUntil: new Date(placed.until * 1000).toISOString(),
        ...(end !== undefined && horizon.until.getTime() > end ? { sessionOutlivesWindow: true } : {}),
        ...(horizon.knownIssued ? {} : { precautionary: true }),
      },
    };
  }

  /**
   * The Deny of `userId` on the role that lasts until at least `horizon`: its entry in
   * {@link DENY_POLICY_NAME}, or a per-session policy of an earlier version; `undefined` when none.
   */
  const observedDeny = async (
    roleArn: string,
    userId: string,
    sessionName: string,
    horizon: Date,
  ): Promise<{ policyName: string; until: number } | undefined> => {
    const entry = (await readDenied(roleArn)).find(
      (x) => x.userId === userId && x.until * 1000 >= horizon.getTime(),
    );
    if (entry) return { policyName: DENY_POLICY_NAME, until: entry.until };
    // A per-session Deny written by an earlier version still counts.
    for (const p of (await denyPolicies(roleArn)).filter((x) => x.sessionName === sessionName)) {
      let doc: string | undefined;
      try {
        const out = await deps.iam.send(
          new GetRolePolicyCommand({ RoleName: roleNameOf(roleArn), PolicyName: p.name }),
        );
        doc = out.PolicyDocument;
      } catch (err) {
        if (isNotFound(err)) continue;
        throw toExecutorError(err, 'iam:GetRolePolicy', [], { roleArn });
      }
      const parsed = parsePolicy(doc);
      const denies = parsed?.Statement?.some(
        (s) =>
          s.Effect === 'Deny' &&
          (s.Action === '*' || (Array.isArray(s.Action) && s.Action.includes('*'))) &&
          s.Condition?.StringEquals?.['aws:userid'] === userId,
      );
      if (denies && p.until * 1000 >= horizon.getTime()) return { policyName: p.name, until: p.until };
    }
    return undefined;
  };

  async function verify(ctx: RCtx): Promise<VerifyResult> {
    const where = 'aws assumed-role verify';
    const names = deriveNames(ctx.grant, ctx.target, where);
    const roleArn = ctx.target.params.roleArn;
    const held = deps.memory.get(names.key).filter((c) => c.baseline === 'accepted');
    if (held.length > 0) {
      const runs: { accessKeyId: string; observations: ProbeObservation[] }[] = [];
      for (const c of held) {
        const clients = deps.probeClients(c, ctx.grant.id);
        let run: ProbeRun;
        try {
          run = await probeUntilRejected(
            () => clients.iam.send(new GetRoleCommand({ RoleName: roleNameOf(roleArn) })),
            // AWS's message names the reason: an implicit deny ("no identity-based policy allows")
            // means the probe action itself went missing, which says nothing about the Deny.
            (o) =>
              (o.outcome === 'denied' && !o.implicitDeny) ||
              o.outcome === 'expired' ||
              o.outcome === 'invalid-credentials',
            deps.probe,
            () => new Date(),
            deps.sleep,
          );
        } catch (err) {
          throw toExecutorError(err, 'probe iam:GetRole', [c.secretAccessKey, c.sessionToken ?? '']);
        }
        runs.push({ accessKeyId: c.accessKeyId, observations: run.observations });
        if (!run.rejected) {
          return {
            status: 'present',
            method: 'signed-probe',
            observation: { probe: 'iam:GetRole', roleArn, sessions: runs },
          };
        }
      }
      // A probe refused by an explicit Deny counts only while Grantline's own entry is in place: the
      // refusal may come from IAM's propagation delay after the entry was lost to a concurrent
      // writer in another process (no compare-and-set), or from an unrelated Deny someone may lift.
      // Then the service revokes again, which puts the entry back.
      if (runs.some((r) => r.observations.at(-1)?.outcome === 'denied')) {
        // The role id is in the issuance; only without one is the role read (gone: nothing to deny).
        const roleId = ctx.issuance?.ref.roleId || (await getRole(roleArn))?.roleId;
        if (roleId) {
          const expected = `${roleId}:${names.principalName}`;
          // Credentials are held, so the latest session's expiry is known (no worst case needed).
          const horizon = sessionHorizon(ctx, names.key, 0).until;
          if (!(await observedDeny(roleArn, expected, names.principalName, horizon)))
            return {
              status: 'present',
              method: 'deny-policy-state',
              observation: {
                roleArn,
                sessionName: names.principalName,
                denyPolicy: 'missing',
                condition: `aws:userid=${expected}`,
                note: 'the probe was refused, but the Deny policy does not list this session',
                sessions: runs,
                checkedAt: ctx.now.toISOString(),
              },
            };
        }
      }
      // Verified: the secrets have served their purpose and are dropped from memory now.
      deps.memory.forget(names.key);
      return {
        status: 'absent',
        method: 'signed-probe',
        observation: {
          probe: 'iam:GetRole',
          roleArn,
          sessionName: names.principalName,
          consecutiveRejections: deps.probe.consecutiveRejections,
          sessions: runs,
        },
      };
    }
    const sessionExpiresAt = ctx.issuance?.ref.sessionExpiresAt ?? ctx.issuance?.expiresAt;
    if (sessionExpiresAt && Date.parse(sessionExpiresAt) <= ctx.now.getTime() - deps.expiryToleranceMs) {
      return {
        status: 'absent',
        method: 'session-expired',
        observation: {
          sessionName: names.principalName,
          sessionExpiresAt,
          checkedAt: ctx.now.toISOString(),
          note: 'STS rejects session credentials after their expiration',
        },
      };
    }
    // No credentials in this process (restart, or issued elsewhere): observe the Deny's state instead.
    const role = await getRole(roleArn);
    if (!role)
      return {
        status: 'absent',
        method: 'role-deleted',
        observation: { roleArn, checkedAt: ctx.now.toISOString() },
      };
    const roleId = ctx.issuance?.ref.roleId || role.roleId;
    const expected = `${roleId}:${names.principalName}`;
    const deny = await observedDeny(
      roleArn,
      expected,
      names.principalName,
      sessionHorizon(ctx, names.key, role.maxSessionSeconds).until,
    );
    if (deny) {
      return {
        status: 'absent',
        method: 'deny-policy-state',
        observation: {
          roleArn,
          policyName: deny.policyName,
          condition: `aws:userid=${expected}`,
          denyUntil: new Date(deny.until * 1000).toISOString(),
          probe: 'not possible: credentials not held by this process',
        },
      };
    }
    return {
      status: 'present',
      method: 'deny-policy-state',
      observation: {
        roleArn,
        sessionName: names.principalName,
        denyPolicy: 'missing',
        checkedAt: ctx.now.toISOString(),
      },
    };
  }

  return { issue, renew, revoke, verify, collectGarbage };
}

interface PolicyDoc {
  Statement?: {
    Sid?: string;
    Effect?: string;
    Action?: string | string[];
    Condition?: { StringEquals?: Record<string, string | string[]> };
  }[];
}

function parsePolicy(doc: string | undefined): PolicyDoc | null {
  if (!doc) return null;
  try {
    return JSON.parse(doc.startsWith('%') ? decodeURIComponent(doc) : doc) as PolicyDoc;
  } catch {
    try {
      return JSON.parse(decodeURIComponent(doc)) as PolicyDoc;
    } catch {
      return null;
    }
  }
}
