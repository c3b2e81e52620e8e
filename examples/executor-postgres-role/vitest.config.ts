import { project } from '../../vitest.shared.js';

export default project('example-executor-postgres-role', { testTimeout: 60_000 });
