import { isGrantlineError } from '@grantline/core';
import { describe, expect, it } from 'vitest';
import {
  awsParamsSchema,
  type AwsParams,
  createAwsExecutor,
  createMemoryAssignmentHolders,
} from '../src/index.js';
import * as f from './fixtures/aws-responses.js';
import { FixtureHandler, fixtureClients } from './support/fixture-handler.js';
import { awsCase, ctxOf } from './support/grants.js';

const parse = (v: unknown) => awsParamsSchema.parse(v) as AwsParams;
const params = {
  strategy: 'identity-center',
  instanceArn: f.INSTANCE_ARN,
  permissionSetArn: f.PERMISSION_SET_ARN,
  accountId: f.ACCOUNT,
  principalType: 'USER',
  principalId: f.USER_ID,
};
const target = (extra: Record<string, unknown> = {}) => ({
  id: 'console',
  resource: `aws-account:${f.ACCOUNT}`,
  params: { ...params, ...extra },
});

function setup(handler: FixtureHandler, holders = createMemoryAssignmentHolders(), timeoutMs = 60_000) {
  const { sts, iam, ssoAdmin } = fixtureClients(handler);
  const sleeps: number[] = [];
  const executor = createAwsExecutor({
    sts,
    iam,
    ssoAdmin,
    assignmentHolders: holders,
    poll: { intervalMs: 5, timeoutMs },
    sleep: async (ms) => void sleeps.push(ms),
  });
  return { executor, sleeps };
}
const revokeCtx = (grant: ReturnType<typeof awsCase>, ref: Record<string, string>) => ({
  ...ctxOf(grant, parse),
  issuance: { ref, issuedAt: grant.window.issuedAt!, expiresAt: grant.window.expiresAt! },
  trigger: 'manual',
  reason: 'x',
});

