import { describe, expect, it } from 'vitest';
import {
  attributeRecords,
  awsParamsSchema,
  type AwsParams,
  type CloudTrailRecord,
  createAwsExecutor,
} from '../src/index.js';
import * as f from './fixtures/aws-responses.js';
import { FixtureHandler, fixtureClients } from './support/fixture-handler.js';
import { awsCase, ctxOf } from './support/grants.js';

const parse = (v: unknown) => awsParamsSchema.parse(v) as AwsParams;
const target = {
  id: 'deploy',
  resource: f.ROLE_ARN,
  permissions: ['iam:ListRoles'],
  params: { roleArn: f.ROLE_ARN },
};

describe('usage attribution', () => {
  it('fixture: CloudTrail lookups: LookupEvents by access key id, paginated, becomes usage; probe calls are excluded, a probe user agent on another call is not', async () => {
    const key = f.SESSION_KEY_ID;
    const page1 = [
      f.trailRecord({ eventId: 'e1', eventName: 'ListRoles', sourceIp: '198.51.100.7', accessKeyId: key }),
      f.trailRecord({
        eventId: 'e2',
        eventName: 'GetRole',
        sourceIp: '192.0.2.1',
        accessKeyId: key,
        userAgent: 'aws-sdk-js/3 grantline-probe/case-1',
      }),
    ];
    const page2 = [
      f.trailRecord({
        eventId: 'e3',
        eventName: 'DeleteRole',
        sourceIp: '198.51.100.7',
        accessKeyId: key,
        userAgent: 'grantline-probe/case-1',
        errorCode: 'AccessDenied',
      }),
      f.trailRecord({
        eventId: 'e4',
        eventName: 'ListRoles',
        sourceIp: 'ec2.amazonaws.com',
        accessKeyId: key,
      }),
    ];
    const handler = new FixtureHandler({
      LookupEvents: [f.lookupEvents(page1, 'next-page'), f.lookupEvents(page2)],
    });
    const { sts, iam, cloudtrail } = fixtureClients(handler);
    const executor = createAwsExecutor({ sts, iam, cloudtrail });
    const grant = awsCase(target);
    const since = new Date('2026-01-01T09:00:00Z');
    const usage = await executor.usage!({
      ...ctxOf(grant, parse),
      issuance: {
        ref: { accessKeyId: key },
        issuedAt: since.toISOString(),
        expiresAt: grant.window.expiresAt!,
      },
      since,
    });
    const req = handler.calls('LookupEvents');
    expect(req).toHaveLength(2);
    expect(req[0]!.json).toMatchObject({
      LookupAttributes: [{ AttributeKey: 'AccessKeyId', AttributeValue: key }],
      StartTime: since.getTime() / 1000,
    });
    expect(req[1]!.json).toMatchObject({ NextToken: 'next-page' });
    expect(usage.map((u) => [u.action, u.sourceIp, u.outcome])).toEqual([
      ['iam:ListRoles', '198.51.100.7', 'allowed'],
      ['iam:DeleteRole', '198.51.100.7', 'denied'],
    ]);
    expect(usage[1]!.detail).toMatchObject({ probeUserAgentOnOtherCall: true, errorCode: 'AccessDenied' });
    expect(usage[0]!.actorId).toContain('assumed-role/demo');
  });

  it('attributes records by identifier (access key, role session, IAM user), never by time, and skips the rest', () => {
    const mk = (id: string, ref: Record<string, string>) => {
      const g = awsCase({ ...target, id: 't' });
      return {
        ...g,
        id,
        targets: [
          {
            ...g.targets[0]!,
            issuance: { ref, issuedAt: g.window.issuedAt!, expiresAt: g.window.expiresAt! },
          },
        ],
      };
    };
    const grants = [
      mk('case-key', { accessKeyId: 'ASIAKEYONE0000000000' }),
      mk('case-session', {
        roleId: 'AROAROLE',
        sessionName: 'gl.case-session.t.abc',
        accessKeyId: 'ASIAKEYTWO0000000000',
      }),
      mk('case-user', {
        strategy: 'iam-user',
        userName: 'gl.case-user.t.def',
        accessKeyId: 'AKIAKEYTHREE00000000',
      }),
    ];
    const at = '2026-01-01T10:00:00Z';
    const rec = (
      eventID: string,
      userIdentity: CloudTrailRecord['userIdentity'],
      ip = '198.51.100.1',
    ): CloudTrailRecord => ({
      eventID,
      eventTime: at,
      eventSource: 's3.amazonaws.com',
      eventName: 'GetObject',
      sourceIPAddress: ip,
      userIdentity,
    });
    const { attributed, skipped } = attributeRecords(
      [
        rec('1', { accessKeyId: 'ASIAKEYONE0000000000' }),
        rec('2', {
          type: 'AssumedRole',
          principalId: 'AROAROLE:gl.case-session.t.abc',
          accessKeyId: 'ASIAROTATED000000000',
        }),
        rec('3', { type: 'IAMUser', userName: 'gl.case-user.t.def', accessKeyId: 'AKIAOLDKEY0000000000' }),
        rec('4', {
          type: 'AssumedRole',
          principalId: 'AROAROLE:gl.other',
          accessKeyId: 'ASIAUNKNOWN000000000',
        }),
        rec('5', { accessKeyId: 'ASIAKEYONE0000000000' }, 'AWS Internal'),
        rec('1', { accessKeyId: 'ASIAKEYONE0000000000' }),
      ],
      grants,
    );
    expect(attributed.map((a) => [a.caseId, a.matchedBy])).toEqual([
      ['case-key', 'accessKeyId'],
      ['case-session', 'roleSession'],
      ['case-user', 'iamUser'],
    ]);
    expect(skipped).toEqual([
      { eventId: '4', reason: 'no-matching-case' },
      { eventId: '5', reason: 'no-ip-source' },
    ]);
  });
});
