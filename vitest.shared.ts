import { type UserWorkspaceConfig, defineProject } from 'vitest/config';

// Workspace packages resolve each other's TypeScript sources through the `source` export
// condition, so the test suite needs no build step first. Every project config uses this.
// `import`/`default` are left out on purpose: with them, pg's CommonJS `require('pg-pool')` is
// handed pg-pool's ESM build and fails ("Class extends value [object Module]").
const conditions = ['source', 'module', 'node', 'development|production'];

/** A vitest project for one package or example. */
export function project(name: string, test: NonNullable<UserWorkspaceConfig['test']> = {}) {
  return defineProject({
    resolve: { conditions },
    ssr: { resolve: { conditions } },
    test: { name, include: ['test/**/*.test.ts'], ...test },
  });
}
