import { project } from '../../vitest.shared.js';

export default project('example-aws', { testTimeout: 120_000 });
