export { describeStoreConformance, type StoreKitOptions, type TestRunner } from './store-kit.js';
export {
  describeExecutorConformance,
  type ExecutorKitFixture,
  type ExecutorKitOptions,
} from './executor-kit.js';
export { makeGrant, nextVersion, type MakeGrantOptions } from './fixtures.js';
