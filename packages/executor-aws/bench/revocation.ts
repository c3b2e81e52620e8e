import { writeSection } from '../../../bench/results.js';
import { performance } from 'node:perf_hooks';
import { CreateRoleCommand, IAMClient, PutRolePolicyCommand } from '@aws-sdk/client-iam';
import { STSClient } from '@aws-sdk/client-sts';
import { createGrantline } from '@grantline/core';
import { type CloudTrailRecord, attributeRecords, createAwsExecutor } from '@grantline/executor-aws';
import { createMemoryStore } from '@grantline/store-memory';
import { startMoto } from '../test/support/moto-process.js';

// Method: moto_server on 127.0.0.1 with IAM enforcement on (started and stopped here, by PID).
// (1) N assumed-role cases, each on its own role, are requested, approved and issued; then each is
// revoked early through the service and the wall time from `revoke()` to the case being `verified`
// (Deny attached + 3 consecutive rejected probes, 50 ms initial backoff) is measured.
// (2) `attributeRecords` over R synthetic CloudTrail records against C issued cases (pure CPU).
const n = Number(process.env.BENCH_AWS_N ?? 30);
const records = Number(process.env.BENCH_AWS_RECORDS ?? 200_000);
const cases = Number(process.env.BENCH_AWS_CASES ?? 2_000);

const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const moto = await startMoto();
const lines: string[] = [`node ${process.version}, ${new Date().toISOString()}, moto_server pid ${moto.pid}`];
try {
  const credentials = { accessKeyId: moto.admin.accessKeyId, secretAccessKey: moto.admin.secretAccessKey };
  const iam = new IAMClient({ region: 'us-east-1', endpoint: moto.endpoint, credentials });
  const sts = new STSClient({ region: 'us-east-1', endpoint: moto.endpoint, credentials });
  const gl = createGrantline({
    store: createMemoryStore(),
    executors: [
      createAwsExecutor({ sts, iam, probe: { consecutiveRejections: 3, backoffMs: 50, maxBackoffMs: 200 } }),
    ],
    policy: {
      id: 'bench',
      version: '1',
      owner: 'gov',
      rules: [
        {
          id: 'r',
          risk: 'medium',
          match: { systems: ['aws'] },
          operator: 'ops',
          maxDurationSeconds: 3600,
          approvals: { count: 1, roles: ['approver'] },
        },
      ],
    },
  });
  const lag: number[] = [];
  const issueMs: number[] = [];
  for (let i = 0; i < n; i++) {
    const name = `bench-${i}`;
    const role = await iam.send(
      new CreateRoleCommand({
        RoleName: name,
        AssumeRolePolicyDocument: JSON.stringify({
          Version: '2012-10-17',
          Statement: [{ Effect: 'Allow', Principal: { AWS: moto.admin.arn }, Action: 'sts:AssumeRole' }],
        }),
      }),
    );
    await iam.send(
      new PutRolePolicyCommand({
        RoleName: name,
        PolicyName: 'w',
        PolicyDocument: JSON.stringify({
          Version: '2012-10-17',
          Statement: [{ Effect: 'Allow', Action: ['iam:GetRole', 'iam:ListRoles'], Resource: '*' }],
        }),
      }),
    );
    const c = await gl.request({
      requester: { id: 'alice', kind: 'human', roles: [] },
      subject: { id: 'svc-bench', kind: 'workload', roles: [] },
      justification: { reason: 'bench' },
      targets: [
        {
          id: 't',
          system: 'aws',
          resource: role.Role!.Arn!,
          permissions: ['iam:ListRoles'],
          params: { roleArn: role.Role!.Arn! },
        },
      ],
      durationSeconds: 1800,
    });
    await gl.approve(c.id, { approver: { id: 'bob', kind: 'human', roles: ['approver'] } });
    const t0 = performance.now();
    await gl.issue(c.id);
    issueMs.push(performance.now() - t0);
    const t1 = performance.now();
    const done = await gl.revoke(c.id, {
      actor: { id: 'bob', kind: 'human', roles: ['approver'] },
      reason: 'bench',
    });
    if (done.state !== 'verified') throw new Error(`case ${c.id} ended ${done.state}`);
    lag.push(performance.now() - t1);
  }
  lines.push(
    `${n} assumed-role cases: issue (GetRole + AssumeRole + baseline probe) p50 ${pct(issueMs, 50).toFixed(0)} ms, p99 ${pct(issueMs, 99).toFixed(0)} ms`,
  );
  lines.push(
    `revoke → verified (Deny + 3 rejected probes, backoff 50+100 ms): p50 ${pct(lag, 50).toFixed(0)} ms, p99 ${pct(lag, 99).toFixed(0)} ms, max ${Math.max(...lag).toFixed(0)} ms`,
  );

  const grants = Array.from({ length: cases }, (_, i) => ({
    id: `case-${i}`,
    targets: [
      {
        id: 't',
        issuance: {
          ref: {
            accessKeyId: `ASIA${String(i).padStart(16, '0')}`,
            roleId: 'AROABENCH',
            sessionName: `gl.case-${i}`,
          },
        },
      },
    ],
  }));
  const recs: CloudTrailRecord[] = Array.from({ length: records }, (_, i) => ({
    eventID: `e${i}`,
    eventTime: '2026-01-01T00:00:00Z',
    eventSource: 'iam.amazonaws.com',
    eventName: 'ListRoles',
    sourceIPAddress: '198.51.100.1',
    userIdentity: {
      type: 'AssumedRole',
      accessKeyId: `ASIA${String(i % (cases * 2)).padStart(16, '0')}`,
      principalId: `AROABENCH:gl.case-${i % (cases * 2)}`,
    },
  }));
  const t2 = performance.now();
  // biome-ignore lint/suspicious/noExplicitAny: a minimal Grant shape is enough for attribution.
  const out = attributeRecords(recs, grants as any);
  const ms = performance.now() - t2;
  lines.push(
    `attributeRecords: ${records} records × ${cases} cases in ${ms.toFixed(0)} ms (${((records / ms) * 1000).toFixed(0)} records/s), ${out.attributed.length} attributed, ${out.skipped.length} skipped`,
  );
} finally {
  await moto.stop();
}
for (const l of lines) console.log(l);
writeSection(
  'aws executor on moto (pnpm bench:aws)',
  lines.map((l) => `- ${l}`),
);
