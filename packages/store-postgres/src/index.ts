export { createPostgresStore, type PostgresStore, type PostgresStoreOptions } from './store.js';
export {
  migrate,
  loadMigrations,
  stateCheckSql,
  DEFAULT_SCHEMA,
  type MigrateOptions,
  type MigrateResult,
  type Migration,
} from './migrate.js';
export type { Queryable, PoolLike, PoolClientLike, ConnectionMode } from './queryable.js';
export type { ListenOption, NotificationClient } from './listen.js';
export { isRetryablePgError, toStoreError } from './errors.js';
