import { defineProject } from 'vitest/config';

// Like ../../vitest.shared.ts, but without the `module` condition: with it, the AWS SDK resolves to
// its `dist-es` build, whose extensionless imports Node cannot load once vitest externalises it.
const conditions = ['source', 'import', 'node', 'default'];

// moto_server is started once for the package by the global setup (127.0.0.1, IAM enforcement on).
export default defineProject({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: ['source'] } },
  test: {
    name: 'executor-aws',
    include: ['test/**/*.test.ts'],
    globalSetup: ['./test/support/moto-global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
