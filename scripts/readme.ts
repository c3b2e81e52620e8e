import { readFileSync, writeFileSync } from 'node:fs';
import { readmePaths, readmeSections, renderReadme, renderSnippets } from './readme-sections.js';

const root = new URL('..', import.meta.url).pathname;
for (const rel of readmePaths(root)) {
  const path = `${root}/${rel}`;
  const before = readFileSync(path, 'utf8');
  let after = renderSnippets(before, root);
  if (rel === 'README.md') after = renderReadme(after, readmeSections(root));
  if (after !== before) writeFileSync(path, after);
}
console.log('README sections and snippets regenerated');
