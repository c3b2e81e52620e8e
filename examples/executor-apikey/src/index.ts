import { createHash } from 'node:crypto';
import {
  type Executor,
  type ExecutorContext,
  GrantlineError,
  type RevokeContext,
  type VerifyResult,
} from '@grantline/core';
import { z } from 'zod';

export {
  startKeyService,
  type KeyService,
  type KeyServiceMode,
  type KeyServiceOptions,
} from './key-service.js';

/** Target params: the scopes the key is created with. */
export const apiKeyParamsSchema = z.strictObject({
  scopes: z
    .array(z.string().regex(/^[a-z][a-z0-9_.-]*(:[a-z0-9_.*-]+)*$/, 'scope: lower-case resource:action'))
    .min(1)
    .max(32),
});
export type ApiKeyParams = z.output<typeof apiKeyParamsSchema>;

export interface ApiKeyExecutorOptions {
  /** Base URL of the key service, e.g. `https://keys.example.com`. */
  baseUrl: string;
  /** Admin token for the `/keys` endpoints. */
  adminToken: string;
  /** `system` value of the targets this executor serves (default `apikey`). */
  system?: string;
  /** Prefix of every key name this executor creates; it never touches other keys (default `gl-`). */
  prefix?: string;
  /** Attempts per HTTP call on 429/5xx/network errors before giving up retryable (default 4). */
  maxAttempts?: number;
  /** Timeout per HTTP call in ms (default 5,000). */
  timeoutMs?: number;
  /**
   * How long `issue` and `revoke` wait for a deletion to propagate (the key service lists a key as
   * `deleting` while it still authenticates), in ms (default 2,000). `issue` fails retryable when a
   * replaced key outlives it; `revoke` returns anyway and `verify` reports `present`, so Grantline
   * retries verification with backoff. `0` makes `revoke` return at once.
   */
  settleMs?: number;
}

