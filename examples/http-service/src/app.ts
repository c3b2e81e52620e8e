import {
  type Grantline,
  type IdentityVerifier,
  type Principal,
  type TokenVerifier,
  formatTimeline,
  GrantlineError,
} from '@grantline/core';
import { Hono, type Context } from 'hono';
import type { JSONWebKeySet } from 'jose';
import { toHttp } from './errors.js';

/** What the HTTP layer needs. */
export interface AppDeps {
  grantline: Grantline;
  /** Verifies the bearer token of every call: IdP tokens for people, OIDC tokens for workloads. */
  identity: IdentityVerifier;
  /** Accepts the access tokens Grantline issued (for the protected API this service also serves). */
  tokens: TokenVerifier;
  /** Public keys that verify evidence bundles, published at /.well-known/jwks.json. */
  evidenceJwks: JSONWebKeySet;
  /**
   * Graceful shutdown: `n` counts requests in flight; once `draining` is set, every response says
   * `Connection: close`, so a keep-alive client does not hold the drain open until its idle timeout.
   */
  inflight: { n: number; draining?: boolean };
}

/**
 * The HTTP API. Identity is never taken from a request body: every call carries a bearer token that
 * the identity verifier proves, and the principal comes from its claims. Approvals also pass the token
 * on as the signed assertion, so the proof is recorded in the case and its evidence.
 */
export function createApp(deps: AppDeps): Hono {
  const app = new Hono();
  const { grantline } = deps;

  app.use('*', async (c, next) => {
    deps.inflight.n++;
    try {
      await next();
    } finally {
      deps.inflight.n--;
      if (deps.inflight.draining) c.header('Connection', 'close');
    }
  });
  app.onError((err, c) => {
    const [status, body] = toHttp(err);
    return c.json(body, status as 400);
  });

  const bearer = (c: Context) => {
    const h = c.req.header('authorization') ?? '';
    const m = /^Bearer (\S+)$/.exec(h);
    if (!m)
      throw new GrantlineError('ERR_IDENTITY', 'missing bearer token', {
        details: { where: 'http', path: ['authorization'] },
      });
    return m[1]!;
  };
  /** A person (IdP token) or, failing that, a workload (CI OIDC token). */
  const caller = async (
    c: Context,
    only?: 'approver' | 'workload',
  ): Promise<{ principal: Principal; token: string }> => {
    const token = bearer(c);
    const tryAs = async (purpose: 'approver' | 'workload') => {
      const v = await deps.identity.verify(token, purpose);
      const principal: Principal = {
        id: v.subject,
        kind: purpose === 'approver' ? 'human' : 'workload',
        roles: v.roles,
        teams: Array.isArray(v.claims.teams) ? (v.claims.teams as string[]) : [],
        claims: { issuer: v.issuer, ...(v.kid ? { kid: v.kid } : {}) },
      };
      return { principal, token };
    };
    if (only) return tryAs(only);
    try {
      return await tryAs('approver');
    } catch {
      return tryAs('workload');
    }
  };
  const body = async (c: Context) => {
    try {
      return (await c.req.json()) as Record<string, unknown>;
    } catch {
      throw new GrantlineError('ERR_VALIDATION', 'body must be JSON', {
        details: { where: 'http', issues: [{ path: [], code: 'invalid_json', message: 'not JSON' }] },
      });
    }
  };
  const sourceIp = (c: Context) => {
    const env = c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined;
    return (env?.incoming?.socket?.remoteAddress ?? '127.0.0.1').replace(/^::ffff:/, '');
  };

  app.get('/healthz', (c) => c.json({ ok: true, instance: grantline.instanceId }));
  app.get('/.well-known/jwks.json', (c) => c.json(deps.evidenceJwks));

  app.post('/cases', async (c) => {
    const { principal, token } = await caller(c);
    const b = await body(c);
    // The caller is the requester. A workload asking for itself proves itself with the same token.
    const subject = (b.subject as Principal | undefined) ?? principal;
    const selfProof =
      principal.kind === 'workload' && subject.id === principal.id ? { subjectAssertion: token } : {};
    const g = await grantline.request({
      ...(b as object),
      requester: principal,
      subject,
      ...selfProof,
    } as never);
    return c.json(g, 201);
  });
  app.post('/cases/:id/approve', async (c) => {
    const { principal, token } = await caller(c, 'approver');
    const b = await body(c);
    return c.json(
      await grantline.approve(c.req.param('id'), {
        approver: principal,
        assertion: token,
        ...(b.reason ? { reason: String(b.reason) } : {}),
      }),
    );
  });
  app.post('/cases/:id/deny', async (c) => {
    const { principal } = await caller(c, 'approver');
    const b = await body(c);
    return c.json(
      await grantline.deny(c.req.param('id'), { actor: principal, reason: String(b.reason ?? '') }),
    );
  });
  app.post('/cases/:id/issue', async (c) => {
    const { principal } = await caller(c);
    // Secrets: in this response only, never logged.
    return c.json(await grantline.issue(c.req.param('id'), { actor: principal }));
  });
  // A host, proxy or log shipper reports a use of the access. The core records the case's subject as
  // the user, never a principal named in the body: an `actor` field is refused, and the
  // authenticated reporter is recorded as `detail.reportedBy`.
  app.post('/cases/:id/usage', async (c) => {
    const { principal } = await caller(c);
    const { actor, ...b } = await body(c);
    if (actor !== undefined)
      throw new GrantlineError('ERR_VALIDATION', 'usage: the actor comes from the bearer token', {
        details: {
          where: 'http',
          issues: [{ path: ['actor'], code: 'unrecognized_keys', message: 'not accepted over HTTP' }],
        },
      });
    const detail = b.detail;
    const plain =
      detail === undefined || (typeof detail === 'object' && detail !== null && !Array.isArray(detail));
    return c.json(
      await grantline.recordUsage(c.req.param('id'), {
        ...b,
        ...(plain ? { detail: { ...(detail as object | undefined), reportedBy: principal.id } } : {}),
      } as never),
    );
  });
  app.post('/cases/:id/complete', async (c) => {
    const { principal } = await caller(c);
    const b = await body(c);
    return c.json(
      await grantline.complete(c.req.param('id'), {
        actor: principal,
        reason: String(b.reason ?? 'task complete'),
      }),
    );
  });
  app.post('/cases/:id/revoke', async (c) => {
    const { principal } = await caller(c, 'approver');
    const b = await body(c);
    return c.json(
      await grantline.revoke(c.req.param('id'), { actor: principal, reason: String(b.reason ?? '') }),
    );
  });
  app.get('/cases/:id', async (c) => {
    await caller(c);
    return c.json(await grantline.get(c.req.param('id')));
  });
  app.get('/cases/:id/timeline', async (c) => {
    await caller(c);
    const events = await grantline.history(c.req.param('id'));
    return c.req.query('format') === 'text' ? c.text(formatTimeline(events)) : c.json(events);
  });
  app.get('/cases/:id/evidence', async (c) => {
    await caller(c);
    return c.json(await grantline.evidence(c.req.param('id')));
  });

  // The protected API this service also serves: it accepts Grantline access tokens and records
  // every use (who, from where, what action) on the case; a use outside policy revokes it.
  app.get('/api/orders', async (c) => {
    const access = await deps.tokens.verify(bearer(c), { audience: 'api://orders' });
    await grantline.recordUsage(access.caseId, {
      targetId: access.targetId,
      sourceIp: sourceIp(c),
      action: 'orders:list',
      source: 'http-service',
    });
    return c.json({ orders: [{ id: 1, total: 42 }], servedBy: grantline.instanceId });
  });

  return app;
}
