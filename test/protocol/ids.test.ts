import { describe, expect, it } from 'vitest';
import { isKeynodeError, type ErrorCode } from 'keynode';
import { formatNodeUrl, idFromPublicKey, isNodeId, parseNodeUrl, publicKeyFromId } from '../../dist/protocol/index.js';

/** SPEC §1: the public keys of RFC 8032's test vectors 1 and 2 and their node IDs. */
const VECTORS = [
  ['d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', '25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena'],
  ['3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c', 'hvabpq7iioevvevxbktu2g36xsojqlgpf3cjndgazvk7ckxumyga'],
] as const;
const ID = VECTORS[0][1];

/** The code of the KeynodeError `f` throws; fails the test if it throws anything else or nothing. */
function codeOf(f: () => unknown): ErrorCode {
  try {
    f();
  } catch (e) {
    expect(isKeynodeError(e), `expected a KeynodeError, got ${String(e)}`).toBe(true);
    return (e as { code: ErrorCode }).code;
  }
  throw new Error('expected a KeynodeError, nothing was thrown');
}

describe('node IDs', () => {
  it.each(VECTORS)('public key %s is node ID %s, both ways', (hex, id) => {
    const key = new Uint8Array(Buffer.from(hex, 'hex'));
    expect(idFromPublicKey(key)).toBe(id);
    expect(isNodeId(id)).toBe(true);
    expect(Buffer.from(publicKeyFromId(id)).toString('hex')).toBe(hex);
  });

  it('every 32-byte key round-trips through its ID', () => {
    for (const fill of [0x00, 0xff, 0x5a]) {
      const key = new Uint8Array(32).fill(fill);
      const id = idFromPublicKey(key);
      expect(id).toMatch(/^[a-z2-7]{52}$/);
      expect(publicKeyFromId(id)).toEqual(key);
    }
  });

  it('a public key that is not 32 bytes has no ID', () => {
    expect(codeOf(() => idFromPublicKey(new Uint8Array(31)))).toBe('ERR_BAD_NODE_ID');
    expect(codeOf(() => idFromPublicKey(new Uint8Array(33)))).toBe('ERR_BAD_NODE_ID');
  });

  const malformed: [string, unknown][] = [
    ['too short (51)', ID.slice(0, 51)],
    ['too long (53)', `${ID}a`],
    ['too long (56, padded)', `${ID}====`],
    ['uppercase', ID.toUpperCase()],
    ['one uppercase char', `${ID.slice(0, 10)}${ID[10]!.toUpperCase()}${ID.slice(11)}`],
    // 52 chars carry 260 bits; the last 4 must be zero, so the last char of an ID is 'a' or 'q'.
    ['non-canonical trailing bits', `${ID.slice(0, 51)}b`],
    ['non-canonical trailing bits (r)', `${ID.slice(0, 51)}r`],
    ['digit 0', `0${ID.slice(1)}`],
    ['digit 1', `1${ID.slice(1)}`],
    ['digit 8', `8${ID.slice(1)}`],
    ['padding char', `=${ID.slice(1)}`],
    ['non-ASCII', `é${ID.slice(1)}`],
    ['space', ` ${ID.slice(1)}`],
    ['empty', ''],
    ['not a string', 42],
  ];

  it.each(malformed)('rejects an ID that is %s', (_, bad) => {
    expect(isNodeId(bad)).toBe(false);
    expect(codeOf(() => publicKeyFromId(bad as string))).toBe('ERR_BAD_NODE_ID');
    expect(codeOf(() => formatNodeUrl('http://127.0.0.1:7070', bad as string))).toBe('ERR_BAD_NODE_ID');
  });
});

