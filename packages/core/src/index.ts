export * from './errors.js';
export * from './model.js';
export * from './ports.js';
export * from './audit.js';
export * from './lifecycle.js';
export * from './policy.js';
export * from './service.js';
export * from './token-executor.js';
