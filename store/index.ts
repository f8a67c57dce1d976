/**
 * @module store
 * The container's persistent state over one LevelDB. Only the container process opens it.
 */
export { Store, Txn, type StoreOptions } from './store.js';
export { RecordTemplate, type NodeRecord, type Tombstone, type LogLine } from './records.js';
export * from './keys.js';
