/**
 * @module container/keygen-thread
 * A worker thread of the key mint (keygen.ts): makes Ed25519 node keys (or takes client-chosen seeds),
 * derives their IDs and seals them under the master key, one chunk per message. Holds no state between
 * messages but the master key it was started with.
 */
import { randomBytes } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { base32Encode } from '../../protocol/base32.js';
import { publicKeyFromSeed } from '../../protocol/keys.js';
import { IV_BYTES, SEALED_BYTES, sealSeed } from '../seal.js';

export interface KeygenRequest {
  job: number;
  /** Random keys to make; ignored when `seeds` is given. */
  count: number;
  /** Client-chosen seeds, 32 bytes each, back to back. */
  seeds?: Uint8Array;
}

export type KeygenReply =
  | { job: number; ids: string[]; seeds: Uint8Array; sealed: Uint8Array }
  | { job: number; error: string };

const master = new Uint8Array(workerData.master as Uint8Array);
const port = parentPort!;

port.on('message', (req: KeygenRequest) => {
  try {
    const count = req.seeds ? req.seeds.length / 32 : req.count;
    // One call for all the randomness of a chunk: a small randomBytes costs ~6 µs here, most of a seal.
    const random = randomBytes((req.seeds ? 0 : 32 * count) + IV_BYTES * count);
    const seeds = req.seeds ?? new Uint8Array(random.buffer, random.byteOffset, 32 * count);
    const ivs = random.subarray(req.seeds ? 0 : 32 * count);
    const sealed = new Uint8Array(SEALED_BYTES * count);
    const ids: string[] = new Array(count);
    for (let i = 0; i < count; i++) {
      const seed = seeds.subarray(32 * i, 32 * i + 32);
      const id = base32Encode(publicKeyFromSeed(seed));
      ids[i] = id;
      sealed.set(sealSeed(master, id, seed, ivs.subarray(IV_BYTES * i, IV_BYTES * i + IV_BYTES)), SEALED_BYTES * i);
    }
    const out = new Uint8Array(seeds); // its own buffer, to transfer
    port.postMessage({ job: req.job, ids, seeds: out, sealed } satisfies KeygenReply, [out.buffer, sealed.buffer]);
  } catch (e) {
    port.postMessage({ job: req.job, error: (e as Error).message } satisfies KeygenReply);
  }
});
