/**
 * @module protocol/keys
 * Ed25519 through node:crypto only: it verifies many times faster than pure-JS implementations, and this
 * runs on every message. A private key is a 32-byte seed (RFC 8032); KeyObjects are built from DER with
 * fixed prefixes so no JSON or PEM parsing sits on the hot path.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { KeynodeError } from './errors.js';

const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export interface KeyPair {
  seed: Uint8Array;
  publicKey: Uint8Array;
  privateKey: KeyObject;
}

export function generateKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const seed = new Uint8Array(privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(PKCS8_PREFIX.length));
  const raw = new Uint8Array(publicKey.export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length));
  return { seed, publicKey: raw, privateKey };
}

export function keyPairFromSeed(seed: Uint8Array): KeyPair {
  if (!(seed instanceof Uint8Array) || seed.length !== 32) throw new KeynodeError('ERR_BAD_MESSAGE', 'an Ed25519 secret key is a 32-byte seed');
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const raw = new Uint8Array(createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length));
  return { seed: new Uint8Array(seed), publicKey: raw, privateKey };
}

export function signBytes(privateKey: KeyObject, message: Uint8Array): Uint8Array {
  return new Uint8Array(sign(null, message, privateKey));
}

// Building a KeyObject costs about as much as a verify, so recently seen senders keep theirs.
const PUBLIC_CACHE_MAX = 20_000;
const publicKeys = new Map<string, KeyObject>();

function publicKeyObject(raw: Uint8Array, cacheKey: string): KeyObject {
  let key = publicKeys.get(cacheKey);
  if (key) return key;
  key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
  if (publicKeys.size >= PUBLIC_CACHE_MAX) publicKeys.delete(publicKeys.keys().next().value!);
  publicKeys.set(cacheKey, key);
  return key;
}

/** `cacheKey` is the signer's node ID (its encoded public key). */
export function verifyBytes(publicKey: Uint8Array, cacheKey: string, message: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== 64 || publicKey.length !== 32) return false;
  try {
    return verify(null, message, publicKeyObject(publicKey, cacheKey), signature);
  } catch {
    // A point that is not on the curve fails to import: that is a bad signature, not a crash.
    return false;
  }
}
