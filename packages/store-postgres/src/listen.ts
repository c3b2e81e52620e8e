/**
 * A dedicated connection that LISTENs for case changes. Why a dedicated one: a LISTEN lives on a
 * session, and pooled connections are handed to other work between queries.
 */
export interface NotificationClient {
  query(text: string): Promise<unknown>;
  // biome-ignore lint/suspicious/noExplicitAny: mirrors Node's EventEmitter signature so pg.Client fits.
  on(event: string, listener: (...args: any[]) => void): unknown;
  end(): Promise<void>;
}

/**
 * Where change notifications come from: a connection string (the store then opens its own
 * `pg.Client`, which needs the optional `pg` package), or a factory returning a connected client.
 */
export type ListenOption = string | { connect(): Promise<NotificationClient> };

/** Internal: fans notifications of one channel out to listeners, reconnecting after faults. */
export interface Notifier {
  add(listener: (caseId: string) => void): () => void;
  /** Delivers a change made by this process (used when no LISTEN connection is configured, and as a fast path). */
  local(caseId: string): void;
  close(): Promise<void>;
}

async function connectByUrl(url: string): Promise<NotificationClient> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url });
  // An 'error' event without a listener would crash the process; the reconnect loop handles it.
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/** Creates the notifier; the LISTEN connection is opened on the first `add`. */
export function createNotifier(
  listen: ListenOption | undefined,
  channel: string,
  onError: (err: unknown) => void,
): Notifier {
  const listeners = new Set<(caseId: string) => void>();
  let closed = false;
  let loop: Promise<void> | undefined;
  let stopCurrent: (() => void) | undefined;
  let wake: (() => void) | undefined;
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });

  const dispatch = (id: string) => {
    for (const l of listeners) {
      try {
        l(id);
      } catch {
        // A listener's failure must not stop delivery to the others.
      }
    }
  };

  const run = async () => {
    let backoff = 100;
    while (!closed && listen !== undefined) {
      try {
        const client = typeof listen === 'string' ? await connectByUrl(listen) : await listen.connect();
        if (closed) {
          await client.end().catch(() => undefined);
          return;
        }
        const lost = new Promise<void>((resolve) => {
          stopCurrent = resolve;
          client.on('error', (err: unknown) => {
            onError(err);
            resolve();
          });
          client.on('end', () => resolve());
        });
        client.on('notification', (msg: { channel?: string; payload?: string }) => {
          if (msg.channel === channel && msg.payload) dispatch(msg.payload);
        });
        await client.query(`LISTEN "${channel}"`);
        backoff = 100;
        await lost;
        await client.end().catch(() => undefined);
      } catch (err) {
        onError(err);
      }
      if (closed) return;
      // Reconnect with capped exponential backoff: the server may be restarting.
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 5_000);
    }
  };

  return {
    add(listener) {
      listeners.add(listener);
      if (!loop && listen !== undefined && !closed) loop = run();
      return () => {
        listeners.delete(listener);
      };
    },
    local: dispatch,
    async close() {
      closed = true;
      listeners.clear();
      stopCurrent?.();
      wake?.();
      await loop;
    },
  };
}
