import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  readmePaths,
  readmeSections,
  renderReadme,
  renderSnippets,
} from '../../../scripts/readme-sections.js';

const root = new URL('../../..', import.meta.url).pathname;

describe('README stays true', () => {
  it('quick start, state table and errors table are generated from the code (run `pnpm readme` to update)', () => {
    const readme = readFileSync(`${root}/README.md`, 'utf8');
    expect(renderReadme(readme, readmeSections(root))).toBe(readme);
  });

  it('every code snippet in every README and doc is the file that tests run (run `pnpm readme` to update)', () => {
    const paths = readmePaths(root);
    expect(paths.length).toBeGreaterThan(1);
    for (const rel of paths) {
      const text = readFileSync(`${root}/${rel}`, 'utf8');
      expect(renderSnippets(text, root), rel).toBe(text);
    }
  });

  it('its first two commands are the demo and the test suite', () => {
    const readme = readFileSync(`${root}/README.md`, 'utf8');
    const commands = [...readme.matchAll(/```(?:sh|bash)\n([\s\S]*?)```/g)].map((m) => m[1]!.trim());
    expect(commands[0]).toBe('npm i -g pnpm@10.34.9 && pnpm install && pnpm demo');
    expect(commands[1]).toBe('pnpm test');
  });
});
