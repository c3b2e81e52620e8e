import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { lifecycleBaseline, lifecycleCase } from './lifecycle.js';
import { writeSection } from './results.js';

/*
 * Instructions per lifecycle, Grantline and the `pnpm bench` baseline, counted by valgrind's
 * callgrind: a steadier figure than wall-clock time for judging a change to the hot path. The
 * warm-up must outlast V8's tiering: with 1,000 warm-up cases (this tool's default until stop 13)
 * TurboFan was still compiling Grantline's code (zod's per-schema closures get hot one by one), and
 * compilation was 13% of the count (about 300 K instructions per lifecycle, against 24 K after
 * 4,000). Grantline's figure repeats within about ±2%, the baseline's within about ±1%. Run it
 * on an otherwise idle machine: the count still moves with the load (the tsx loader thread waits
 * by spinning), and with four callgrind runs on two cores Grantline's figure came out 4% higher.
 * Method:
 * - each side runs in its own node process under callgrind, with V8's `--single-threaded`
 *   (no background compilation or GC threads) and `--predictable-gc-schedule` (a fixed heap growth
 *   schedule), without which the total of one run moves by ±0.5 G instructions;
 * - per side, two runs: WARMUP cases only, then WARMUP + N; instructions per lifecycle = the
 *   difference / N (start-up, module loading and warm-up cancel out). The baseline side runs one real
 *   case first, for its sample, as `pnpm bench` does;
 * - the four runs go two at a time, one per core.
 * The target of #2 is on wall-clock time (`pnpm bench`); this is a diagnostic, not that figure.
 * Usage: pnpm bench:instructions (BENCH_N, default 2000; BENCH_WARMUP, default 4000). Needs valgrind.
 */

const side = process.env.GRANTLINE_IC_SIDE;
if (side) {
  // Child: WARMUP + COUNT cases of one side, nothing else.
  const warmup = Number(process.env.GRANTLINE_IC_WARMUP);
  const count = Number(process.env.GRANTLINE_IC_COUNT);
  const c = lifecycleCase();
  if (side === 'grantline') {
    for (let i = 0; i < warmup + count; i++) await c.one();
  } else if (side === 'baseline') {
    await c.one();
    const sample = await c.gl.get((await c.gl.list({ limit: 1 })).grants[0]!.id);
    const base = lifecycleBaseline(sample, await c.gl.history(sample.id));
    const writesPerCase = c.counts().writes;
    base.run(0, warmup, writesPerCase);
    base.clear(); // as pnpm bench does after the baseline's warm-up
    base.run(warmup, count, writesPerCase);
  } else {
    throw new Error(`unknown side ${side}`);
  }
} else {
  const n = Number(process.env.BENCH_N ?? 2000);
  const warmup = Number(process.env.BENCH_WARMUP ?? 4000);
  if (!(Number.isInteger(n) && n > 0 && Number.isInteger(warmup) && warmup >= 0)) {
    throw new Error('BENCH_N must be a whole number above 0 and BENCH_WARMUP one of 0 or more');
  }
  const self = fileURLToPath(import.meta.url);
  const run = async (which: string, count: number): Promise<number> => {
    const { stderr } = await promisify(execFile)(
      'valgrind',
      [
        '--tool=callgrind',
        '--callgrind-out-file=/dev/null',
        process.execPath,
        '--single-threaded',
        '--predictable-gc-schedule',
        '--conditions',
        'source',
        '--import',
        'tsx',
        self,
      ],
      {
        env: {
          ...process.env,
          GRANTLINE_IC_SIDE: which,
          GRANTLINE_IC_WARMUP: String(warmup),
          GRANTLINE_IC_COUNT: String(count),
        },
        maxBuffer: 1 << 24,
      },
    );
    const m = /Collected : (\d+)/.exec(stderr);
    if (!m) throw new Error(`callgrind printed no total for ${which}: ${stderr.slice(-500)}`);
    return Number(m[1]);
  };
  const method = `per side, (instructions of ${warmup} + ${n} cases − of ${warmup} cases) / ${n}, each run in its own node under callgrind with --single-threaded --predictable-gc-schedule; the cases and the baseline are those of pnpm bench`;
  console.log('Grantline core benchmark — instructions per lifecycle (callgrind)');
  console.log(`method: ${method}`);
  const [g0, g1] = await Promise.all([run('grantline', 0), run('grantline', n)]);
  const [b0, b1] = await Promise.all([run('baseline', 0), run('baseline', n)]);
  const g = (g1 - g0) / n;
  const b = (b1 - b0) / n;
  const lines = [
    `node ${process.version}, ${new Date().toISOString()}`,
    `grantline: ${(g / 1e6).toFixed(3)} M instructions per lifecycle`,
    `baseline:  ${(b / 1e6).toFixed(3)} M instructions per lifecycle`,
    `ratio:     ${(b / g).toFixed(3)} (baseline / grantline instructions; the wall-clock target is pnpm bench)`,
  ];
  for (const l of lines) console.log(l);
  writeSection('core lifecycle, instructions (pnpm bench:instructions)', [
    `Method: ${method}.`,
    '',
    ...lines.map((l) => `- ${l}`),
  ]);
}
