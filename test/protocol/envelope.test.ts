import { createHash, randomBytes } from 'node:crypto';
import { decode as msgpackDecode, encode as msgpackEncode } from '@msgpack/msgpack';
import * as ed from '@noble/ed25519';
import { describe, expect, it } from 'vitest';
import { Identity, isKeynodeError, type ErrorCode } from 'keynode';
import {
  encode, decode, keyPairFromSeed, openBody, parseEnvelope, sealEnvelope, signBytes, verifyBytes, verifyEnvelope, verifyEnvelopeAsync, PROTOCOL_VERSION,
} from '../../dist/protocol/index.js';

// noble's synchronous API needs a SHA-512; node:crypto's is the independent one at hand.
ed.hashes.sha512 = (message: Uint8Array) => new Uint8Array(createHash('sha512').update(message).digest());

const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const DOMAIN = new TextEncoder().encode('keynode/envelope/1\n');

/** RFC 8032 §7.1, tests 1 and 2: secret key, public key, message, signature. */
const RFC8032 = [
  {
    seed: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
    pub: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    msg: '',
    sig: 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
  },
  {
    seed: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
    pub: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
    msg: '72',
    sig: '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
  },
];

function codeOf(f: () => unknown): ErrorCode {
  try {
    f();
  } catch (e) {
    expect(isKeynodeError(e), `expected a KeynodeError, got ${String(e)}`).toBe(true);
    return (e as { code: ErrorCode }).code;
  }
  throw new Error('expected a KeynodeError, nothing was thrown');
}

/** The envelope's wire map, with `patch` applied, re-encoded. */
function rewrite(wire: Uint8Array, patch: (m: Record<string, unknown>) => void): Uint8Array {
  const map = msgpackDecode(wire) as Record<string, unknown>;
  patch(map);
  return msgpackEncode(map);
}

function flip(bytes: Uint8Array, at = 0): Uint8Array {
  const out = new Uint8Array(bytes);
  out[at] = out[at]! ^ 0x01;
  return out;
}

const alice = Identity.generate();
const bob = Identity.generate();
/** The container an eval envelope is for. */
const carrier = Identity.generate();
const evalBody = () => ({ fn: '(ctx, a) => a + 1', args: encode([41]) });

describe('envelopes: seal, parse, verify', () => {
  it('round-trips every field and verifies', () => {
    const ts = Date.now();
    const wire = sealEnvelope(alice, 'eval', bob.id, evalBody(), ts);
    const env = parseEnvelope(wire);
    expect(env).toMatchObject({ v: PROTOCOL_VERSION, type: 'eval', from: alice.id, to: bob.id, ts });
    expect(env.nonce.length).toBeGreaterThanOrEqual(8);
    expect(env.sig.length).toBe(64);
    expect(verifyEnvelope(env)).toBe(true);
    const opened = openBody(env as typeof env & { type: 'eval' });
    expect(opened.body.fn).toBe('(ctx, a) => a + 1');
    expect(decode(opened.body.args)).toEqual([41]);
  });

  it('two seals of the same message get different nonces', () => {
    const a = parseEnvelope(sealEnvelope(alice, 'eval', bob.id, evalBody(), 1000));
    const b = parseEnvelope(sealEnvelope(alice, 'eval', bob.id, evalBody(), 1000));
    expect(Buffer.from(a.nonce).equals(Buffer.from(b.nonce))).toBe(false);
  });

  it('openBody refuses a body that is not a map', () => {
    const wire = rewrite(sealEnvelope(alice, 'eval', bob.id, evalBody()), (m) => (m.body = msgpackEncode([1, 2])));
    expect(codeOf(() => openBody(parseEnvelope(wire)))).toBe('ERR_BAD_MESSAGE');
  });
});

