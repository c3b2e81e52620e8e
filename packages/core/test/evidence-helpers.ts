import { type MemoryStore, createMemoryStore } from '@grantline/store-memory';
import {
  type AuditEvent,
  type CheckpointSink,
  type EvidenceVerification,
  GENESIS_HASH,
  eventHash,
  type Clock,
  type IdentityVerifier,
  type PolicyInput,
  type Signer,
  createGrantline,
  createTokenAuthority,
  generateSigningKey,
  createJoseSigner,
  type EvidenceBundle,
  type Grantline,
  type Principal,
} from '../src/index.js';

/** A clock tests move by hand. */
export function manualClock(
  start = '2026-03-02T10:00:00.000Z',
): Clock & { advance(ms: number): void; set(iso: string): void } {
  let t = Date.parse(start);
  return {
    now: () => new Date(t),
    advance(ms) {
      t += ms;
    },
    set(iso) {
      t = Date.parse(iso);
    },
  };
}

/** High-risk rule with dual control in distinct roles, a low-risk template, and break-glass. */
export const policy: PolicyInput = {
  id: 'acme-jit',
  version: '2026-03',
  owner: 'security-governance',
  rules: [
    {
      id: 'prod-api',
      risk: 'high',
      match: { systems: ['token'], resources: ['api://prod/*'] },
      operator: 'platform-team',
      maxDurationSeconds: 3600,
      require: { ticket: { pattern: '^OPS-\\d+$' } },
      approvals: { count: 2, roles: ['sre-lead', 'security-officer'], distinctRoles: true },
      constraints: { sourceCidrs: ['10.0.0.0/8'] },
    },
    {
      id: 'proven-api',
      risk: 'medium',
      match: { systems: ['token'], resources: ['api://proven/*'] },
      operator: 'platform-team',
      maxDurationSeconds: 3600,
      require: { provenApprovers: true, provenWorkload: true },
      approvals: { count: 1, roles: ['sre-lead'] },
    },
    {
      id: 'staging-read',
      risk: 'low',
      match: { systems: ['token'], resources: ['api://staging/*'], permissions: ['staging:read'] },
      operator: 'platform-team',
      maxDurationSeconds: 900,
      template: 'staging-read',
      approvals: { count: 0, roles: [] },
    },
  ],
  breakGlass: {
    allowedRoles: ['oncall'],
    maxDurationSeconds: 1800,
    reviewWithinSeconds: 3600,
    reviewerRoles: ['security-officer'],
    operator: 'platform-team',
  },
};

export const alice: Principal = {
  id: 'alice',
  kind: 'human',
  roles: ['developer', 'oncall'],
  teams: ['payments'],
};
export const ciJob: Principal = {
  id: 'repo:acme/payments:ref:refs/heads/main',
  kind: 'workload',
  roles: [],
  teams: [],
};
export const bob: Principal = { id: 'bob', kind: 'human', roles: ['sre-lead'], teams: ['sre'] };
export const carol: Principal = {
  id: 'carol',
  kind: 'human',
  roles: ['security-officer'],
  teams: ['security'],
};

/** A service over the memory store with the real token executor and a real Ed25519 signer. */
export async function setup(
  opts: {
    signer?: Signer | null;
    checkpoints?: { sink: CheckpointSink; everyChanges?: number; intervalMs?: number; fromScratch?: boolean };
    identity?: IdentityVerifier;
    latencyMs?: number;
  } = {},
) {
  const clock = manualClock();
  const store: MemoryStore = createMemoryStore(opts.latencyMs ? { latencyMs: opts.latencyMs } : {});
  const authority = await createTokenAuthority({ issuer: 'https://grantline.test', clock });
  const keyPair = await generateSigningKey();
  const signer =
    opts.signer === null
      ? undefined
      : (opts.signer ?? (await createJoseSigner({ privateJwk: keyPair.privateJwk })));
  let n = 0;
  const service: Grantline = createGrantline({
    store,
    policy,
    executors: [authority.executor],
    clock,
    ids: () => `case-${String(++n).padStart(4, '0')}`,
    ...(signer ? { signer } : {}),
    ...(opts.checkpoints ? { checkpoints: opts.checkpoints } : {}),
    ...(opts.identity ? { identity: opts.identity } : {}),
  });
  return { clock, store, authority, signer, keyPair, service };
}

type Env = Awaited<ReturnType<typeof setup>>;

/**
 * The quickstart flow, for real: request, two approvals in distinct roles, issue a token, use it from
 * the allowed network, revoke, and verify removal by presenting a probe to the token verifier.
 */
export async function runFullCase(env: Env, suffix = ''): Promise<{ caseId: string; token: string }> {
  const { service, clock } = env;
  const g = await service.request({
    requester: alice,
    subject: ciJob,
    justification: { reason: `rotate payment keys${suffix}`, ticket: 'OPS-1234' },
    targets: [{ id: 'api', system: 'token', resource: 'api://prod/payments', permissions: ['keys:rotate'] }],
    durationSeconds: 1800,
  });
  clock.advance(60_000);
  await service.approve(g.id, { approver: bob, reason: 'change window open' });
  clock.advance(30_000);
  await service.approve(g.id, { approver: carol });
  clock.advance(5_000);
  const issued = await service.issue(g.id);
  const token = issued.credentials.api!.token!;
  clock.advance(120_000);
  await service.recordUsage(g.id, {
    sourceIp: '10.1.2.3',
    action: 'keys:rotate',
    resource: 'api://prod/payments/keys',
  });
  clock.advance(60_000);
  const done = await service.revoke(g.id, { actor: alice, reason: 'task finished' });
  if (done.state !== 'verified') throw new Error(`expected verified, got ${done.state}`);
  return { caseId: g.id, token };
}

/** Parses the signed payload of a bundle. */
export function payloadOf(
  b: EvidenceBundle,
): Record<string, unknown> & { events: Record<string, unknown>[]; record: Record<string, unknown> } {
  return JSON.parse(b.payload);
}

/** The codes of a verification's error-severity problems. */
export const errorCodes = (r: EvidenceVerification) =>
  r.problems.filter((p) => p.severity === 'error').map((p) => p.code);

/**
 * Re-numbers and re-links `events` from the genesis hash, recomputing every hash: what someone with
 * database access (or the key) can do, so that the chain itself is consistent again.
 */
export function rechain(events: readonly AuditEvent[]): AuditEvent[] {
  let prevHash = GENESIS_HASH;
  return events.map((e, i) => {
    const { hash: _old, ...rest } = { ...e, seq: i + 1, prevHash };
    const hash = eventHash(rest);
    prevHash = hash;
    return { ...rest, hash };
  });
}

/** Puts `events` into a parsed payload with the chain head and the record's audit head to match. */
export function setEvents(p: ReturnType<typeof payloadOf>, events: readonly AuditEvent[]): void {
  const last = events[events.length - 1]!;
  p.events = events as unknown as ReturnType<typeof payloadOf>['events'];
  p.chain = { seq: last.seq, head: last.hash };
  (p.record as { audit: unknown }).audit = { seq: last.seq, head: last.hash };
}
