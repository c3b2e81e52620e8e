import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { benchLifecycle } from './lifecycle.js';

const n = Number(process.env.BENCH_N ?? 3000);
const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
const warmup = Number(process.env.BENCH_WARMUP ?? n);
const method = [
  `${n} sequential lifecycles (request, 2 approvals with distinct roles, issue, complete → revoked → verified)`,
  `with a no-op executor, after a sample case and ${warmup} warm-up cases; baseline = a plain loop doing the same number of`,
  'record updates (object copy + Map.set) and SHA-256 chain steps over the canonical JSON of the same',
  'event payloads (taken from a real case; counts taken from the timed run), warmed up with one full',
  `run of ${n}; both timed in ${rounds} alternating slices of ${Math.ceil(n / rounds)} cases, every slice counted.`,
];
console.log('Grantline core benchmark — full lifecycles on the memory store');
console.log(`method: ${method.join('\n        ')}`);
const r = await benchLifecycle(n, rounds, warmup);
const lines = [
  `node ${process.version}, ${new Date().toISOString()}`,
  `record writes per case: ${r.writesPerCase}, audit events (chain steps) per case: ${r.eventsPerCase}`,
  `grantline: ${r.lifecyclesPerSec.toFixed(0)} lifecycles/s`,
  `baseline:  ${r.baselinePerSec.toFixed(0)} lifecycles/s`,
  `ratio:     ${r.ratio.toFixed(2)}× (target ≥ 0.50×) ${r.ratio >= 0.5 ? 'MET' : 'MISSED'}`,
];
for (const l of lines) console.log(l);

// RESULTS.md keeps one section per benchmark: this run replaces the previous "core lifecycle" one.
const file = new URL('./RESULTS.md', import.meta.url).pathname;
const heading = '## core lifecycle (pnpm bench)';
const section = `${heading}\n\nMethod: ${method.join(' ')}\n\n${lines.map((l) => `- ${l}`).join('\n')}\n`;
const text = existsSync(file)
  ? readFileSync(file, 'utf8')
  : '# Benchmark results\n\nEach section is written by the benchmark that produced it.\n';
const start = text.indexOf(heading);
if (start < 0) writeFileSync(file, `${text.trimEnd()}\n\n${section}`);
else {
  const next = text.indexOf('\n## ', start + heading.length);
  const end = next < 0 ? text.length : next + 1;
  writeFileSync(file, `${text.slice(0, start)}${section}${next < 0 ? '' : '\n'}${text.slice(end)}`);
}
