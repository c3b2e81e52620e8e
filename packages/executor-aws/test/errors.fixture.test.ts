import { isGrantlineError } from '@grantline/core';
import { describe, expect, it } from 'vitest';
import { awsParamsSchema, type AwsParams, createAwsExecutor, redact, toExecutorError } from '../src/index.js';
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

async function issueFailure(assumeRole: { status?: number; body: string }) {
  const handler = new FixtureHandler({ GetRole: f.getRole(), AssumeRole: assumeRole });
  const { sts, iam } = fixtureClients(handler);
  const err = await createAwsExecutor({ sts, iam })
    .issue(ctxOf(awsCase(target), parse))
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  if (!isGrantlineError(err)) throw new Error('expected a GrantlineError');
  return err;
}

describe('error mapping (fixture: AWS error responses through the real SDK clients)', () => {
  it.each([
    ['Throttling', 400, true],
    ['InternalFailure', 500, true],
    ['ServiceUnavailable', 503, true],
    ['AccessDenied', 403, false],
    ['ValidationError', 400, false],
    ['MalformedPolicyDocument', 400, false],
    ['PackedPolicyTooLarge', 400, false],
    ['RegionDisabledException', 403, false],
  ])('fixture: %s (HTTP %i) is ERR_EXECUTOR with retryable=%s', async (code, status, retryable) => {
    const err = await issueFailure(
      f.queryError(code, `${code} happened`, status, 'https://sts.amazonaws.com/doc/2011-06-15/'),
    );
    expect(err.code).toBe('ERR_EXECUTOR');
    expect(err.retryable).toBe(retryable);
    expect(err.details).toMatchObject({ operation: 'sts:AssumeRole', httpStatus: status });
    expect(err.message).toContain(code);
  });

  it('fixture: a message echoing a secret is redacted', async () => {
    const err = await issueFailure(
      f.queryError(
        'SignatureDoesNotMatch',
        `String to sign used key ${f.SESSION_SECRET} and token ${f.SESSION_TOKEN}`,
        403,
      ),
    );
    expect(err.message).not.toContain(f.SESSION_SECRET);
    expect(err.message).not.toContain(f.SESSION_TOKEN.slice(0, 40));
    expect(JSON.stringify(err.toJSON())).not.toContain(f.SESSION_SECRET);
    expect(err.retryable).toBe(false);
  });

  it('network failures and timeouts are retryable; known secrets are cut from any message', () => {
    const timeout = Object.assign(new Error('socket hang up'), { name: 'TimeoutError' });
    expect(toExecutorError(timeout, 'sts:AssumeRole').retryable).toBe(true);
    const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    expect(toExecutorError(reset, 'iam:GetRole').retryable).toBe(true);
    expect(toExecutorError(new Error('boom'), 'x').retryable).toBe(false);
    expect(redact('short secret hunter22 leaked', ['hunter22'])).toBe('short secret [redacted] leaked');
  });
});
