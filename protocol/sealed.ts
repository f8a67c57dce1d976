/**
 * @module protocol/sealed
 * Private keys on the wire travel only inside a nacl box (tweetnacl: X25519 + XSalsa20-Poly1305): a client's
 * chosen seeds to the container's box key, and a spawn reply's new keys back to the key the spawner named.
 * One box holds all the keys of a message (32 bytes each), so a batch of ten thousand costs one box, not ten
 * thousand. Key transfer is rare; tweetnacl's speed is no concern here.
 */
import { randomBytes } from 'node:crypto';
import nacl from 'tweetnacl';
import { KeynodeError } from './errors.js';
import type { SealedBox } from './messages.js';

export interface BoxPair {
  publicKey: Uint8Array;
  secretKey: Uint8Array;
}

/** A box key pair from 32 secret bytes (a container derives its own from its master key). */
export function boxPairFromSecret(secret: Uint8Array): BoxPair {
  return nacl.box.keyPair.fromSecretKey(secret);
}

export function newBoxPair(): BoxPair {
  return boxPairFromSecret(new Uint8Array(randomBytes(32)));
}

export function sealKeys(keys: readonly Uint8Array[], to: Uint8Array, from: BoxPair): SealedBox {
  if (!(to instanceof Uint8Array) || to.length !== nacl.box.publicKeyLength) throw new KeynodeError('ERR_BAD_MESSAGE', 'a box key is 32 bytes');
  const plain = new Uint8Array(32 * keys.length);
  keys.forEach((k, i) => plain.set(k, 32 * i));
  const nonce = new Uint8Array(randomBytes(nacl.box.nonceLength));
  const box = nacl.box(plain, nonce, to, from.secretKey);
  plain.fill(0);
  return { pk: from.publicKey, nonce, box };
}

/**
 * The key of boxes between two fixed parties (nacl.box.before), for parties that exchange many boxes (a
 * container moving nodes to a peer): each box then costs a secretbox, not an X25519 multiplication.
 */
export function boxShared(theirs: Uint8Array, own: BoxPair): Uint8Array {
  if (!(theirs instanceof Uint8Array) || theirs.length !== nacl.box.publicKeyLength) throw new KeynodeError('ERR_BAD_MESSAGE', 'a box key is 32 bytes');
  return nacl.box.before(theirs, own.secretKey);
}

/** `sealKeys` with the shared key of `from` (whose public key the box names) and the recipient. */
export function sealKeysShared(keys: readonly Uint8Array[], shared: Uint8Array, from: Uint8Array): SealedBox {
  const plain = new Uint8Array(32 * keys.length);
  keys.forEach((k, i) => plain.set(k, 32 * i));
  const nonce = new Uint8Array(randomBytes(nacl.box.nonceLength));
  const box = nacl.box.after(plain, nonce, shared);
  plain.fill(0);
  return { pk: from, nonce, box };
}

/** The `count` 32-byte keys inside a box sealed to `own`; any other box is ERR_BAD_MESSAGE. */
export function openKeys(sealed: unknown, own: BoxPair, count: number, shared?: (pk: Uint8Array) => Uint8Array): Uint8Array[] {
  const s = sealed as Partial<SealedBox> | null;
  if (typeof s !== 'object' || s === null || !(s.pk instanceof Uint8Array) || s.pk.length !== 32 || !(s.nonce instanceof Uint8Array) || s.nonce.length !== nacl.box.nonceLength || !(s.box instanceof Uint8Array)) {
    throw new KeynodeError('ERR_BAD_MESSAGE', 'sealed keys are { pk: 32 bytes, nonce: 24 bytes, box }');
  }
  if (s.box.length !== 32 * count + nacl.box.overheadLength) throw new KeynodeError('ERR_BAD_MESSAGE', `the box holds ${Math.max(0, s.box.length - nacl.box.overheadLength) / 32} keys, not ${count}`);
  const plain = shared ? nacl.box.open.after(s.box, s.nonce, shared(s.pk)) : nacl.box.open(s.box, s.nonce, s.pk, own.secretKey);
  if (!plain) throw new KeynodeError('ERR_BAD_MESSAGE', 'the sealed keys do not open with this key (sealed to another, or tampered with)');
  return Array.from({ length: count }, (_, i) => plain.slice(32 * i, 32 * i + 32));
}
