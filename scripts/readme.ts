import { readFileSync, writeFileSync } from 'node:fs';
import { docSections, readmePaths, readmeSections, renderReadme, renderSnippets } from './readme-sections.js';

const root = new URL('..', import.meta.url).pathname;
const generated = docSections(root);
for (const rel of readmePaths(root)) {
  const path = `${root}/${rel}`;
  const before = readFileSync(path, 'utf8');
  let after = renderSnippets(before, root);
  if (rel === 'README.md') after = renderReadme(after, readmeSections(root));
  if (generated[rel]) after = renderReadme(after, generated[rel]);
  if (after !== before) writeFileSync(path, after);
}
console.log('README sections and snippets regenerated');