describe('Ed25519 agrees with @noble/ed25519', () => {
  it.each(RFC8032)('RFC 8032 vector with public key $pub', ({ seed, pub, msg, sig }) => {
    const kp = keyPairFromSeed(hex(seed));
    expect(Buffer.from(kp.publicKey).toString('hex')).toBe(pub);
    expect(Buffer.from(ed.getPublicKey(hex(seed))).toString('hex')).toBe(pub);
    expect(Buffer.from(signBytes(kp.privateKey, hex(msg))).toString('hex')).toBe(sig);
    expect(Buffer.from(ed.sign(hex(msg), hex(seed))).toString('hex')).toBe(sig);
  });

  it('the public key noble derives from a seed is ours', () => {
    for (let i = 0; i < 8; i++) {
      const me = Identity.generate();
      expect(ed.getPublicKey(me.exportSecretKey())).toEqual(me.publicKey);
    }
  });

  it('a node:crypto signature (Identity.sign) verifies with noble', () => {
    const message = new Uint8Array(randomBytes(200));
    const sig = alice.sign(message);
    expect(ed.verify(sig, message, alice.publicKey)).toBe(true);
    expect(ed.verify(sig, flip(message, 7), alice.publicKey)).toBe(false);
    expect(ed.verify(sig, message, bob.publicKey)).toBe(false);
  });

  it('a noble signature verifies with verifyBytes', () => {
    const seed = ed.utils.randomSecretKey();
    const pub = ed.getPublicKey(seed);
    const me = Identity.fromSecretKey(seed);
    const message = new Uint8Array(randomBytes(200));
    const sig = ed.sign(message, seed);
    expect(verifyBytes(pub, me.id, message, sig)).toBe(true);
    expect(verifyBytes(pub, me.id, flip(message, 3), sig)).toBe(false);
    expect(verifyBytes(pub, me.id, message, flip(sig, 40))).toBe(false);
  });

  it('an envelope signature made by node:crypto verifies with noble over the documented signing input', () => {
    const env = parseEnvelope(sealEnvelope(alice, 'eval', bob.id, evalBody(), Date.now(), carrier.id));
    const fields = msgpackEncode([env.v, env.type, env.from, env.to, env.at, env.ts, env.nonce, env.bodyBytes]);
    const input = new Uint8Array([...DOMAIN, ...fields]);
    expect(ed.verify(env.sig, input, alice.publicKey)).toBe(true);
  });

  it('an envelope signed by noble verifies with verifyEnvelope', () => {
    const seed = ed.utils.randomSecretKey();
    const me = Identity.fromSecretKey(seed);
    // sealEnvelope with noble as the signer...
    const viaSeal = parseEnvelope(sealEnvelope({ id: me.id, sign: (m) => ed.sign(m, seed) }, 'eval', bob.id, evalBody()));
    expect(verifyEnvelope(viaSeal)).toBe(true);
    // ...and an envelope built by hand from the spec, never touching sealEnvelope.
    const ts = Date.now();
    const nonce = new Uint8Array(randomBytes(16));
    const body = msgpackEncode({ fn: '() => 1', args: msgpackEncode([]) });
    const sig = ed.sign(new Uint8Array([...DOMAIN, ...msgpackEncode([PROTOCOL_VERSION, 'eval', me.id, bob.id, carrier.id, ts, nonce, body])]), seed);
    const byHand = parseEnvelope(msgpackEncode({ v: PROTOCOL_VERSION, type: 'eval', from: me.id, to: bob.id, at: carrier.id, ts, nonce, body, sig }));
    expect(verifyEnvelope(byHand)).toBe(true);
  });
});

describe('tampering breaks the signature', () => {
  const wire = sealEnvelope(alice, 'eval', bob.id, evalBody());
  const carol = Identity.generate();

  it('the untouched envelope verifies (control)', () => {
    expect(verifyEnvelope(parseEnvelope(wire))).toBe(true);
    expect(verifyEnvelope(parseEnvelope(rewrite(wire, () => {})))).toBe(true);
  });

  const tampers: [string, (m: Record<string, unknown>) => void][] = [
    ['type', (m) => (m.type = 'destroy')],
    ['from', (m) => (m.from = carol.id)],
    ['to', (m) => (m.to = carol.id)],
    ['ts', (m) => (m.ts = (m.ts as number) + 1)],
    ['nonce', (m) => (m.nonce = flip(m.nonce as Uint8Array, 5))],
    ['first body byte', (m) => (m.body = flip(m.body as Uint8Array, 0))],
    ['last body byte', (m) => (m.body = flip(m.body as Uint8Array, (m.body as Uint8Array).length - 1))],
    ['body replaced', (m) => (m.body = encode({ fn: '() => 2', args: encode([]) }))],
    ['first sig byte', (m) => (m.sig = flip(m.sig as Uint8Array, 0))],
    ['last sig byte', (m) => (m.sig = flip(m.sig as Uint8Array, 63))],
  ];

  it.each(tampers)('changing %s makes verifyEnvelope false', (_, patch) => {
    expect(verifyEnvelope(parseEnvelope(rewrite(wire, patch)))).toBe(false);
  });

  it('verifyEnvelopeAsync (the threadpool) agrees with verifyEnvelope on every tamper, all at once', async () => {
    const envs = [parseEnvelope(wire), ...tampers.map(([, patch]) => parseEnvelope(rewrite(wire, patch)))];
    expect(await Promise.all(envs.map(verifyEnvelopeAsync))).toEqual(envs.map(verifyEnvelope));
    expect(await verifyEnvelopeAsync(parseEnvelope(wire))).toBe(true);
  });

  it('every single-bit flip of the body or signature is caught', () => {
    const env = parseEnvelope(wire);
    for (let i = 0; i < env.bodyBytes.length; i++) expect(verifyEnvelope({ ...env, bodyBytes: flip(env.bodyBytes, i) })).toBe(false);
    for (let i = 0; i < 64; i++) expect(verifyEnvelope({ ...env, sig: flip(env.sig, i) })).toBe(false);
  });

  it('a signature by someone else under the sender’s name is refused', () => {
    const forged = rewrite(sealEnvelope(carol, 'eval', bob.id, evalBody()), (m) => (m.from = alice.id));
    expect(verifyEnvelope(parseEnvelope(forged))).toBe(false);
  });
});

