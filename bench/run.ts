import { appendFileSync, existsSync, writeFileSync } from 'node:fs';
import { benchLifecycle } from './lifecycle.js';

const n = Number(process.env.BENCH_N ?? 3000);
console.log('Grantline core benchmark — full lifecycles on the memory store');
console.log(
  `method: ${n} sequential lifecycles (request, 2 approvals with distinct roles, issue, complete → revoked → verified)`,
);
console.log(
  '        with a no-op executor, after 200 warm-up cases; baseline = a plain loop doing the same number of',
);
console.log(
  '        record updates (object copy + Map.set) and SHA-256 chain steps over the canonical JSON of the same\n        event payloads (taken from a real case), measured in the same run.',
);
const r = await benchLifecycle(n);
const lines = [
  `node ${process.version}, ${new Date().toISOString()}`,
  `record writes per case: ${r.writesPerCase}, audit events (chain steps) per case: ${r.eventsPerCase}`,
  `grantline: ${r.lifecyclesPerSec.toFixed(0)} lifecycles/s`,
  `baseline:  ${r.baselinePerSec.toFixed(0)} lifecycles/s`,
  `ratio:     ${r.ratio.toFixed(2)}× (target ≥ 0.50×) ${r.ratio >= 0.5 ? 'MET' : 'MISSED'}`,
];
for (const l of lines) console.log(l);
const file = new URL('./RESULTS.md', import.meta.url).pathname;
if (!existsSync(file))
  writeFileSync(file, '# Benchmark results\n\nEach section is appended by the benchmark that produced it.\n');
appendFileSync(file, `\n## core lifecycle (pnpm bench)\n\n${lines.map((l) => `- ${l}`).join('\n')}\n`);
