import { project } from '../../vitest.shared.js';

export default project('example-executor-apikey', { testTimeout: 60_000 });
