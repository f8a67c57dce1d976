/**
 * @module protocol/grants
 * A grant is the authority behind a capability or a lease check: the target node's signature over
 * (target, holder, name, fn, bound arguments). Whoever can sign as the target binds it; the target's container then accepts
 * exactly that function from exactly that holder, whatever the target's ACL says. Grants work across
 * containers because anyone can check them with the target's public key (its ID).
 */
import { Encoder } from '@msgpack/msgpack';
import { publicKeyFromId, type NodeId } from './ids.js';
import { verifyBytes } from './keys.js';

const DOMAIN = new TextEncoder().encode('keynode/grant/1\n');
const plain = new Encoder();

/** The name a Leased node's check is granted under. */
export const LEASE_GRANT = '$lease';

const NO_ARGS = Uint8Array.of(0x90);

/** `args`: the MessagePack array bound with the call (none: the empty array). */
export function grantMessage(target: NodeId, holder: NodeId, name: string, fn: string, args: Uint8Array = NO_ARGS): Uint8Array {
  const fields = plain.encode([target, holder, name, fn, args]);
  const out = new Uint8Array(DOMAIN.length + fields.length);
  out.set(DOMAIN, 0);
  out.set(fields, DOMAIN.length);
  return out;
}

export function verifyGrant(target: NodeId, holder: NodeId, name: string, fn: string, sig: Uint8Array, args?: Uint8Array): boolean {
  return verifyBytes(publicKeyFromId(target), target, grantMessage(target, holder, name, fn, args), sig);
}