describe('identity-center strategy (fixture: recorded AWS responses through the real SDK clients)', () => {
  it('an ssoAdmin client without assignmentHolders is refused at construction (ERR_VALIDATION), before any call', () => {
    const handler = new FixtureHandler();
    const { sts, iam, ssoAdmin } = fixtureClients(handler);
    let caught: unknown;
    try {
      createAwsExecutor({ sts, iam, ssoAdmin });
    } catch (err) {
      caught = err;
    }
    expect(isGrantlineError(caught) && caught.code).toBe('ERR_VALIDATION');
    expect((caught as { details: { issues: { path: string[] }[] } }).details.issues[0]!.path).toEqual([
      'assignmentHolders',
    ]);
    expect((caught as Error).message).toContain('createStoreAssignmentHolders');
    expect(handler.seen).toHaveLength(0);
    // Without Identity Center, no registry is needed.
    expect(() => createAwsExecutor({ sts, iam })).not.toThrow();
  });

  it('fixture: asynchronous status: create and delete poll until SUCCEEDED; verify then sees no assignment', async () => {
    const handler = new FixtureHandler({
      ListAccountAssignments: f.listAssignments(false),
      CreateAccountAssignment: f.creationStatus('IN_PROGRESS'),
      DescribeAccountAssignmentCreationStatus: [
        f.creationStatus('IN_PROGRESS'),
        f.creationStatus('IN_PROGRESS'),
        f.creationStatus('SUCCEEDED'),
      ],
    });
    const { executor, sleeps } = setup(handler);
    const grant = awsCase(target());
    const res = await executor.issue(ctxOf(grant, parse));
    expect(handler.calls('DescribeAccountAssignmentCreationStatus')).toHaveLength(3);
    expect(handler.calls('DescribeAccountAssignmentCreationStatus')[0]!.json).toEqual({
      InstanceArn: f.INSTANCE_ARN,
      AccountAssignmentCreationRequestId: 'c1b2c3d4-EXAMPLE',
    });
    expect(sleeps).toEqual([5, 10]);
    expect(handler.calls('CreateAccountAssignment')[0]!.json).toMatchObject({
      TargetId: f.ACCOUNT,
      TargetType: 'AWS_ACCOUNT',
      PrincipalType: 'USER',
      PrincipalId: f.USER_ID,
    });
    expect(res.ref).toMatchObject({ strategy: 'identity-center', creationRequestId: 'c1b2c3d4-EXAMPLE' });

    handler
      .on('ListAccountAssignments', [f.listAssignments(true), f.listAssignments(false)])
      .on('DeleteAccountAssignment', f.deletionStatus('IN_PROGRESS'))
      .on('DescribeAccountAssignmentDeletionStatus', [
        f.deletionStatus('IN_PROGRESS'),
        f.deletionStatus('SUCCEEDED'),
      ]);
    const rc = revokeCtx(grant, res.ref);
    expect(await executor.revoke(rc)).toMatchObject({
      alreadyGone: false,
      detail: { method: 'assignment-delete', deletionRequestId: 'd1b2c3d4-EXAMPLE' },
    });
    expect(handler.calls('DescribeAccountAssignmentDeletionStatus')).toHaveLength(2);
    expect(await executor.verify(rc)).toMatchObject({ status: 'absent', method: 'assignment-state' });
  });

  it("fixture: a FAILED request is a non-retryable error with AWS's reason; one still IN_PROGRESS after the timeout is retryable", async () => {
    const failing = new FixtureHandler({
      ListAccountAssignments: f.listAssignments(false),
      CreateAccountAssignment: f.creationStatus('IN_PROGRESS'),
      DescribeAccountAssignmentCreationStatus: f.creationStatus(
        'FAILED',
        'c1',
        'Received a 404 status error: No permission set found',
      ),
    });
    const err = await setup(failing)
      .executor.issue(ctxOf(awsCase(target()), parse))
      .catch((e: unknown) => e);
    expect(
      isGrantlineError(err) && [err.code, err.retryable, err.message.includes('No permission set found')],
    ).toEqual(['ERR_EXECUTOR', false, true]);

    const slow = new FixtureHandler({
      ListAccountAssignments: f.listAssignments(false),
      CreateAccountAssignment: f.creationStatus('IN_PROGRESS'),
      DescribeAccountAssignmentCreationStatus: f.creationStatus('IN_PROGRESS'),
    });
    const err2 = await setup(slow, createMemoryAssignmentHolders(), 0)
      .executor.issue(ctxOf(awsCase(target()), parse))
      .catch((e: unknown) => e);
    expect(isGrantlineError(err2) && [err2.code, err2.retryable]).toEqual(['ERR_EXECUTOR', true]);
  });

  it('fixture: overlap: a second active case holding the same assignment keeps it until that case ends', async () => {
    const holders = createMemoryAssignmentHolders();
    const handler = new FixtureHandler({
      ListAccountAssignments: f.listAssignments(false),
      CreateAccountAssignment: f.creationStatus('SUCCEEDED'),
    });
    const { executor } = setup(handler, holders);
    const a = awsCase(target());
    const b = awsCase(target());
    const ra = await executor.issue(ctxOf(a, parse));
    handler.on('ListAccountAssignments', f.listAssignments(true));
    const rb = await executor.issue(ctxOf(b, parse));
    expect(handler.calls('CreateAccountAssignment')).toHaveLength(1);
    expect(rb.ref.sharedWith).toBe(a.id);
    expect(rb.ref.preexisting).toBeUndefined();

    const outA = await executor.revoke(revokeCtx(a, ra.ref));
    expect(outA).toMatchObject({ detail: { method: 'assignment-handoff', keptFor: [b.id] } });
    expect(handler.calls('DeleteAccountAssignment')).toHaveLength(0);
    expect(await executor.verify(revokeCtx(a, ra.ref))).toMatchObject({
      status: 'absent',
      method: 'assignment-handoff',
      observation: { heldBy: [b.id] },
    });

    handler.on('DeleteAccountAssignment', f.deletionStatus('SUCCEEDED'));
    const outB = await executor.revoke(revokeCtx(b, rb.ref));
    expect(outB).toMatchObject({ alreadyGone: false, detail: { method: 'assignment-delete' } });
    expect(handler.calls('DeleteAccountAssignment')).toHaveLength(1);
    // With the assignment still listed and no other holder, verify must not claim absence.
    expect((await executor.verify(revokeCtx(b, rb.ref))).status).toBe('present');
  });

  it('fixture: standing access that existed before the case is never deleted by it', async () => {
    const handler = new FixtureHandler({ ListAccountAssignments: f.listAssignments(true) });
    const { executor } = setup(handler);
    const g = awsCase(target());
    const res = await executor.issue(ctxOf(g, parse));
    expect(res.ref.preexisting).toBe('true');
    expect(await executor.revoke(revokeCtx(g, res.ref))).toMatchObject({
      alreadyGone: true,
      detail: { method: 'assignment-preexisting' },
    });
    expect(handler.calls('DeleteAccountAssignment')).toHaveLength(0);
  });

  it('fixture: with revokeSessions, live sessions get the documented Deny (user id, older tokens), stale Denies are collected, and the permission set is re-provisioned', async () => {
    const old = {
      Sid: 'GrantlineRevokeaaaaaaaaaaaa',
      Effect: 'Deny',
      Action: '*',
      Resource: '*',
      Condition: { DateLessThan: { 'aws:TokenIssueTime': '2020-01-01T00:00:00.000Z' } },
    };
    const existing = JSON.stringify({
      Version: '2012-10-17',
      Statement: [{ Sid: 'ReadOnly', Effect: 'Allow', Action: 's3:Get*', Resource: '*' }, old],
    });
    const handler = new FixtureHandler({
      ListAccountAssignments: f.listAssignments(false),
      CreateAccountAssignment: f.creationStatus('SUCCEEDED'),
    });
    const { executor } = setup(handler);
    const g = awsCase(target({ revokeSessions: true }));
    // Answers with what the executor wrote (read when the request arrives).
    const afterWrite = {
      get body() {
        return JSON.stringify({
          InlinePolicy: handler.calls('PutInlinePolicyToPermissionSet')[0]!.json!.InlinePolicy,
        });
      },
    };
    const res = await executor.issue(ctxOf(g, parse));
    handler
      .on('ListAccountAssignments', f.listAssignments(true))
      .on('DeleteAccountAssignment', f.deletionStatus('SUCCEEDED'))
      // The second read is the check after the write: the Deny counts only once it is seen in place.
      .on('GetInlinePolicyForPermissionSet', [f.inlinePolicy(existing), afterWrite])
      .on('PutInlinePolicyToPermissionSet', f.jsonEmpty())
      .on('ProvisionPermissionSet', f.provisioningStatus('IN_PROGRESS'))
      .on('DescribePermissionSetProvisioningStatus', [
        f.provisioningStatus('IN_PROGRESS'),
        f.provisioningStatus('SUCCEEDED'),
      ]);
    const rc = revokeCtx(g, res.ref);
    const out = await executor.revoke(rc);
    const put = JSON.parse(handler.calls('PutInlinePolicyToPermissionSet')[0]!.json!.InlinePolicy as string);
    expect(put.Statement[0].Sid).toBe('ReadOnly');
    // A Grantline Deny whose cut-off is older than the longest possible session is collected.
    expect(put.Statement).toHaveLength(2);
    expect(put.Statement[1]).toMatchObject({
      Effect: 'Deny',
      Action: '*',
      Condition: {
        StringEquals: { 'identitystore:userId': f.USER_ID },
        DateLessThan: { 'aws:TokenIssueTime': rc.now.toISOString() },
      },
    });
    expect(handler.calls('ProvisionPermissionSet')[0]!.json).toMatchObject({
      TargetType: 'AWS_ACCOUNT',
      TargetId: f.ACCOUNT,
    });
    expect(handler.calls('DescribePermissionSetProvisioningStatus')).toHaveLength(2);
    expect(out.detail).toMatchObject({ sessionDeny: { tokenIssuedBefore: rc.now.toISOString() } });
  });
});
