/**
 * @module store
 * The container's persistent state over one LevelDB. Only the container process opens it.
 */
export { Store, Txn, type StoreOptions, type SubName } from './store.js';
export type { Charge, StorageAccount } from './meter.js';
export { RecordTemplate, type NodeRecord, type Tombstone, type LogLine } from './records.js';
export * from './keys.js';
