import { readFileSync, writeFileSync } from 'node:fs';
import { readmeSections, renderReadme } from './readme-sections.js';

const root = new URL('..', import.meta.url).pathname;
const path = `${root}/README.md`;
writeFileSync(path, renderReadme(readFileSync(path, 'utf8'), readmeSections(root)));
console.log('README.md sections regenerated');
