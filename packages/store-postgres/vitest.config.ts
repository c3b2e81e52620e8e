import { defineProject } from 'vitest/config';

// Resolve sibling workspace packages to their TypeScript sources (the `source` export condition).
// Unlike the root list this one leaves out `import`/`default`: with them, pg's CommonJS
// `require('pg-pool')` is handed pg-pool's ESM build and fails ("Class extends value [object Module]").
const conditions = ['source', 'module', 'node', 'development|production'];

export default defineProject({
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: {
    name: 'store-postgres',
    include: ['test/**/*.test.ts'],
    // Integration files share one PostgreSQL server; running them one at a time keeps the 2-core
    // machine responsive and the restart test away from the others.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
