/**
 * @module protocol/identity
 * A principal's key pair: a client program's, the operator's, or (inside the container) a node's.
 */
import { readFile, writeFile, rename, stat } from 'node:fs/promises';
import type { KeyObject } from 'node:crypto';
import { KeynodeError } from './errors.js';
import { idFromPublicKey, type NodeId } from './ids.js';
import { generateKeyPair, keyPairFromSeed, signBytes } from './keys.js';

const FILE_TYPE = 'keynode-identity';

/**
 * @example
 * const me = Identity.generate();
 * await me.save('./me.key');               // mode 0600
 * const again = await Identity.load('./me.key');
 * again.id === me.id;                      // true
 */
export class Identity {
  readonly id: NodeId;
  readonly publicKey: Uint8Array;
  readonly #seed: Uint8Array;
  readonly #privateKey: KeyObject;

  private constructor(seed: Uint8Array, publicKey: Uint8Array, privateKey: KeyObject) {
    this.#seed = seed;
    this.#privateKey = privateKey;
    this.publicKey = publicKey;
    this.id = idFromPublicKey(publicKey);
  }

  static generate(): Identity {
    const kp = generateKeyPair();
    return new Identity(kp.seed, kp.publicKey, kp.privateKey);
  }

  /** From a 32-byte Ed25519 seed (the RFC 8032 private key). */
  static fromSecretKey(seed: Uint8Array): Identity {
    const kp = keyPairFromSeed(seed);
    return new Identity(kp.seed, kp.publicKey, kp.privateKey);
  }

  static async load(path: string): Promise<Identity> {
    const info = await stat(path).catch((cause: unknown) => {
      const missing = (cause as NodeJS.ErrnoException).code === 'ENOENT';
      throw new KeynodeError(missing ? 'ERR_NOT_FOUND' : 'ERR_ACCESS_DENIED', `cannot read identity file ${path}: ${(cause as Error).message}`, { cause });
    });
    if (process.platform !== 'win32' && (info.mode & 0o077) !== 0) {
      throw new KeynodeError('ERR_ACCESS_DENIED', `identity file ${path} is readable by others (mode ${(info.mode & 0o777).toString(8)}); run chmod 600 ${path}`);
    }
    let parsed: { type?: unknown; secretKey?: unknown; id?: unknown };
    try {
      parsed = JSON.parse(await readFile(path, 'utf8'));
    } catch (cause) {
      throw new KeynodeError('ERR_BAD_MESSAGE', `identity file ${path} is not a keynode identity (JSON)`, { cause });
    }
    if (parsed?.type !== FILE_TYPE || typeof parsed.secretKey !== 'string') {
      throw new KeynodeError('ERR_BAD_MESSAGE', `identity file ${path} is not a keynode identity`);
    }
    const identity = Identity.fromSecretKey(new Uint8Array(Buffer.from(parsed.secretKey, 'base64')));
    if (parsed.id !== undefined && parsed.id !== identity.id) {
      throw new KeynodeError('ERR_BAD_MESSAGE', `identity file ${path} names ${String(parsed.id)} but its key is ${identity.id}`);
    }
    return identity;
  }

  /** Writes the key file with mode 0600, atomically (temp file + rename). */
  async save(path: string): Promise<void> {
    const body = JSON.stringify({ type: FILE_TYPE, id: this.id, secretKey: Buffer.from(this.#seed).toString('base64') }, null, 2);
    const tmp = `${path}.${process.pid}.tmp`;
    await writeFile(tmp, `${body}\n`, { mode: 0o600, flag: 'wx' });
    await rename(tmp, path);
  }

  sign(message: Uint8Array): Uint8Array {
    return signBytes(this.#privateKey, message);
  }

  /** The 32-byte seed. Handle with care: whoever has it is this principal. */
  exportSecretKey(): Uint8Array {
    return new Uint8Array(this.#seed);
  }

  toJSON(): { id: NodeId } {
    return { id: this.id };
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `Identity(${this.id})`;
  }
}