describe('node URLs', () => {
  const [id1, id2] = [VECTORS[0][1], VECTORS[1][1]];
  const roundTrips: [string, string, string][] = [
    ['http://127.0.0.1:7070', id1, `http://127.0.0.1:7070/${id1}`],
    ['http://localhost', id2, `http://localhost/${id2}`],
    ['https://keynode.example.com', id1, `https://keynode.example.com/${id1}`],
    ['https://keynode.example.com:8443', id2, `https://keynode.example.com:8443/${id2}`],
    ['http://[::1]:7070', id1, `http://[::1]:7070/${id1}`],
    ['https://[2001:db8::1]', id2, `https://[2001:db8::1]/${id2}`],
  ];

  it.each(roundTrips)('%s + %s round-trips', (origin, id, url) => {
    expect(formatNodeUrl(origin, id)).toBe(url);
    expect(parseNodeUrl(url)).toEqual({ origin, id, url });
    const again = parseNodeUrl(formatNodeUrl(origin, id));
    expect(formatNodeUrl(again.origin, again.id)).toBe(url);
  });

  it('normalizes default ports, host case and a trailing slash on the origin', () => {
    expect(parseNodeUrl(`http://127.0.0.1:80/${id1}`)).toEqual({ origin: 'http://127.0.0.1', id: id1, url: `http://127.0.0.1/${id1}` });
    expect(parseNodeUrl(`https://Example.COM:443/${id1}`).url).toBe(`https://example.com/${id1}`);
    expect(formatNodeUrl('http://127.0.0.1:7070/', id1)).toBe(`http://127.0.0.1:7070/${id1}`);
  });

  const badUrls: [string, string, ErrorCode][] = [
    ['not a URL', 'not a url', 'ERR_BAD_URL'],
    ['no scheme', `127.0.0.1:7070/${id1}`, 'ERR_BAD_URL'],
    ['ftp:', `ftp://127.0.0.1/${id1}`, 'ERR_BAD_URL'],
    ['file:', `file:///${id1}`, 'ERR_BAD_URL'],
    ['a query', `http://127.0.0.1:7070/${id1}?x=1`, 'ERR_BAD_URL'],
    ['a fragment', `http://127.0.0.1:7070/${id1}#frag`, 'ERR_BAD_URL'],
    ['a user', `http://alice@127.0.0.1:7070/${id1}`, 'ERR_BAD_URL'],
    ['credentials', `http://alice:secret@127.0.0.1:7070/${id1}`, 'ERR_BAD_URL'],
    ['no path', 'http://127.0.0.1:7070', 'ERR_BAD_NODE_ID'],
    ['a trailing slash', `http://127.0.0.1:7070/${id1}/`, 'ERR_BAD_NODE_ID'],
    ['a longer path', `http://127.0.0.1:7070/nodes/${id1}`, 'ERR_BAD_NODE_ID'],
    ['an uppercase ID', `http://127.0.0.1:7070/${id1.toUpperCase()}`, 'ERR_BAD_NODE_ID'],
    ['a short ID', `http://127.0.0.1:7070/${id1.slice(1)}`, 'ERR_BAD_NODE_ID'],
    ['a non-canonical ID', `http://127.0.0.1:7070/${id1.slice(0, 51)}b`, 'ERR_BAD_NODE_ID'],
    ['bad chars in the ID', `http://127.0.0.1:7070/${id1.slice(0, 50)}01`, 'ERR_BAD_NODE_ID'],
  ];

  it.each(badUrls)('parseNodeUrl rejects a URL with %s', (_, url, code) => {
    expect(codeOf(() => parseNodeUrl(url))).toBe(code);
  });

  it('formatNodeUrl rejects an origin that is not an http(s) URL', () => {
    expect(codeOf(() => formatNodeUrl('127.0.0.1:7070', id1))).toBe('ERR_BAD_URL');
    expect(codeOf(() => formatNodeUrl('nonsense', id1))).toBe('ERR_BAD_URL');
    expect(codeOf(() => formatNodeUrl('ftp://127.0.0.1', id1))).toBe('ERR_BAD_URL');
  });
});
