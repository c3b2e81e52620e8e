import { GetRolePolicyCommand, ListRolePoliciesCommand, PutRolePolicyCommand } from '@aws-sdk/client-iam';
import { describe, expect, it } from 'vitest';
import {
  type AwsParams,
  awsParamsSchema,
  createAwsExecutor,
  DENY_POLICY_NAME,
  denyDocument,
  deriveNames,
  parseDenyDocument,
} from '../src/index.js';
import { awsCase, ctxOf } from './support/grants.js';
import { adminClients, createRole, skipWithoutMoto } from './support/moto.js';

const parse = (v: unknown) => awsParamsSchema.parse(v) as AwsParams;
const fast = { consecutiveRejections: 3, backoffMs: 20, maxBackoffMs: 80 };
/** IAM's limit on the total size of a role's inline policies (moto does not enforce it). */
const ROLE_INLINE_LIMIT = 10_240;

describe.skipIf(skipWithoutMoto())(
  'early revocations on one role share one Deny policy (moto_server)',
  () => {
    it('45 revocations on one role leave one Deny policy listing every live session, expired entries pruned, well under the role inline-policy limit', async () => {
      const { iam, sts } = adminClients();
      const role = await createRole(iam);
      const executor = createAwsExecutor({ iam, sts, probe: fast });
      const now = Math.floor(Date.now() / 1000);
      // Already on the role: a session whose Deny has ended (to be pruned) and another case's live one.
      const foreign = `${role.RoleId!}:gl.other-case.deploy.abcdef12`;
      await iam.send(
        new PutRolePolicyCommand({
          RoleName: role.RoleName!,
          PolicyName: DENY_POLICY_NAME,
          PolicyDocument: denyDocument([
            { userId: `${role.RoleId!}:gl.long-gone`, until: now - 60 },
            { userId: foreign, until: now + 3600 },
          ]),
        }),
      );
      const cases = [];
      for (let i = 0; i < 45; i++) {
        const grant = awsCase({
          id: 'deploy',
          resource: role.Arn!,
          permissions: ['iam:ListRoles'],
          params: { roleArn: role.Arn! },
        });
        const ctx = ctxOf(grant, parse);
        const res = await executor.issue(ctx);
        cases.push({
          ...ctx,
          issuance: { ref: res.ref, issuedAt: ctx.now.toISOString(), expiresAt: res.expiresAt.toISOString() },
          trigger: 'manual',
          reason: 'early',
        });
      }
      const sizes: number[] = [];
      for (const rc of cases) {
        const out = await executor.revoke(rc);
        expect(out.detail).toMatchObject({ method: 'session-deny', policyName: DENY_POLICY_NAME });
        const doc = (
          await iam.send(new GetRolePolicyCommand({ RoleName: role.RoleName!, PolicyName: DENY_POLICY_NAME }))
        ).PolicyDocument!;
        sizes.push(decodeURIComponent(doc).length);
      }
      const names =
        (await iam.send(new ListRolePoliciesCommand({ RoleName: role.RoleName! }))).PolicyNames ?? [];
      expect(names.sort()).toEqual([DENY_POLICY_NAME, 'workload'].sort());
      const doc = (
        await iam.send(new GetRolePolicyCommand({ RoleName: role.RoleName!, PolicyName: DENY_POLICY_NAME }))
      ).PolicyDocument;
      const denied = parseDenyDocument(doc).map((x) => x.userId);
      const expected = cases.map(
        (rc) => `${role.RoleId!}:${deriveNames(rc.grant, rc.target, 't').principalName}`,
      );
      expect(denied.sort()).toEqual([...expected, foreign].sort());
      // Each revocation adds one session id (plus its quotes and comma), not a policy.
      const perSession = Math.max(...sizes.slice(1).map((s, i) => s - sizes[i]!));
      expect(perSession).toBeLessThanOrEqual(Math.max(...expected.map((e) => e.length)) + 3);
      expect(sizes.at(-1)!).toBeLessThan(ROLE_INLINE_LIMIT / 2);
      // Every revoked session verifies against the one policy (no credentials held: a fresh executor).
      const fresh = createAwsExecutor({ iam, sts, probe: fast });
      for (const rc of cases.slice(0, 3))
        expect(await fresh.verify(rc)).toMatchObject({
          status: 'absent',
          method: 'deny-policy-state',
          observation: { policyName: DENY_POLICY_NAME },
        });
    });
  },
);
