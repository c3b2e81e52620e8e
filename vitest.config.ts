import { defineConfig } from 'vitest/config';

// Workspace packages resolve each other's TypeScript sources through the
// `source` export condition, so the test suite needs no build step first.
const conditions = ['source', 'import', 'module', 'node', 'default'];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: ['source'] } },
  test: {
    projects: ['packages/*', 'examples/*'],
    reporters: process.env.CI ? ['default', 'json'] : ['default'],
    outputFile: { json: '.ci/results.json' },
  },
});
