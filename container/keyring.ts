/**
 * @module container/keyring
 * The operator identity and the master key that seals node private keys at rest (container/seal.ts), and
 * the mint that makes and seals new node keys on worker threads (policies/keygen.ts). Both key files are
 * created on first start with mode 0600. The master key leaves this object only for the mint's threads.
 */
import { hkdfSync, randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { boxPairFromSecret, Identity, KeynodeError, type BoxPair, type NodeId } from '../protocol/index.js';
import { KeyMint } from './policies/keygen.js';
import { IV_BYTES, sealSeed, unsealSeed } from './seal.js';

export class Keyring {
  readonly operator: Identity;
  readonly #master: Buffer;
  #mint: KeyMint | undefined;
  /**
   * The X25519 key private keys are sealed to on the wire (nacl box): derived from the master key, so it is
   * the same after a restart and is never stored.
   */
  readonly box: BoxPair;

  private constructor(operator: Identity, master: Buffer) {
    this.operator = operator;
    this.#master = master;
    this.box = boxPairFromSecret(new Uint8Array(hkdfSync('sha256', master, new Uint8Array(0), 'keynode/box-key/1', 32)));
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

  /** Made on first use: a container that never spawns starts no thread. */
  get mint(): KeyMint {
    return (this.#mint ??= new KeyMint(this.#master));
  }

  /** Seals a node's seed at rest (a node that moved here: its key arrived in a box to this container). */
  seal(id: NodeId, seed: Uint8Array): Uint8Array {
    return sealSeed(this.#master, id, seed, new Uint8Array(randomBytes(IV_BYTES)));
  }

  unseal(id: NodeId, sealed: Uint8Array): Uint8Array {
    try {
      return unsealSeed(this.#master, id, sealed);
    } catch (cause) {
      throw new KeynodeError('ERR_INTERNAL', `the sealed key of ${id} does not open with this container's master key`, { cause });
    }
  }

  /** Ends the mint's threads; a mint asked for afterwards refuses. */
  async close(): Promise<void> {
    await (this.#mint ??= new KeyMint(this.#master)).close();
  }
}
