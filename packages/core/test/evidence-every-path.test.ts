// The every-path evidence scenarios (every-path-scenarios.ts) on the memory store.
import { createMemoryStore } from '@grantline/store-memory';
import { describeEveryPath } from './every-path-scenarios.js';

describeEveryPath('memory store', async () => {
  const store = createMemoryStore();
  return { store, close: () => store.close() };
});
