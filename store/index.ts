/**
 * @module store
 * The container's persistent state over one LevelDB. Only the container process opens it.
 */
export { Store, Txn, type StoreOptions, type RawIterator, type SubName } from './store.js';
export { TombstoneExpiry } from './tombstones.js';
export { BackupError, BackupReader, BackupWriter, readBackup, verifyBackup, BACKUP_MANIFEST, type BackupManifest, type BackupPage } from './backup.js';
export type { Charge, StorageAccount } from './meter.js';
export { RecordTemplate, type NodeRecord, type Tombstone, type LogLine, type Forward } from './records.js';
export * from './keys.js';
