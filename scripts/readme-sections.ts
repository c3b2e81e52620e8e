import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { ErrorCodes, GRANT_STATES, TERMINAL_STATES, transitionEdges } from '@grantline/core';

/**
 * Generated parts of the README, so the docs cannot drift from the code: the quick start is the
 * example file itself, the state table comes from the transition table, the errors from ErrorCodes.
 * `pnpm readme` rewrites them; a test fails when the README differs.
 */
export function readmeSections(root: string): Record<string, string> {
  const quickstart = readFileSync(`${root}/examples/quickstart/src/main.ts`, 'utf8').trimEnd();
  const byState = new Map<string, string[]>();
  for (const e of transitionEdges()) {
    if (e.from === e.to) continue;
    const list = byState.get(e.from) ?? [];
    list.push(`\`${e.command}\` → ${e.to}`);
    byState.set(e.from, list);
  }
  const states = [
    '| state | terminal | leaves by |',
    '| --- | --- | --- |',
    ...GRANT_STATES.map(
      (s) =>
        `| ${s} | ${TERMINAL_STATES.includes(s) ? 'yes' : 'no'} | ${[...new Set(byState.get(s) ?? [])].join(', ') || '—'} |`,
    ),
  ].join('\n');
  const doc = readFileSync(`${root}/packages/core/src/errors.ts`, 'utf8');
  const errors = [
    '| code | meaning |',
    '| --- | --- |',
    ...Object.entries(ErrorCodes).map(([key, code]) => {
      const m = doc.match(new RegExp(`/\\*\\*\\s*([^*]+?)\\s*\\*/\\s*\\n\\s*${key}:`));
      return `| \`${code}\` | ${m?.[1]?.replace(/\s+/g, ' ') ?? ''} |`;
    }),
  ].join('\n');
  return { quickstart: `\`\`\`ts\n${quickstart}\n\`\`\``, states, errors };
}

/** Replaces every `<!-- BEGIN:name -->…<!-- END:name -->` block with the generated section. */
export function renderReadme(readme: string, sections: Record<string, string>): string {
  let out = readme;
  for (const [name, body] of Object.entries(sections)) {
    const re = new RegExp(`(<!-- BEGIN:${name} -->)[\\s\\S]*?(<!-- END:${name} -->)`);
    if (!re.test(out)) throw new Error(`README has no ${name} section`);
    out = out.replace(re, (_m, a: string, b: string) => `${a}\n${body}\n${b}`);
  }
  return out;
}

/**
 * Replaces every `<!-- BEGIN:snippet path -->…<!-- END:snippet -->` block with the file at `path`
 * (relative to the repository root) as a code block: package READMEs show code that tests run.
 */
export function renderSnippets(readme: string, root: string): string {
  return readme.replace(
    /(<!-- BEGIN:snippet ([^ ]+) -->)[\s\S]*?(<!-- END:snippet -->)/g,
    (_m, a: string, path: string, b: string) => {
      const lang = path.endsWith('.sql') ? 'sql' : path.endsWith('.sh') ? 'sh' : 'ts';
      return `${a}\n\`\`\`${lang}\n${readFileSync(`${root}/${path}`, 'utf8').trimEnd()}\n\`\`\`\n${b}`;
    },
  );
}

/** Every README in the repository that the generator maintains. */
export function readmePaths(root: string): string[] {
  const dirs = ['packages', 'examples'].flatMap((d) => {
    try {
      return readdirSync(`${root}/${d}`).map((x) => `${d}/${x}/README.md`);
    } catch {
      return [];
    }
  });
  return [
    'README.md',
    ...dirs.filter((p) => existsSync(`${root}/${p}`)),
    ...(existsSync(`${root}/docs`)
      ? readdirSync(`${root}/docs`)
          .filter((f) => f.endsWith('.md'))
          .map((f) => `docs/${f}`)
      : []),
  ];
}
