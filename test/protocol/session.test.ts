/**
 * The pieces of protocol v3 on their own: the counter window, session frames from hostile bytes, keys that
 * bind both parties, the per-address limiter.
 */
import { describe, expect, it } from 'vitest';
import { Identity, isKeynodeError, type ErrorCode } from 'keynode';
import { encode, parseFrame, sealFrame, sessionKeys, frameMacValid, x25519Pair, x25519Secret, type NodeId } from '../../dist/protocol/index.js';
import { CounterWindow } from '../../dist/container/edge/sessions.js';
import { AddressLimiter, addressKey } from '../../dist/container/edge/rate-limit.js';

function codeOf(f: () => unknown): ErrorCode | undefined {
  try {
    f();
  } catch (e) {
    expect(isKeynodeError(e), String(e)).toBe(true);
    return (e as { code: ErrorCode }).code;
  }
  return undefined;
}

const alice = Identity.generate().id as NodeId;
const container = Identity.generate().id as NodeId;

function keys(principal = alice, at = container) {
  const c = x25519Pair();
  const s = x25519Pair();
  const sid = new Uint8Array(16).fill(9);
  return { client: sessionKeys(x25519Secret(c.privateKey, s.publicKey), sid, principal, at, c.publicKey, s.publicKey), server: sessionKeys(x25519Secret(s.privateKey, c.publicKey), sid, principal, at, c.publicKey, s.publicKey), sid, c, s };
}

describe('CounterWindow', () => {
  it('accepts each counter once, in any order inside the window', () => {
    const w = new CounterWindow(64);
    const order = [3, 1, 2, 10, 7, 64, 5];
    expect(order.map((n) => w.accept(n))).toEqual(order.map(() => true));
    expect(order.map((n) => w.accept(n))).toEqual(order.map(() => false));
  });

  it('refuses what fell behind the window, and forgets nothing inside it after a jump', () => {
    const w = new CounterWindow(64);
    expect(w.accept(100)).toBe(true);
    expect(w.accept(36)).toBe(false); // 100 - 64
    expect(w.accept(37)).toBe(true);
    expect(w.accept(99)).toBe(true);
    expect(w.accept(99)).toBe(false);
    expect(w.accept(1_000_000)).toBe(true);
    expect(w.accept(100)).toBe(false);
    expect(w.accept(999_999)).toBe(true);
    // Bits of counters below the old high were cleared when the window moved past them.
    expect(w.accept(1_000_000 - 63)).toBe(true);
  });
});

describe('session frames', () => {
  it('a MAC made under the client keys verifies under the container keys; other keys do not', () => {
    const k = keys();
    const f = sealFrame(k.client.request, k.sid, 1, 'eval', alice, encode({ fn: '() => 1', args: encode([]) }));
    expect(frameMacValid(k.server.request, parseFrame(f.bytes))).toBe(true);
    expect(frameMacValid(k.server.reply, parseFrame(f.bytes))).toBe(false);
    // The same X25519 keys with another principal or another container named: different keys.
    const c = x25519Pair();
    const s = x25519Pair();
    const shared = x25519Secret(c.privateKey, s.publicKey);
    const mine = sessionKeys(shared, k.sid, alice, container, c.publicKey, s.publicKey);
    for (const other of [sessionKeys(shared, k.sid, Identity.generate().id as NodeId, container, c.publicKey, s.publicKey), sessionKeys(shared, k.sid, alice, Identity.generate().id as NodeId, c.publicKey, s.publicKey)]) {
      const g = sealFrame(other.request, k.sid, 1, 'stats', container, encode({}));
      expect(frameMacValid(mine.request, parseFrame(g.bytes))).toBe(false);
    }
  });

  it('hostile bytes are ERR_BAD_MESSAGE (or ERR_BAD_VERSION), never another exception', () => {
    const k = keys();
    const good = sealFrame(k.client.request, k.sid, 7, 'eval', alice, encode({})).bytes;
    const cases: Uint8Array[] = [new Uint8Array(0), Uint8Array.of(0x98), good.subarray(0, good.length - 1), good.subarray(0, 40), Uint8Array.of(...good, 0)];
    for (let i = 1; i < good.length; i += 3) {
      const b = good.slice();
      b[i] ^= 0xff;
      cases.push(b);
    }
    for (const b of cases) {
      const code = codeOf(() => parseFrame(b));
      if (code !== undefined) expect(['ERR_BAD_MESSAGE', 'ERR_BAD_VERSION']).toContain(code);
    }
    expect(codeOf(() => parseFrame(sealFrame(k.client.request, k.sid, 1, 'hello' as never, alice, encode({})).bytes))).toBe('ERR_BAD_MESSAGE');
  });
});

describe('AddressLimiter', () => {
  it('a burst per address, refilled at the rate; other addresses have their own', () => {
    const l = new AddressLimiter(10, 3);
    const t = 1_000_000;
    expect([1, 2, 3, 4].map(() => l.take('10.0.0.1', t))).toEqual([true, true, true, false]);
    expect(l.take('10.0.0.2', t)).toBe(true);
    expect(l.take('10.0.0.1', t + 100)).toBe(true); // one token back after 100 ms at 10/s
    expect(l.take('10.0.0.1', t + 100)).toBe(false);
  });

  it('IPv4-mapped addresses are IPv4; IPv6 counts by /64', () => {
    expect(addressKey('::ffff:127.0.0.1')).toBe('127.0.0.1');
    expect(addressKey('2001:db8::1')).toBe(addressKey('2001:db8:0:0:ffff::2'));
    expect(addressKey('2001:db8:0:1::1')).not.toBe(addressKey('2001:db8::1'));
  });
});
