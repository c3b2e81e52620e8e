import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A small API key service standing in for a SaaS (the credential system the executor drives).
 *
 * - `POST /keys {name, scopes, expiresAt}` → 201 `{id, secret}` (the secret is shown once)
 * - `DELETE /keys/:id` → 204, or 404 when there is no such key
 * - `GET /keys?name=…` → 200 `{keys: [{id, name, scopes, expiresAt, createdAt, status}]}`
 * - `GET /whoami` with `Authorization: Bearer <secret>` → 200 `{id, name, scopes}` or 401
 *
 * The `/keys` endpoints need the admin token. Modes:
 * - `consistent`: a deleted key is gone at once.
 * - `eventual`: a deleted key stays listed (`status: "deleting"`) and keeps authenticating for
 *   `propagationMs` (default 100 ms), like a SaaS whose edge caches credentials.
 * - `flaky`: every `failEvery`-th admin request (default 3rd) answers 503 with `Retry-After`.
 */
export type KeyServiceMode = 'consistent' | 'eventual' | 'flaky';

export interface KeyServiceOptions {
  mode?: KeyServiceMode;
  adminToken?: string;
  propagationMs?: number;
  failEvery?: number;
}

export interface KeyService {
  url: string;
  adminToken: string;
  mode: KeyServiceMode;
  /** Requests answered so far, by status code (lets tests see that 503s really happened). */
  readonly statusCounts: Record<number, number>;
  /** Makes every admin request answer `status` until called with `null` (outage simulation). */
  forceStatus(status: number | null): void;
  close(): Promise<void>;
}

interface StoredKey {
  id: string;
  name: string;
  scopes: string[];
  expiresAt: string;
  createdAt: string;
  secretHash: Buffer;
  /** Set by DELETE; in `eventual` mode the key disappears only at this time. */
  goneAt?: number;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest();

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  if (chunks.length === 0) return undefined;
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

function send(res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { ...(text ? { 'content-type': 'application/json' } : {}), ...headers });
  res.end(text);
}

function bearer(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  return h?.startsWith('Bearer ') ? h.slice('Bearer '.length) : undefined;
}

/** Starts the service on 127.0.0.1 on a random port. */
export async function startKeyService(opts: KeyServiceOptions = {}): Promise<KeyService> {
  const mode = opts.mode ?? 'consistent';
  const adminToken = opts.adminToken ?? `adm_${randomBytes(16).toString('hex')}`;
  const propagationMs = mode === 'eventual' ? (opts.propagationMs ?? 100) : 0;
  const failEvery = opts.failEvery ?? 3;
  const keys = new Map<string, StoredKey>();
  const statusCounts: Record<number, number> = {};
  let adminRequests = 0;
  let forced: number | null = null;

  const live = (k: StoredKey, now: number) => k.goneAt === undefined || now < k.goneAt;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const now = Date.now();
    for (const [id, k] of keys) if (!live(k, now)) keys.delete(id);

    if (req.method === 'GET' && url.pathname === '/whoami') {
      const secret = bearer(req);
      if (secret) {
        const h = sha256(secret);
        for (const k of keys.values()) {
          if (timingSafeEqual(k.secretHash, h) && Date.parse(k.expiresAt) > now) {
            return send(res, 200, { id: k.id, name: k.name, scopes: k.scopes });
          }
        }
      }
      return send(res, 401, { error: 'invalid or expired key' });
    }

    if (!url.pathname.startsWith('/keys')) return send(res, 404, { error: 'not found' });
    if (bearer(req) !== adminToken) return send(res, 401, { error: 'admin token required' });
    adminRequests += 1;
    if (forced !== null) return send(res, forced, { error: 'forced' }, { 'retry-after': '0' });
    if (mode === 'flaky' && adminRequests % failEvery === 0) {
      return send(res, 503, { error: 'temporarily unavailable' }, { 'retry-after': '0' });
    }

    if (req.method === 'POST' && url.pathname === '/keys') {
      const body = (await readJson(req)) as Partial<Pick<StoredKey, 'name' | 'scopes' | 'expiresAt'>>;
      if (
        typeof body?.name !== 'string' ||
        !Array.isArray(body.scopes) ||
        !body.scopes.every((s) => typeof s === 'string') ||
        typeof body.expiresAt !== 'string' ||
        Number.isNaN(Date.parse(body.expiresAt))
      ) {
        return send(res, 400, { error: 'name, scopes[] and expiresAt are required' });
      }
      const secret = `ak_${randomBytes(24).toString('base64url')}`;
      const key: StoredKey = {
        id: `key_${randomUUID()}`,
        name: body.name,
        scopes: body.scopes,
        expiresAt: new Date(body.expiresAt).toISOString(),
        createdAt: new Date(now).toISOString(),
        secretHash: sha256(secret),
      };
      keys.set(key.id, key);
      return send(res, 201, { id: key.id, secret });
    }

    const m = /^\/keys\/([^/]+)$/.exec(url.pathname);
    if (req.method === 'DELETE' && m) {
      const key = keys.get(decodeURIComponent(m[1]!));
      if (!key || key.goneAt !== undefined) return send(res, 404, { error: 'no such key' });
      key.goneAt = now + propagationMs;
      if (propagationMs === 0) keys.delete(key.id);
      return send(res, 204);
    }

    if (req.method === 'GET' && url.pathname === '/keys') {
      const name = url.searchParams.get('name');
      const found = [...keys.values()]
        .filter((k) => name === null || k.name === name)
        .map(({ id, name, scopes, expiresAt, createdAt, goneAt }) => ({
          id,
          name,
          scopes,
          expiresAt,
          createdAt,
          status: goneAt !== undefined ? 'deleting' : Date.parse(expiresAt) <= now ? 'expired' : 'active',
        }));
      return send(res, 200, { keys: found });
    }

    return send(res, 405, { error: 'method not allowed' });
  }

  const server = createServer((req, res) => {
    const origEnd = res.end.bind(res);
    handle(req, res)
      .catch(() => {
        if (!res.headersSent) send(res, 400, { error: 'bad request' });
        else origEnd();
      })
      .finally(() => {
        statusCounts[res.statusCode] = (statusCounts[res.statusCode] ?? 0) + 1;
      });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    adminToken,
    mode,
    statusCounts,
    forceStatus(status) {
      forced = status;
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}
