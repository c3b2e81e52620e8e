import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  createGrantline,
  createJoseSigner,
  createJwks,
  createTokenAuthority,
  formatTimeline,
  generateSigningKey,
  isGrantlineError,
} from '@grantline/core';
import { createMemoryStore } from '@grantline/store-memory';

// 1. Policy is data: who may get what, for how long, approved by whom, used from where.
const policy = {
  id: 'acme-jit',
  version: '2026-12-01',
  owner: 'iam-governance', // the one accountable governance function
  rules: [
    {
      id: 'payments-write',
      risk: 'high' as const,
      match: { systems: ['token'], resources: ['api://payments'] },
      operator: 'platform-ops', // executes; may not approve
      maxDurationSeconds: 3600,
      require: { ticket: { pattern: '^OPS-\\d+$' }, workload: true },
      approvals: { count: 2, roles: ['security-officer', 'service-owner'], distinctRoles: true },
      constraints: { sourceCidrs: ['10.0.0.0/8'], actions: ['payments:*'] },
    },
    {
      id: 'metrics-read',
      risk: 'low' as const,
      template: 'read-metrics', // pre-approved, expires by itself
      match: { systems: ['token'], resources: ['api://metrics'], permissions: ['metrics:read'] },
      operator: 'platform-ops',
      maxDurationSeconds: 900,
      approvals: { count: 0, roles: [] },
    },
  ],
  breakGlass: {
    allowedRoles: ['sre-oncall'],
    maxDurationSeconds: 1800,
    reviewWithinSeconds: 86_400,
    reviewerRoles: ['security-officer'],
    operator: 'platform-ops',
  },
};

// 2. The people and the workload. A human asking for a CI job is two principals.
const ci = { id: 'ci:deploy-payments', kind: 'workload' as const, roles: ['deployer'] };
const alice = {
  id: 'alice',
  kind: 'human' as const,
  roles: ['engineer', 'service-owner'],
  teams: ['payments'],
};
const sam = { id: 'sam', kind: 'human' as const, roles: ['security-officer'], teams: ['security'] };
const olga = { id: 'olga', kind: 'human' as const, roles: ['service-owner'], teams: ['payments'] };
const rita = { id: 'rita', kind: 'human' as const, roles: ['sre-oncall'], teams: ['sre'] };

// 3. A real credential system: short-lived signed tokens, and the verifier the payments API uses;
//    and the key that signs evidence (Ed25519; in production, load the private JWK from your secrets).
const tokens = await createTokenAuthority({ issuer: 'https://grantline.example' });
const signer = await createJoseSigner({ privateJwk: (await generateSigningKey()).privateJwk });
const store = createMemoryStore();
const grantline = createGrantline({ store, policy, executors: [tokens.executor], signer });
grantline.on('grant:revoked', ({ caseId, trigger }) =>
  console.log(`  event grant:revoked ${caseId.slice(0, 8)} (${trigger})`),
);
const sweeper = grantline.startSweeper(); // sleeps until the next due time; run it in every instance

const show = async (title: string, id: string) => {
  const g = await grantline.get(id);
  console.log(`\n${title}: case ${id} is ${g.state}\n${formatTimeline(await grantline.history(id))}`);
};

// Case 1: a CI job needs to write to the payments API for ticket OPS-4711.
const request = {
  requester: alice,
  subject: ci,
  justification: { reason: 'rotate payment webhooks', ticket: 'OPS-4711', workload: ci.id },
  targets: [{ id: 'payments', system: 'token', resource: 'api://payments', permissions: ['payments:write'] }],
  durationSeconds: 900,
};
const c1 = await grantline.request(request);
try {
  await grantline.approve(c1.id, { approver: alice }); // self-approval
} catch (err) {
  if (!isGrantlineError(err)) throw err;
  console.log(`self-approval refused: ${err.code} ${JSON.stringify(err.details.reasons)}`);
}
await grantline.approve(c1.id, { approver: sam, reason: 'change reviewed' });
await grantline.approve(c1.id, { approver: olga, reason: 'owner agrees' });
const { credentials } = await grantline.issue(c1.id); // the secret is returned once, stored nowhere
const token = credentials.payments!.token!;
const claims = await tokens.verifier.verify(token, { audience: 'api://payments' }); // the payments API accepts it
await grantline.recordUsage(c1.id, { sourceIp: '10.20.30.40', action: 'payments:rotate-webhook' });
console.log(
  `payments API accepted the token for ${claims.subject}, expires ${claims.expiresAt.toISOString()}`,
);
await grantline.complete(c1.id, { actor: ci, reason: 'webhooks rotated' });
const rejected = await tokens.verifier.verify(token, { audience: 'api://payments' }).then(
  () => 'ACCEPTED (bug!)',
  (e) => `rejected (${e.details.reason})`,
);
console.log(`after completion the same token is ${rejected}`);
await show('Case 1 — dual control, completion', c1.id);

// Case 2: the same kind of access used from outside the allowed network is revoked at once.
const c2 = await grantline.request({
  ...request,
  justification: { ...request.justification, ticket: 'OPS-4712' },
});
await grantline.approve(c2.id, { approver: sam });
await grantline.approve(c2.id, { approver: olga });
await grantline.issue(c2.id);
await grantline.recordUsage(c2.id, { sourceIp: '203.0.113.66', action: 'payments:refund' });
await show('Case 2 — policy violation', c2.id);

// Case 3: low-risk read access through a pre-approved template, removed by the sweeper at expiry.
const c3 = await grantline.request({
  requester: ci,
  subject: ci,
  justification: { reason: 'nightly capacity report' },
  targets: [{ id: 'metrics', system: 'token', resource: 'api://metrics', permissions: ['metrics:read'] }],
  durationSeconds: 2,
  template: 'read-metrics',
});
await grantline.issue(c3.id);
await new Promise((resolve) => setTimeout(resolve, 2_500));
const lag = (await grantline.get(c3.id)).revocation?.lagToVerifiedMs;
await show(`Case 3 — pre-approved template, expired and verified ${lag} ms after its window`, c3.id);

// Case 4: break-glass during an incident: approved at once, flagged for mandatory review.
const c4 = await grantline.breakGlass({
  requester: rita,
  subject: rita,
  justification: { reason: 'payments outage INC-2041' },
  targets: [{ id: 'payments', system: 'token', resource: 'api://payments' }],
  durationSeconds: 600,
});
await grantline.issue(c4.id);
const g4 = await grantline.get(c4.id);
await show(`Case 4 — break-glass, review due ${g4.breakGlass?.reviewDueAt}`, c4.id);

const chains = await Promise.all([c1, c2, c3, c4].map((c) => grantline.checkChain(c.id)));
console.log(`\naudit chains valid: ${chains.every((c) => c.valid)}`);
await sweeper.stop();

// Evidence for an auditor: case 1's signed bundle and the public keys, verifiable offline.
const out = resolve(process.env.GRANTLINE_EVIDENCE_DIR ?? 'out');
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'case-1.json'), JSON.stringify(await grantline.evidence(c1.id)));
writeFileSync(join(out, 'keys.json'), JSON.stringify(createJwks(signer))); // public keys only
console.log(`\nevidence of case 1 written; an auditor checks it, with no access to this process, by:`);
console.log(`  grantline verify ${join(out, 'case-1.json')} --jwks ${join(out, 'keys.json')}`);
