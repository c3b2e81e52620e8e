import { describeStoreConformance } from '@grantline/core/testing';
import { describe, it } from 'vitest';
import { createMemoryStore } from '../src/index.js';

describeStoreConformance({ describe, it }, { name: 'memory', create: async () => createMemoryStore() });
describeStoreConformance(
  { describe, it },
  { name: 'memory with latency', create: async () => createMemoryStore({ latencyMs: 1 }) },
);
