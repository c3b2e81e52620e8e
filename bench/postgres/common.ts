import { type ChildProcess, fork } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
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

/** Replaces this benchmark family's section of bench/RESULTS.md (other sections are kept). */
export function writeSection(title: string, lines: string[]): void {
  const file = fileURLToPath(new URL('../RESULTS.md', import.meta.url));
  const header = `## ${title}`;
  let text = existsSync(file)
    ? readFileSync(file, 'utf8')
    : '# Benchmark results\n\nEach section is appended by the benchmark that produced it.\n';
  const start = text.indexOf(header);
  if (start >= 0) {
    const next = text.indexOf('\n## ', start + header.length);
    text = text.slice(0, start).trimEnd() + '\n' + (next >= 0 ? text.slice(next) : '');
  }
  text = `${text.trimEnd()}\n\n${header}\n\n${lines.join('\n')}\n`;
  writeFileSync(file, text);
}

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
