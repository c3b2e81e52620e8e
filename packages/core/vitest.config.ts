import { defineProject } from 'vitest/config';

// Resolve sibling workspace packages (a devDependency here) from their TypeScript sources.
const conditions = ['source', 'import', 'module', 'node', 'default'];

export default defineProject({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: ['source'] } },
  test: { name: 'core', include: ['test/**/*.test.ts'] },
});
