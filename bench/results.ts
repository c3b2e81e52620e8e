import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Replaces this benchmark family's section of bench/RESULTS.md (other sections are kept). */
export function writeSection(title: string, lines: string[]): void {
  const file = fileURLToPath(new URL('./RESULTS.md', import.meta.url));
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
