import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { benchLifecycle } from './lifecycle.js';
import { writeSection } from './results.js';

/*
 * What retained cases cost `pnpm bench`'s ratio, and the ratio a store that kept nothing would reach.
 * `pnpm bench`'s Grantline side keeps every finished case in its memory store (the record's last
 * version and its 12 events), as an audit store must; the garbage collector copies what survives, so
 * part of a lifecycle's time is the cost of keeping it. Method:
 * - kept: `pnpm bench` itself (benchLifecycle), in a node process of its own;
 * - dropped: the same, in another process, except that every case but the baseline's sample is
 *   deleted from the store (the memory store's test hook `tamperDeleteCase`: record, events,
 *   sequence entries) right after it verified, inside the timed slices: no finished case is retained.
 *   A process of its own, because in a shared heap the other side's retained cases would be
 *   collected during this side's slices;
 * - each process measures its side against `pnpm bench`'s baseline in the same run, as `pnpm bench`
 *   does; `pairs` kept/dropped pairs run one after the other, alternating, and every run is printed.
 * The dropped side is no design anyone could ship (an audit store keeps its cases): it is the upper
 * bound of what any cut in retained memory could give the ratio.
 * Usage: pnpm bench:ceiling (BENCH_N, default 3000; BENCH_PAIRS, default 3).
 */

const side = process.env.GRANTLINE_CEILING_SIDE;
if (side) {
  // Child: one `pnpm bench` measurement of one side, as JSON on stdout.
  if (side !== 'kept' && side !== 'dropped') throw new Error(`unknown side ${side}`);
  const n = Number(process.env.BENCH_N ?? 3000);
  console.log(JSON.stringify(await benchLifecycle(n, 5, n, side === 'kept')));
} else {
  const n = Number(process.env.BENCH_N ?? 3000);
  const pairs = Number(process.env.BENCH_PAIRS ?? 3);
  if (!(Number.isInteger(n) && n > 0 && Number.isInteger(pairs) && pairs > 0)) {
    throw new Error('BENCH_N and BENCH_PAIRS must be whole numbers above 0');
  }
  const self = fileURLToPath(import.meta.url);
  type Result = Awaited<ReturnType<typeof benchLifecycle>>;
  const run = async (which: 'kept' | 'dropped'): Promise<Result> => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--conditions', 'source', '--import', 'tsx', self],
      { env: { ...process.env, GRANTLINE_CEILING_SIDE: which, BENCH_N: String(n) } },
    );
    return JSON.parse(stdout.trim().split('\n').pop()!) as Result;
  };
  const method =
    `${pairs} pairs of runs, one after the other, each run a node process of its own doing pnpm bench ` +
    `(${n} lifecycles after ${n} warm-up cases, against its baseline in 5 alternating slices): kept = ` +
    'pnpm bench unchanged; dropped = every case deleted from the memory store right after it verified ' +
    '(inside the timed slices), so no finished case is retained';
  console.log('Grantline core benchmark — what retained cases cost the lifecycle ratio');
  console.log(`method: ${method}`);
  const ratios: Record<'kept' | 'dropped', number[]> = { kept: [], dropped: [] };
  const rows: string[] = [];
  for (let p = 0; p < pairs; p++) {
    for (const which of ['kept', 'dropped'] as const) {
      const r = await run(which);
      ratios[which].push(r.ratio);
      const row =
        `${which.padEnd(7)} grantline ${r.lifecyclesPerSec.toFixed(0)}/s (${(1e6 / r.lifecyclesPerSec).toFixed(1)} µs), ` +
        `baseline ${r.baselinePerSec.toFixed(0)}/s (${(1e6 / r.baselinePerSec).toFixed(1)} µs), ratio ${r.ratio.toFixed(2)}×`;
      console.log(row);
      rows.push(row);
    }
  }
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  };
  const range = (xs: number[]) => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}×`;
  const lines = [
    `node ${process.version}, ${new Date().toISOString()}`,
    ...rows,
    `kept:    ratio ${range(ratios.kept)}, median ${median(ratios.kept).toFixed(2)}× (pnpm bench)`,
    `dropped: ratio ${range(ratios.dropped)}, median ${median(ratios.dropped).toFixed(2)}× (the ceiling: nothing retained; target of pnpm bench ≥ 0.50×)`,
  ];
  for (const l of lines.slice(-2)) console.log(l);
  writeSection('core lifecycle, retention ceiling (pnpm bench:ceiling)', [
    `Method: ${method}.`,
    '',
    ...lines.map((l) => `- ${l}`),
  ]);
}
