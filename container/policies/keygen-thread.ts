/**
 * @module container/keygen-thread
 * A worker thread of the key mint (keygen.ts), one chunk of work per message: make Ed25519 node keys (or
 * take client-chosen seeds), name them and seal them under the master key; or check, or sign, the grants of
 * one capability for many holders. Holds nothing between messages but the master key it started with.
 */
import { createPrivateKey, createPublicKey, randomBytes, sign, verify } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { base32Encode } from '../../protocol/base32.js';
import { grantMessage } from '../../protocol/grants.js';
import { publicKeyFromId } from '../../protocol/ids.js';
import { publicKeyFromSeed } from '../../protocol/keys.js';
import { IV_BYTES, SEALED_BYTES, sealSeed } from '../seal.js';

/** One capability as a grant names it: the holder varies, the rest is shared by a whole spawn. */
export interface GrantCall {
  target: string;
  name: string;
  fn: string;
  args?: Uint8Array;
}

export type KeygenWork =
  /** Random keys to make, or client-chosen seeds (32 bytes each, back to back) to name and seal. */
  | { op: 'keys'; count: number; seeds?: Uint8Array }
  /** Grants (64 bytes each, back to back) to check, one per holder. */
  | { op: 'verify'; call: GrantCall; holders: string[]; sigs: Uint8Array }
  /** Grants to sign with the target's seed, one per holder. */
  | { op: 'sign'; call: GrantCall; seed: Uint8Array; holders: string[] };

export type KeygenRequest = KeygenWork & { job: number };

export type KeygenReply =
  | { job: number; ids: string[]; seeds: Uint8Array; sealed: Uint8Array }
  | { job: number; ok: Uint8Array }
  | { job: number; sigs: Uint8Array }
  | { job: number; error: string };

const master = new Uint8Array(workerData.master as Uint8Array);
const port = parentPort!;

function keys(job: number, count: number, chosen?: Uint8Array): void {
  // One call for all the randomness of a chunk: a small randomBytes costs ~6 µs here, most of a seal.
  const random = randomBytes((chosen ? 0 : 32 * count) + IV_BYTES * count);
  const seeds = chosen ?? new Uint8Array(random.buffer, random.byteOffset, 32 * count);
  const ivs = random.subarray(chosen ? 0 : 32 * count);
  const sealed = new Uint8Array(SEALED_BYTES * count);
  const ids: string[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const seed = seeds.subarray(32 * i, 32 * i + 32);
    const id = base32Encode(publicKeyFromSeed(seed));
    ids[i] = id;
    sealed.set(sealSeed(master, id, seed, ivs.subarray(IV_BYTES * i, IV_BYTES * i + IV_BYTES)), SEALED_BYTES * i);
  }
  const out = new Uint8Array(seeds); // its own buffer, to transfer
  port.postMessage({ job, ids, seeds: out, sealed } satisfies KeygenReply, [out.buffer, sealed.buffer]);
}

function verifyAll(job: number, call: GrantCall, holders: string[], sigs: Uint8Array): void {
  const ok = new Uint8Array(holders.length);
  let key;
  try {
    key = createPublicKey({ format: 'jwk', key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKeyFromId(call.target)).toString('base64url') } });
  } catch {
    key = undefined; // not a point on the curve: no grant by it verifies
  }
  if (key) {
    for (let i = 0; i < holders.length; i++) {
      const message = grantMessage(call.target, holders[i]!, call.name, call.fn, call.args);
      ok[i] = verify(null, message, key, sigs.subarray(64 * i, 64 * i + 64)) ? 1 : 0;
    }
  }
  port.postMessage({ job, ok } satisfies KeygenReply, [ok.buffer]);
}

function signAll(job: number, call: GrantCall, seed: Uint8Array, holders: string[]): void {
  const key = createPrivateKey({ format: 'jwk', key: { kty: 'OKP', crv: 'Ed25519', d: Buffer.from(seed).toString('base64url'), x: '' } });
  const sigs = new Uint8Array(64 * holders.length);
  for (let i = 0; i < holders.length; i++) sigs.set(sign(null, grantMessage(call.target, holders[i]!, call.name, call.fn, call.args), key), 64 * i);
  port.postMessage({ job, sigs } satisfies KeygenReply, [sigs.buffer]);
}

port.on('message', (req: KeygenRequest) => {
  try {
    if (req.op === 'keys') keys(req.job, req.seeds ? req.seeds.length / 32 : req.count, req.seeds);
    else if (req.op === 'verify') verifyAll(req.job, req.call, req.holders, req.sigs);
    else signAll(req.job, req.call, req.seed, req.holders);
  } catch (e) {
    port.postMessage({ job: req.job, error: (e as Error).message } satisfies KeygenReply);
  }
});
