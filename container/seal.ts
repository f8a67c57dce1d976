/**
 * @module container/seal
 * How a node's private key is kept at rest: AES-256-GCM under the container's master key, with the node ID
 * as associated data, so a sealed key copied onto another node's record does not open. Pure functions, so
 * the key-making threads (policies/keygen-thread.ts) seal exactly as the keyring unseals.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';

export const IV_BYTES = 12;
const TAG_BYTES = 16;
/** IV, the 32-byte seed encrypted, tag. */
export const SEALED_BYTES = IV_BYTES + 32 + TAG_BYTES;

/** `iv` must be fresh random bytes for every seal: GCM is broken by a repeated IV under one key. */
export function sealSeed(master: Uint8Array, id: string, seed: Uint8Array, iv: Uint8Array): Uint8Array {
  const cipher = createCipheriv('aes-256-gcm', master, iv);
  cipher.setAAD(Buffer.from(id));
  const out = new Uint8Array(IV_BYTES + seed.length + TAG_BYTES);
  out.set(iv, 0);
  let at = IV_BYTES;
  const body = cipher.update(seed);
  out.set(body, at);
  at += body.length;
  const rest = cipher.final();
  out.set(rest, at);
  at += rest.length;
  out.set(cipher.getAuthTag(), at);
  return out;
}

/** Throws when the bytes were not sealed for this ID under this master key. */
export function unsealSeed(master: Uint8Array, id: string, sealed: Uint8Array): Uint8Array {
  const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  const decipher = createDecipheriv('aes-256-gcm', master, buf.subarray(0, IV_BYTES));
  decipher.setAAD(Buffer.from(id));
  decipher.setAuthTag(buf.subarray(buf.length - TAG_BYTES));
  return new Uint8Array(Buffer.concat([decipher.update(buf.subarray(IV_BYTES, buf.length - TAG_BYTES)), decipher.final()]));
}
