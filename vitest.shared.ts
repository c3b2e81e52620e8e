import { type UserWorkspaceConfig, defineProject } from 'vitest/config';

// Workspace packages resolve each other's TypeScript sources through the `source` export
// condition, so the test suite needs no build step first. Every project config uses this.
const conditions = ['source', 'import', 'module', 'node', 'default'];

/** A vitest project for one package or example. */
export function project(name: string, test: NonNullable<UserWorkspaceConfig['test']> = {}) {
  return defineProject({
    resolve: { conditions },
    ssr: { resolve: { conditions, externalConditions: ['source'] } },
    test: { name, include: ['test/**/*.test.ts'], ...test },
  });
}
