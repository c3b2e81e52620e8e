import { IAMClient } from '@aws-sdk/client-iam';
import { describe, expect, it } from 'vitest';
import { listRolesWith, main } from '../examples/minimal.js';
import { adminClients, canListRoles, createRole, moto, region, skipWithoutMoto } from './support/moto.js';

describe.skipIf(skipWithoutMoto())('the README example of @grantline/executor-aws (on moto_server)', () => {
  it('runs a case to verified and the session is refused afterwards', async () => {
    // Only what the example takes: an ssoAdmin client would also need assignmentHolders.
    const { sts, iam } = adminClients();
    const clients = { sts, iam };
    const role = await createRole(clients.iam);
    const listRoles = listRolesWith(
      (c) => new IAMClient({ region, endpoint: moto()!.endpoint, credentials: c, maxAttempts: 1 }),
    );
    const r = await main(clients, role.Arn!, listRoles);
    expect(r.state).toBe('verified');
    expect(r.verification?.method).toBe('signed-probe');
    expect(await canListRoles(r.session)).toBe(false);
  });
});
