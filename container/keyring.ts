/**
 * @module container/keyring
 * The operator identity and the master key that seals node private keys at rest. Both are created on first
 * start with mode 0600. Sealing is AES-256-GCM from node:crypto with the node ID as associated data, so a
 * sealed key copied onto another node's record does not open.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { Identity, KeynodeError, type NodeId } from '../protocol/index.js';

const IV = 12;
const TAG = 16;

export class Keyring {
  readonly operator: Identity;
  readonly #master: Buffer;

  private constructor(operator: Identity, master: Buffer) {
    this.operator = operator;
    this.#master = master;
  }

  static async open(dataDir: string): Promise<Keyring> {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    const operatorPath = join(dataDir, 'operator.key');
    let operator: Identity;
    try {
      operator = await Identity.load(operatorPath);
    } catch (e) {
      if ((e as { cause?: { code?: string } }).cause?.code !== 'ENOENT') throw e;
      operator = Identity.generate();
      await operator.save(operatorPath);
    }
    const masterPath = join(dataDir, 'master.key');
    let master: Buffer;
    try {
      master = Buffer.from((await readFile(masterPath, 'utf8')).trim(), 'base64');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      master = randomBytes(32);
      await writeFile(masterPath, `${master.toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
    }
    await chmod(masterPath, 0o600);
    if (master.length !== 32) throw new KeynodeError('ERR_INTERNAL', `${masterPath} does not hold a 32-byte key`);
    return new Keyring(operator, master);
  }

  seal(id: NodeId, seed: Uint8Array): Uint8Array {
    const iv = randomBytes(IV);
    const cipher = createCipheriv('aes-256-gcm', this.#master, iv);
    cipher.setAAD(Buffer.from(id));
    const body = Buffer.concat([cipher.update(seed), cipher.final()]);
    return new Uint8Array(Buffer.concat([iv, body, cipher.getAuthTag()]));
  }

  unseal(id: NodeId, sealed: Uint8Array): Uint8Array {
    try {
      const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
      const decipher = createDecipheriv('aes-256-gcm', this.#master, buf.subarray(0, IV));
      decipher.setAAD(Buffer.from(id));
      decipher.setAuthTag(buf.subarray(buf.length - TAG));
      return new Uint8Array(Buffer.concat([decipher.update(buf.subarray(IV, buf.length - TAG)), decipher.final()]));
    } catch (cause) {
      throw new KeynodeError('ERR_INTERNAL', `the sealed key of ${id} does not open with this container's master key`, { cause });
    }
  }
}
