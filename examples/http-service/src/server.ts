import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type Logger,
  type PolicyInput,
  createGrantline,
  createJoseSigner,
  createJwks,
  createJwtIdentityVerifier,
  createTokenAuthority,
} from '@grantline/core';
import { createPostgresStore, migrate } from '@grantline/store-postgres';
import { serve } from '@hono/node-server';
import type { JSONWebKeySet, JWK } from 'jose';
import pg from 'pg';
import { createApp } from './app.js';
import { createPgRevocationList } from './token-revocations.js';

/** Everything an instance needs; every instance of one deployment gets the same values. */
export interface ServerConfig {
  databaseUrl: string;
  schema: string;
  /** 0 picks a free port. */
  port: number;
  host?: string;
  instanceId?: string;
  /** Public keys of the approvers' IdP and of the CI system's OIDC issuer. */
  idp: { issuer: string; jwks: JSONWebKeySet };
  ci: { issuer: string; jwks: JSONWebKeySet };
  audience: string;
  /** Private keys shared by the instances: evidence signing, and the access tokens they issue. */
  evidenceKey: JWK;
  accessTokenKey: JWK;
  /** Cases the sweeper claims per pass (small values spread the work across instances). */
  sweepLimit?: number;
  /**
   * How long `close()` waits for requests in flight (default 10,000 ms). Past it, the connections
   * still open are closed (a client that never finishes its request cannot hold the shutdown) and
   * the rest of the shutdown goes on.
   */
  drainTimeoutMs?: number;
  logger?: Logger;
}

export const policy: PolicyInput = {
  id: 'http-service',
  version: '1',
  owner: 'iam-governance',
  rules: [
    {
      id: 'orders-read',
      risk: 'high',
      match: { systems: ['token'], resources: ['api://orders'] },
      operator: 'platform-ops',
      maxDurationSeconds: 3600,
      require: { ticket: { pattern: '^OPS-\\d+$' }, provenApprovers: true },
      approvals: { count: 2, roles: ['security-officer', 'service-owner'], distinctRoles: true },
      constraints: { sourceCidrs: ['127.0.0.0/8', '10.0.0.0/8'] },
    },
    {
      id: 'short-lived-read',
      risk: 'low',
      template: 'short-lived',
      match: { systems: ['token'], resources: ['api://metrics'], permissions: ['metrics:read'] },
      operator: 'platform-ops',
      maxDurationSeconds: 300,
      approvals: { count: 0, roles: [] },
    },
  ],
};

/** A running instance. */
export interface RunningServer {
  url: string;
  instanceId: string;
  /** Graceful shutdown: stop accepting, drain in-flight requests, stop the sweeper, close the pool. */
  close(): Promise<void>;
}

/** Starts one instance: migrations (safe when several start at once), store, sweeper, HTTP. */
export async function startServer(config: ServerConfig): Promise<RunningServer> {
  const pool = new pg.Pool({ connectionString: config.databaseUrl, max: 10 });
  // node-postgres emits `error` for idle clients the server dropped; without a handler the process dies.
  pool.on('error', (err) => config.logger?.warn('idle PostgreSQL client failed', { message: err.message }));
  await migrate(pool, { schema: config.schema });
  const store = createPostgresStore({
    db: pool,
    schema: config.schema,
    listen: config.databaseUrl,
    ...(config.logger ? { logger: config.logger } : {}), // LISTEN connection faults are logged
  });
  const revocations = await createPgRevocationList(pool, config.schema);
  const tokens = await createTokenAuthority({
    issuer: 'https://grantline.example/http-service',
    privateJwk: config.accessTokenKey,
    revocations,
  });
  const signer = await createJoseSigner({ privateJwk: config.evidenceKey });
  const identity = createJwtIdentityVerifier({
    approvers: {
      issuer: config.idp.issuer,
      audience: config.audience,
      jwks: config.idp.jwks,
      rolesClaim: 'roles',
    },
    workloads: { issuer: config.ci.issuer, audience: config.audience, jwks: config.ci.jwks },
  });
  const grantline = createGrantline({
    store,
    policy,
    executors: [tokens.executor],
    identity,
    signer,
    ...(config.instanceId ? { instanceId: config.instanceId } : {}),
    ...(config.logger ? { logger: config.logger } : {}),
  });
  const sweeper = grantline.startSweeper({ limit: config.sweepLimit ?? 100, maxSleepMs: 5_000 });
  const inflight: { n: number; draining?: boolean } = { n: 0 };
  const app = createApp({
    grantline,
    identity,
    tokens: tokens.verifier,
    evidenceJwks: createJwks(signer),
    inflight,
  });
  const server = serve({ fetch: app.fetch, port: config.port, hostname: config.host ?? '127.0.0.1' });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${config.host ?? '127.0.0.1'}:${port}`,
    instanceId: grantline.instanceId,
    close() {
      closing ??= (async () => {
        // Stop listening (new connections are refused) and close idle keep-alive connections; the
        // callback runs once the requests in flight have been answered and their connections closed.
        inflight.draining = true;
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        let timer: NodeJS.Timeout | undefined;
        const deadline = new Promise<'deadline'>((resolve) => {
          timer = setTimeout(() => resolve('deadline'), config.drainTimeoutMs ?? 10_000);
        });
        if ((await Promise.race([closed, deadline])) === 'deadline') {
          config.logger?.warn('drain deadline passed: closing the connections still open', {
            inflight: inflight.n,
            drainTimeoutMs: config.drainTimeoutMs ?? 10_000,
          });
          (server as Server).closeAllConnections();
          await closed;
        }
        clearTimeout(timer);
        // A client that hung up does not end its handler: give those a moment before the pool goes.
        for (let i = 0; i < 200 && inflight.n > 0; i++) await new Promise((r) => setTimeout(r, 25));
        await sweeper.stop(); // finishes the pass in progress; leases cover anything cut short
        await grantline.close();
        await store.close();
        await pool.end();
      })();
      return closing;
    },
  };
}