describe('parseEnvelope rejects malformed envelopes', () => {
  const wire = sealEnvelope(alice, 'eval', bob.id, evalBody());

  const badFields: [string, (m: Record<string, unknown>) => void][] = [
    ['v as a string', (m) => (m.v = '1')],
    ['v missing', (m) => delete m.v],
    ['type as a number', (m) => (m.type = 1)],
    ['type unknown', (m) => (m.type = 'launchMissiles')],
    ['type missing', (m) => delete m.type],
    ['from not an ID', (m) => (m.from = 'alice')],
    ['from as bytes', (m) => (m.from = alice.publicKey)],
    ['from uppercase', (m) => (m.from = alice.id.toUpperCase())],
    ['to not an ID', (m) => (m.to = 42)],
    ['to missing', (m) => delete m.to],
    ['ts as a string', (m) => (m.ts = String(m.ts))],
    ['ts negative', (m) => (m.ts = -5)],
    ['ts zero', (m) => (m.ts = 0)],
    ['ts fractional', (m) => (m.ts = 1.5)],
    ['ts past the safe integers', (m) => (m.ts = 2 ** 60)],
    ['nonce as a string', (m) => (m.nonce = 'abcdefghijklmnop')],
    ['nonce too short', (m) => (m.nonce = new Uint8Array(4))],
    ['nonce too long', (m) => (m.nonce = new Uint8Array(33))],
    ['body as a map', (m) => (m.body = { fn: '() => 1' })],
    ['body missing', (m) => delete m.body],
    ['sig as a string', (m) => (m.sig = 'x'.repeat(64))],
    ['sig too short', (m) => (m.sig = (m.sig as Uint8Array).subarray(0, 63))],
    ['sig too long', (m) => (m.sig = new Uint8Array(65))],
    ['sig missing', (m) => delete m.sig],
  ];

  it.each(badFields)('%s → ERR_BAD_MESSAGE', (_, patch) => {
    expect(codeOf(() => parseEnvelope(rewrite(wire, patch)))).toBe('ERR_BAD_MESSAGE');
  });

  it.each([0, 1, 2, 4, 99, -1])('v: %s → ERR_BAD_VERSION', (v) => {
    expect(codeOf(() => parseEnvelope(rewrite(wire, (m) => (m.v = v))))).toBe('ERR_BAD_VERSION');
  });

  it('a v2 envelope (the previous protocol) is refused with a message naming both versions', () => {
    let message = '';
    try {
      parseEnvelope(rewrite(wire, (m) => (m.v = 2)));
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/version 2 .*speaks 3/);
  });

  const notEnvelopes: [string, Uint8Array][] = [
    ['empty bytes', new Uint8Array(0)],
    ['garbage', new Uint8Array([0xc1, 0xff, 0x00, 0x13])],
    ['truncated', wire.subarray(0, wire.length - 10)],
    ['trailing bytes', new Uint8Array([...wire, 0x00])],
    ['an array', msgpackEncode([1, 'eval', alice.id, bob.id])],
    ['a number', msgpackEncode(7)],
    ['nil', msgpackEncode(null)],
    ['a string', msgpackEncode('hello')],
  ];

  it.each(notEnvelopes)('%s → ERR_BAD_MESSAGE', (_, bytes) => {
    expect(codeOf(() => parseEnvelope(bytes))).toBe('ERR_BAD_MESSAGE');
  });
});
