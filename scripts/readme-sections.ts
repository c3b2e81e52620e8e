import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { ErrorCodes, GRANT_STATES, TERMINAL_STATES, transitionEdges } from '@grantline/core';
import {
  executorKitChecks,
  serviceEventsTable,
  serviceMethodsTable,
  serviceOptionsTable,
} from './readme-api.js';

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

/**
 * Generated sections of the docs and package READMEs (the root README's are {@link readmeSections}),
 * by path relative to the root. `pnpm readme` rewrites them; packages/core/test/readme.test.ts fails
 * when a file differs.
 */
export function docSections(root: string): Record<string, Record<string, string>> {
  return {
    'docs/writing-an-executor.md': { 'executor-kit-checks': executorKitChecks() },
    'packages/core/README.md': {
      'service-methods': serviceMethodsTable(root),
      'service-options': serviceOptionsTable(root),
      'service-events': serviceEventsTable(),
    },
  };
}

/** Replaces every `<!-- BEGIN:name -->…<!-- END:name -->` block with the generated section. */
export function renderReadme(readme: string, sections: Record<string, string>): string {
  let out = readme;
  for (const [name, body] of Object.entries(sections)) {
    const re = new RegExp(`(<!-- BEGIN:${name} -->)[\\s\\S]*?(<!-- END:${name} -->)`);
    if (!re.test(out)) throw new Error(`no ${name} section to generate`);
    out = out.replace(re, (_m, a: string, b: string) => `${a}\n${body}\n${b}`);
  }
  return out;
}

/** `// #region name` / `// #endregion` (also `-- ` and `# ` comments, for SQL and shell). */
const REGION = /^\s*(?:\/\/|--|#)\s*#(region|endregion)\b\s*(\S*)/;

/**
 * The part of `text` between `// #region name` and its `// #endregion` (regions may nest; a region
 * that is not closed is an error). Marker lines are dropped and the common indentation removed, so a
 * region inside a test body reads like top-level code.
 * @throws Error when the region is missing, appears twice or is not closed.
 */
export function extractRegion(text: string, name: string, where = 'file'): string {
  const lines = text.split('\n');
  const starts = lines.flatMap((l, i) => {
    const m = REGION.exec(l);
    return m?.[1] === 'region' && m[2] === name ? [i] : [];
  });
  if (starts.length !== 1)
    throw new Error(`${where}: region ${name} ${starts.length === 0 ? 'not found' : 'appears twice'}`);
  const body: string[] = [];
  let depth = 1;
  for (const line of lines.slice(starts[0]! + 1)) {
    const m = REGION.exec(line);
    if (m?.[1] === 'region') depth++;
    if (m?.[1] === 'endregion' && --depth === 0) return dedent(body.join('\n'));
    if (!m) body.push(line);
  }
  throw new Error(`${where}: region ${name} is not closed`);
}

/** Drops region markers, for a snippet of a whole file. */
function withoutMarkers(text: string): string {
  return text
    .split('\n')
    .filter((l) => !REGION.test(l))
    .join('\n');
}

function dedent(text: string): string {
  const lines = text.replace(/^\n+/, '').trimEnd().split('\n');
  const indent = Math.min(...lines.filter((l) => l.trim()).map((l) => /^ */.exec(l)![0].length));
  return lines.map((l) => l.slice(indent)).join('\n');
}

const LANG: Record<string, string> = { sql: 'sql', sh: 'sh', json: 'json', yaml: 'yaml', yml: 'yaml' };

/**
 * Replaces every `<!-- BEGIN:snippet path -->…<!-- END:snippet -->` block with the file at `path`
 * (relative to the repository root) as a code block: READMEs and docs show code that tests run.
 * `path#name` takes only the region `name` of the file (see {@link extractRegion}).
 */
export function renderSnippets(readme: string, root: string): string {
  return readme.replace(
    /(<!-- BEGIN:snippet ([^ ]+) -->)[\s\S]*?(<!-- END:snippet -->)/g,
    (_m, a: string, ref: string, b: string) => {
      const [path, region] = ref.split('#') as [string, string | undefined];
      const lang = LANG[path.split('.').pop()!] ?? 'ts';
      const text = readFileSync(`${root}/${path}`, 'utf8');
      const body = region ? extractRegion(text, region, path) : withoutMarkers(text).trimEnd();
      return `${a}\n\`\`\`${lang}\n${body}\n\`\`\`\n${b}`;
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
