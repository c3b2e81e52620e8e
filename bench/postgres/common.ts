import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

/** The server under test (the machine's main cluster by default). */
export const PG_URL = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export function pool(max: number): pg.Pool {
  const p = new pg.Pool({ connectionString: PG_URL, max });
  p.on('error', () => undefined);
  return p;
}

/** Nearest-rank percentile of an unsorted sample. */
export function pct(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export const fmt = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');

export { writeSection } from '../results.js';

/** Forks a TypeScript worker with the workspace's source condition. */
export function forkTs(file: string, env: Record<string, string>): ChildProcess {
  return fork(fileURLToPath(new URL(file, import.meta.url)), [], {
    execArgv: ['--conditions=source', '--import', 'tsx'],
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitReady(children: ChildProcess[]): Promise<void> {
  await Promise.all(children.map((c) => new Promise((r) => c.once('message', r))));
}

export async function stopAll(children: ChildProcess[]): Promise<void> {
  await Promise.all(
    children.map(
      (c) =>
        new Promise((r) => {
          if (c.exitCode !== null) return r(null);
          c.once('exit', r);
          c.kill('SIGTERM');
        }),
    ),
  );
}
