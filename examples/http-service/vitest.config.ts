import { project } from '../../vitest.shared.js';

export default project('example-http-service', { testTimeout: 120_000, hookTimeout: 120_000 });