interface ListedKey {
  id: string;
  name: string;
  scopes: string[];
  expiresAt: string;
  createdAt: string;
  status: 'active' | 'deleting' | 'expired';
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * An executor for API keys: one key per case and target, named from their ids, created with the
 * target's scopes and the case's expiry, deleted on revocation and verified by listing the name.
 */
export function createApiKeyExecutor(opts: ApiKeyExecutorOptions): Executor<ApiKeyParams> {
  const system = opts.system ?? 'apikey';
  const prefix = opts.prefix ?? 'gl-';
  const maxAttempts = opts.maxAttempts ?? 4;
  const timeoutMs = opts.timeoutMs ?? 5_000;
  const settleMs = opts.settleMs ?? 2_000;
  const base = opts.baseUrl.replace(/\/+$/, '');

  /** The key name is derived from the case and the target, so a crash never loses track of it. */
  const keyName = (ctx: ExecutorContext<ApiKeyParams>) =>
    `${prefix}${createHash('sha256').update(`${ctx.grant.id}\0${ctx.target.id}`).digest('hex').slice(0, 32)}`;

  const fail = (what: string, message: string, retryable: boolean, details: Record<string, unknown> = {}) =>
    new GrantlineError('ERR_EXECUTOR', `apikey: ${what}: ${message}`, { retryable, details });

  /**
   * One admin call. Retries 429, 5xx, timeouts and lost connections with backoff; then throws a
   * retryable error. 401/403/400 are not retryable. A POST that got no answer is not resent (the
   * key may exist; a retried issue or the rollback finds it by name). Response bodies are never
   * quoted (they may hold a secret), only the status.
   */
  async function call(what: string, method: string, path: string, body?: unknown): Promise<Response> {
    let lastStatus: number | undefined;
    let lastCause: unknown;
    let retryAfterMs = 0;
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      if (attempt > 1) await sleep(Math.min(Math.max(retryAfterMs, 25 * 2 ** (attempt - 1)), 2_000));
      let res: Response;
      try {
        res = await fetch(`${base}${path}`, {
          method,
          headers: {
            authorization: `Bearer ${opts.adminToken}`,
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(timeoutMs),
        });
      } catch (err) {
        lastStatus = undefined;
        lastCause = err;
        retryAfterMs = 0;
        if (method === 'POST') break;
        continue; // timeout, refused or reset connection: retryable
      }
      if (res.status === 429 || res.status >= 500) {
        lastStatus = res.status;
        retryAfterMs = (Number(res.headers.get('retry-after')) || 0) * 1000;
        await res.body?.cancel();
        continue;
      }
      if (res.status === 401 || res.status === 403) {
        await res.body?.cancel();
        throw fail(what, `access denied by the key service (HTTP ${res.status})`, false, {
          status: res.status,
        });
      }
      if (res.status >= 400 && res.status !== 404) {
        await res.body?.cancel();
        throw fail(what, `rejected by the key service (HTTP ${res.status})`, false, { status: res.status });
      }
      return res;
    }
    const reason =
      lastStatus === undefined
        ? `no answer (${lastCause instanceof Error ? lastCause.name : 'network error'})`
        : `HTTP ${lastStatus}`;
    throw fail(what, `key service unavailable: ${reason}`, true, { status: lastStatus });
  }

  async function list(name: string): Promise<ListedKey[]> {
    const res = await call('list keys', 'GET', `/keys?name=${encodeURIComponent(name)}`);
    if (res.status !== 200) {
      await res.body?.cancel();
      throw fail('list keys', `unexpected HTTP ${res.status}`, false);
    }
    const { keys } = (await res.json()) as { keys: ListedKey[] };
    // The service filters by name; check again so nothing else is ever touched.
    return keys.filter((k) => k.name === name);
  }

  /** Deletes every live key with this name; returns the ids it deleted. */
  async function deleteAll(name: string, knownId?: string): Promise<string[]> {
    const ids = new Set((await list(name)).filter((k) => k.status !== 'deleting').map((k) => k.id));
    if (knownId) ids.add(knownId);
    const deleted: string[] = [];
    for (const id of ids) {
      const res = await call('delete key', 'DELETE', `/keys/${encodeURIComponent(id)}`);
      await res.body?.cancel();
      if (res.status === 204 || res.status === 200) deleted.push(id);
    }
    return deleted;
  }

  /** Polls the listing until no key with this name is left (true) or `settleMs` passed (false). */
  async function settled(name: string, withinMs = settleMs): Promise<boolean> {
    const deadline = Date.now() + withinMs;
    for (;;) {
      if ((await list(name)).every((k) => k.status === 'expired')) return true;
      if (Date.now() >= deadline) return false;
      await sleep(20);
    }
  }

  async function observe(ctx: RevokeContext<ApiKeyParams>): Promise<VerifyResult> {
    const name = keyName(ctx);
    const keys = await list(name);
    const alive = keys.filter((k) => k.status !== 'expired');
    const observation = {
      service: base,
      name,
      listed: keys.map((k) => ({ id: k.id, status: k.status })),
    };
    return alive.length === 0
      ? { status: 'absent', method: 'GET /keys?name= (key service admin API)', observation }
      : { status: 'present', method: 'GET /keys?name= (key service admin API)', observation };
  }

  return {
    system,
    paramsSchema: apiKeyParamsSchema,

    async issue(ctx) {
      const name = keyName(ctx);
      // Idempotent per case + target: a retried issue replaces the earlier key, and waits until
      // the old one is really gone so two live keys never coexist.
      const replaced = await deleteAll(name);
      // (This wait is never skipped, even with settleMs 0: two live keys would break the contract.)
      const replaceWaitMs = Math.max(settleMs, 5_000);
      if (replaced.length > 0 && !(await settled(name, replaceWaitMs))) {
        throw fail(
          'issue',
          `replaced key ${replaced.join(',')} is still live after ${replaceWaitMs} ms`,
          true,
        );
      }
      // #region expiry
      const windowEnd = ctx.grant.window.expiresAt;
      const expiresAt = windowEnd
        ? new Date(windowEnd)
        : new Date(ctx.now.getTime() + ctx.grant.window.durationSeconds * 1000);
      // #endregion
      const res = await call('create key', 'POST', '/keys', {
        name,
        scopes: ctx.target.params.scopes,
        expiresAt: expiresAt.toISOString(),
      });
      if (res.status !== 201 && res.status !== 200) {
        await res.body?.cancel();
        throw fail('create key', `unexpected HTTP ${res.status}`, false);
      }
      const created = (await res.json()) as { id: string; secret: string };
      return { ref: { keyId: created.id, name }, expiresAt, secret: { apiKey: created.secret } };
    },

    async revoke(ctx) {
      const name = keyName(ctx);
      const deleted = await deleteAll(name, ctx.issuance?.ref.keyId);
      if (deleted.length === 0) return { alreadyGone: true, detail: { name } };
      // Deletes propagate after a while on some deployments: wait a little so `verify` usually
      // sees the end state at once; if not, it reports `present` and Grantline retries it.
      const propagationConfirmed = settleMs > 0 && (await settled(name));
      return { detail: { name, deleted, propagationConfirmed } };
    },

    verify: observe,
  };
}

/** Asks the key service whether an API key authenticates right now (`GET /whoami`). */
export async function keyWorks(baseUrl: string, apiKey: string): Promise<boolean> {
  const res = await fetch(`${baseUrl.replace(/\/+$/, '')}/whoami`, {
    headers: { authorization: `Bearer ${apiKey}` },
    signal: AbortSignal.timeout(5_000),
  });
  await res.body?.cancel();
  if (res.status === 200) return true;
  if (res.status === 401) return false;
  throw new Error(`whoami answered HTTP ${res.status}`);
}
