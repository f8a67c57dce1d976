/**
 * @module client/handle
 * A node as a client holds it: its ID and URL and, for nodes this client spawned, its private key (the
 * proof `destroy` needs). Serializes to its URL; the key never leaves through JSON or inspection.
 */
import { Identity, NodeRef } from '../protocol/index.js';

export class NodeHandle extends NodeRef {
  readonly #secretKey: Uint8Array | undefined;
  #identity: Identity | undefined;

  constructor(url: string, secretKey?: Uint8Array) {
    super(url);
    this.#secretKey = secretKey;
  }

  /** True when this handle holds the node's private key (it was spawned by this client, or given the key). */
  get hasKey(): boolean {
    return this.#secretKey !== undefined;
  }

  /** The node's 32-byte private key, to keep somewhere safe if the handle must outlive this process. */
  exportSecretKey(): Uint8Array | undefined {
    return this.#secretKey && new Uint8Array(this.#secretKey);
  }

  /** The node's identity, to sign as the node (destroy). */
  identity(): Identity | undefined {
    if (!this.#secretKey) return undefined;
    return (this.#identity ??= Identity.fromSecretKey(this.#secretKey));
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `NodeHandle(${this.url})`;
  }
}
