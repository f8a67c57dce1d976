/**
 * @module protocol/ids
 * Node IDs are the node's raw Ed25519 public key in base32 (52 chars), so a node URL alone is enough to
 * verify that node's signatures. URLs are `http(s)://host[:port]/<nodeId>`.
 */
import { base32Decode, base32Encode } from './base32.js';
import { KeynodeError } from './errors.js';

export type NodeId = string;

export const NODE_ID_LENGTH = 52;
const NODE_ID_RE = /^[a-z2-7]{52}$/;

export function idFromPublicKey(publicKey: Uint8Array): NodeId {
  if (publicKey.length !== 32) throw new KeynodeError('ERR_BAD_NODE_ID', `an Ed25519 public key has 32 bytes, got ${publicKey.length}`);
  return base32Encode(publicKey);
}

/** True only for canonical IDs: 52 chars of [a-z2-7] decoding to 32 bytes with zero padding bits. */
export function isNodeId(value: unknown): value is NodeId {
  return typeof value === 'string' && NODE_ID_RE.test(value) && base32Decode(value) !== undefined;
}

export function publicKeyFromId(id: string): Uint8Array {
  const bytes = typeof id === 'string' && NODE_ID_RE.test(id) ? base32Decode(id) : undefined;
  if (!bytes || bytes.length !== 32) {
    throw new KeynodeError('ERR_BAD_NODE_ID', `not a node ID (52 lowercase base32 characters): ${preview(id)}`);
  }
  return bytes;
}

export interface ParsedNodeUrl {
  /** `http(s)://host[:port]`, no trailing slash: where the node's container listens. */
  readonly origin: string;
  readonly id: NodeId;
  readonly url: string;
}

/**
 * @example
 * parseNodeUrl('http://127.0.0.1:7070/25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena')
 * // { origin: 'http://127.0.0.1:7070', id: '25njq...', url: 'http://127.0.0.1:7070/25njq...' }
 */
export function parseNodeUrl(url: string): ParsedNodeUrl {
  // Every call names its node by URL (a client's handle, a ctx.at, each contact a check compares): WHATWG URL
  // parsing and the ID's base32 check are most of what resolving costs, for the same few URLs again and again.
  if (typeof url !== 'string') return parseNodeUrlOnce(url);
  const known = parsedUrls.get(url);
  if (known) return known;
  const parsed = Object.freeze(parseNodeUrlOnce(url));
  if (parsedUrls.size >= MAX_PARSED_URLS) parsedUrls.delete(parsedUrls.keys().next().value!);
  parsedUrls.set(url, parsed);
  return parsed;
}

/** URLs parsed lately (only ones that parsed: a refusal is thrown again each time), oldest forgotten first. */
const parsedUrls = new Map<string, Readonly<ParsedNodeUrl>>();
const MAX_PARSED_URLS = 1024;

function parseNodeUrlOnce(url: string): ParsedNodeUrl {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new KeynodeError('ERR_BAD_URL', `not a node URL (http(s)://host[:port]/<nodeId>): ${preview(url)}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new KeynodeError('ERR_BAD_URL', `a node URL must use http or https, got ${u.protocol}`);
  }
  if (u.username || u.password || u.search || u.hash) {
    throw new KeynodeError('ERR_BAD_URL', `a node URL has no credentials, query or fragment: ${preview(url)}`);
  }
  const id = u.pathname.slice(1);
  if (!isNodeId(id)) throw new KeynodeError('ERR_BAD_NODE_ID', `the path of a node URL must be a node ID: ${preview(url)}`);
  return { origin: u.origin, id, url: `${u.origin}/${id}` };
}

export function formatNodeUrl(origin: string, id: NodeId): string {
  if (!isNodeId(id)) throw new KeynodeError('ERR_BAD_NODE_ID', `not a node ID: ${preview(id)}`);
  let u: URL;
  try {
    u = new URL(origin);
  } catch {
    throw new KeynodeError('ERR_BAD_URL', `not a container URL: ${preview(origin)}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new KeynodeError('ERR_BAD_URL', `a container URL must use http or https, got ${u.protocol}`);
  return `${u.origin}/${id}`;
}

/** A node named by ID or URL, or anything carrying them (a handle, ctx.here). */
export type NodeLike = string | { readonly id: NodeId; readonly url?: string };

/** Resolves an ID, URL or handle to its ID and, when known, its URL. */
export function resolveNode(node: NodeLike): { id: NodeId; url?: string } {
  if (typeof node === 'string') {
    if (isNodeId(node)) return { id: node };
    const p = parseNodeUrl(node);
    return { id: p.id, url: p.url };
  }
  if (typeof node === 'object' && node !== null && isNodeId(node.id)) {
    if (typeof node.url === 'string') {
      const p = parseNodeUrl(node.url);
      if (p.id !== node.id) throw new KeynodeError('ERR_BAD_URL', `handle URL ${p.url} does not name node ${node.id}`);
      return { id: p.id, url: p.url };
    }
    return { id: node.id };
  }
  throw new KeynodeError('ERR_BAD_NODE_ID', `expected a node ID, node URL or node handle, got ${preview(node)}`);
}

export function preview(v: unknown): string {
  let s: string;
  try {
    s = typeof v === 'string' ? JSON.stringify(v) : String(v);
  } catch {
    s = Object.prototype.toString.call(v);
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
