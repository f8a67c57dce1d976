/**
 * @module store/backup
 * Backups of a running container's store. The container side (`BackupReader`) reads the whole database from
 * one LevelDB snapshot, a page per signed request, so a backup never stops the container and holds every
 * commit whole or not at all (each commit is one batch, and a snapshot sees a batch entirely or not).
 * The operator's side (`BackupWriter`, `readBackup`) writes those pages into a LevelDB of its own and a
 * manifest written last: a backup without its manifest did not finish and is refused by restore.
 *
 * A backup holds tenants' state in clear and node keys sealed under the container's master key. It does not
 * hold `master.key` or `operator.key`: restore takes both from the operator (README, "Backups").
 */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Level } from 'level';
import { decode, KeynodeError } from '../protocol/index.js';
import type { NodeRecord } from './records.js';
import type { RawIterator, Store } from './store.js';

export const BACKUP_MANIFEST = 'backup.json';
const FORMAT = 'keynode-backup';

export interface BackupManifest {
  format: typeof FORMAT;
  version: 1;
  /** The container the backup is of (its operator's ID). */
  containerId: string;
  /** When the snapshot was taken (ms since the epoch): every commit acknowledged before it is in the backup. */
  takenAt: number;
  entries: number;
  bytes: number;
}

/** One page of a backup: `entries` are [key, value] pairs of raw bytes, in key order. */
export interface BackupPage {
  session: string;
  takenAt: number;
  entries: [Uint8Array, Uint8Array][];
  done: boolean;
}

/** Bytes per page: a page is one reply held in memory on both sides. */
const PAGE_BYTES = 4 * 1024 * 1024;
/** Backups open at once: each pins a snapshot (LevelDB keeps the old files it needs until it ends). */
const MAX_SESSIONS = 2;
/** A session whose operator stopped asking is closed after this long. */
const IDLE_MS = 60_000;

interface Session {
  it: RawIterator;
  takenAt: number;
  timer: NodeJS.Timeout;
  busy: boolean;
}

/** The container's side: snapshot sessions, each read a page at a time. */
export class BackupReader {
  readonly #store: Store;
  readonly #sessions = new Map<string, Session>();

  constructor(store: Store) {
    this.#store = store;
  }

