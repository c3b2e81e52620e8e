import pg from 'pg';

export const PG_URL = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** True when a PostgreSQL server answers; in CI its absence is a failure, locally a loud skip. */
export async function pgAvailable(): Promise<boolean> {
  const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 2_000 });
  try {
    await c.connect();
    return true;
  } catch (err) {
    if (process.env.CI)
      throw new Error(`PostgreSQL is required in CI but ${PG_URL} did not answer: ${String(err)}`);
    console.warn(
      `SKIPPED: no PostgreSQL at ${PG_URL} (set PG_URL); the postgres-role executor tests did not run`,
    );
    return false;
  } finally {
    await c.end().catch(() => {});
  }
}

export function connectionOf(url: string) {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port || 5432), database: u.pathname.slice(1) || 'postgres' };
}
