/**
 * @module protocol/keys
 * Ed25519 through node:crypto only: it verifies many times faster than pure-JS implementations, and this
 * runs on every message. A private key is a 32-byte seed (RFC 8032). KeyObjects are imported as JWK:
 * measured here, that is about ten times faster than importing the same key as PKCS#8 or SPKI DER.
 * (Not generateKeyPairSync followed by a JWK export: on Node 20 that pairing can deadlock under load.)
 */
import { createPrivateKey, createPublicKey, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { KeynodeError } from './errors.js';

export interface KeyPair {
  seed: Uint8Array;
  publicKey: Uint8Array;
  privateKey: KeyObject;
}

/** A new key pair: a random seed, as RFC 8032 defines Ed25519 private keys. */
export function generateKeyPair(): KeyPair {
  return keyPairFromSeed(new Uint8Array(randomBytes(32)));
}

function importSeed(seed: Uint8Array): KeyObject {
  if (!(seed instanceof Uint8Array) || seed.length !== 32) throw new KeynodeError('ERR_BAD_MESSAGE', 'an Ed25519 secret key is a 32-byte seed');
  // The import ignores `x`; the public key is always derived from the seed, never taken from input.
  return createPrivateKey({ format: 'jwk', key: { kty: 'OKP', crv: 'Ed25519', d: Buffer.from(seed.buffer, seed.byteOffset, 32).toString('base64url'), x: '' } });
}

export function keyPairFromSeed(seed: Uint8Array): KeyPair {
  const privateKey = importSeed(seed);
  const x = createPublicKey(privateKey).export({ format: 'jwk' }).x!;
  return { seed: new Uint8Array(seed), publicKey: new Uint8Array(Buffer.from(x, 'base64url')), privateKey };
}

/**
 * The public key of a seed, when no signing follows (making node keys in bulk). The private key's own JWK
 * export carries `x`, which saves building a public KeyObject; DER (PKCS#8/SPKI) in either direction is
 * 5 to 20 times slower here than JWK.
 */
export function publicKeyFromSeed(seed: Uint8Array): Uint8Array {
  return new Uint8Array(Buffer.from(importSeed(seed).export({ format: 'jwk' }).x!, 'base64url'));
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
  key = createPublicKey({ format: 'jwk', key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(raw).toString('base64url') } });
  if (publicKeys.size >= PUBLIC_CACHE_MAX) publicKeys.delete(publicKeys.keys().next().value!);
  publicKeys.set(cacheKey, key);
  return key;
}

/**
 * `verifyBytes` on the libuv threadpool: the ~90 µs of a verify leave the event loop, which then costs ~20 µs
 * of queueing and callback instead. Worth it when several wait to be verified at once, not for one alone.
 */
export function verifyBytesAsync(publicKey: Uint8Array, cacheKey: string, message: Uint8Array, signature: Uint8Array): Promise<boolean> {
  if (signature.length !== 64 || publicKey.length !== 32) return Promise.resolve(false);
  let key: KeyObject;
  try {
    key = publicKeyObject(publicKey, cacheKey);
  } catch {
    return Promise.resolve(false);
  }
  return new Promise((resolve) => verify(null, message, key, signature, (err, ok) => resolve(!err && ok)));
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