  /** The next page of session `id`, or the first page of a new snapshot when `id` is undefined. */
  async page(id: string | undefined): Promise<BackupPage> {
    let session: Session | undefined;
    if (id === undefined) {
      if (this.#sessions.size >= MAX_SESSIONS) throw new KeynodeError('ERR_OVERLOADED', `${MAX_SESSIONS} backups are running already; retry when one ends`);
      id = randomBytes(16).toString('hex');
      // The snapshot is taken here, synchronously: commits acknowledged before this request are in it.
      session = { it: this.#store.snapshotIterator(PAGE_BYTES), takenAt: Date.now(), timer: undefined as unknown as NodeJS.Timeout, busy: false };
      this.#sessions.set(id, session);
    } else {
      session = this.#sessions.get(id);
      if (!session) throw new KeynodeError('ERR_NOT_FOUND', `no backup session ${id.slice(0, 40)} (it ended, or sat idle longer than ${IDLE_MS / 1000} s); start the backup again`);
      if (session.busy) throw new KeynodeError('ERR_OVERLOADED', 'a page of this backup is being read already; ask for the next one when it arrives');
    }
    clearTimeout(session.timer);
    session.busy = true;
    const sid = id;
    try {
      const entries: [Uint8Array, Uint8Array][] = [];
      let bytes = 0;
      let done = false;
      while (bytes < PAGE_BYTES) {
        const got = await session.it.nextv(1000);
        if (got.length === 0) {
          done = true;
          break;
        }
        for (const [k, v] of got) {
          entries.push([k, v]);
          bytes += k.length + v.length;
        }
      }
      if (done) await this.#end(sid);
      return { session: sid, takenAt: session.takenAt, entries, done };
    } catch (e) {
      await this.#end(sid);
      throw e;
    } finally {
      session.busy = false;
      if (this.#sessions.has(sid)) session.timer = setTimeout(() => void this.#end(sid), IDLE_MS).unref();
    }
  }

  async #end(id: string): Promise<void> {
    const s = this.#sessions.get(id);
    if (!s) return;
    this.#sessions.delete(id);
    clearTimeout(s.timer);
    await s.it.close().catch(() => {});
  }

  async close(): Promise<void> {
    await Promise.all([...this.#sessions.keys()].map((id) => this.#end(id)));
  }
}

type RawDb = Level<Uint8Array, Uint8Array>;

/** The operator's side: a backup directory being written. */
export class BackupWriter {
  readonly #db: RawDb;
  readonly #dir: string;
  entries = 0;
  bytes = 0;

  private constructor(dir: string, db: RawDb) {
    this.#dir = dir;
    this.#db = db;
  }

  static async create(dir: string): Promise<BackupWriter> {
    const db = new Level<Uint8Array, Uint8Array>(join(dir, 'db'), { keyEncoding: 'view', valueEncoding: 'view', errorIfExists: true } as never);
    await db.open();
    return new BackupWriter(dir, db);
  }

  async write(entries: [Uint8Array, Uint8Array][]): Promise<void> {
    if (entries.length === 0) return;
    const batch = this.#db.batch();
    for (const [k, v] of entries) {
      batch.put(k, v);
      this.bytes += k.length + v.length;
    }
    await batch.write();
    this.entries += entries.length;
  }

  /** Closes the database, then writes the manifest: its presence says the backup is complete. */
  async finish(containerId: string, takenAt: number): Promise<BackupManifest> {
    await this.#db.close();
    const manifest: BackupManifest = { format: FORMAT, version: 1, containerId, takenAt, entries: this.entries, bytes: this.bytes };
    await writeFile(join(this.#dir, BACKUP_MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
    return manifest;
  }

  async abandon(): Promise<void> {
    await this.#db.close().catch(() => {});
  }
}

/** A backup that cannot be restored: unfinished, damaged, or not a keynode backup. */
export class BackupError extends Error {
  readonly code = 'ERR_BAD_BACKUP';
}

function badBackup(message: string): BackupError {
  return new BackupError(message);
}

/** The manifest of a finished backup; throws a BackupError for anything else. */
export async function readBackup(dir: string): Promise<BackupManifest> {
  let text: string;
  try {
    text = await readFile(join(dir, BACKUP_MANIFEST), 'utf8');
  } catch {
    throw badBackup(`${dir} is not a finished keynode backup: it has no ${BACKUP_MANIFEST} (a backup writes it last, so one that broke off has none)`);
  }
  let m: Partial<BackupManifest>;
  try {
    m = JSON.parse(text) as Partial<BackupManifest>;
  } catch {
    throw badBackup(`${join(dir, BACKUP_MANIFEST)} is not JSON`);
  }
  if (m.format !== FORMAT || m.version !== 1 || typeof m.containerId !== 'string' || typeof m.takenAt !== 'number' || typeof m.entries !== 'number') {
    throw badBackup(`${join(dir, BACKUP_MANIFEST)} is not a keynode backup manifest of a version this keynode reads (format 1)`);
  }
  return m as BackupManifest;
}

/**
 * Counts the backup's entries (they must match the manifest) and hands `check` the first few node records
 * that hold a sealed key, so restore can prove the master key it was given opens them.
 */
export async function verifyBackup(dir: string, manifest: BackupManifest, check: (rec: NodeRecord) => void, samples = 8): Promise<void> {
  const db = new Level<Uint8Array, Uint8Array>(join(dir, 'db'), { keyEncoding: 'view', valueEncoding: 'view', createIfMissing: false } as never);
  try {
    await db.open();
  } catch (cause) {
    throw badBackup(`the store in ${join(dir, 'db')} does not open: ${(cause as Error).message}`);
  }
  try {
    const nodePrefix = Buffer.from('!n!');
    let count = 0;
    let checked = 0;
    for await (const [k, v] of db.iterator()) {
      count++;
      if (checked < samples && Buffer.from(k.buffer, k.byteOffset, 3).equals(nodePrefix)) {
        const rec = decode(v) as NodeRecord;
        if (rec.sealedKey) {
          check(rec);
          checked++;
        }
      }
    }
    if (count !== manifest.entries) throw badBackup(`the backup's store holds ${count} entries, its manifest says ${manifest.entries}: it was changed or damaged after it was written`);
  } finally {
    await db.close();
  }
}
