import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Identity, isKeynodeError, type ErrorCode } from 'keynode';
import { ReplayGuard } from '../../dist/container/edge/replay.js';

const SKEW = 1_000;
const BOOT = 1_700_000_000_000;
const alice = Identity.generate().id;
const bob = Identity.generate().id;
const nonce = () => new Uint8Array(randomBytes(16));

function codeOf(f: () => unknown): ErrorCode | undefined {
  try {
    f();
  } catch (e) {
    expect(isKeynodeError(e), `expected a KeynodeError, got ${String(e)}`).toBe(true);
    return (e as { code: ErrorCode }).code;
  }
  return undefined;
}

describe('ReplayGuard: time', () => {
  const guard = new ReplayGuard(SKEW, BOOT);
  const now = BOOT + 10 * SKEW;

  it('accepts ts anywhere inside ±skew, edges included', () => {
    for (const ts of [now, now - SKEW, now + SKEW, now - 1, now + 1]) expect(codeOf(() => guard.checkTime(ts, now)), `ts ${ts - now}`).toBeUndefined();
  });

  it('refuses ts older than the window with ERR_CLOCK_SKEW', () => {
    expect(codeOf(() => guard.checkTime(now - SKEW - 1, now))).toBe('ERR_CLOCK_SKEW');
    expect(codeOf(() => guard.checkTime(now - 100 * SKEW, now))).toBe('ERR_CLOCK_SKEW');
  });

  it('refuses ts further in the future than the window with ERR_CLOCK_SKEW', () => {
    expect(codeOf(() => guard.checkTime(now + SKEW + 1, now))).toBe('ERR_CLOCK_SKEW');
    expect(codeOf(() => guard.checkTime(now + 100 * SKEW, now))).toBe('ERR_CLOCK_SKEW');
  });

  it('refuses ts before the container booted, even inside the window', () => {
    const justBooted = BOOT + SKEW / 2;
    expect(codeOf(() => guard.checkTime(BOOT - 1, justBooted))).toBe('ERR_CLOCK_SKEW');
    expect(codeOf(() => guard.checkTime(BOOT, justBooted))).toBeUndefined();
  });
});

describe('ReplayGuard: nonces', () => {
  it('the same (from, nonce) twice is ERR_REPLAY', () => {
    const guard = new ReplayGuard(SKEW, BOOT);
    const n = nonce();
    expect(codeOf(() => guard.checkNonce(alice, n, BOOT + 1))).toBeUndefined();
    expect(codeOf(() => guard.checkNonce(alice, n, BOOT + 2))).toBe('ERR_REPLAY');
    // A copy of the bytes, not just the same object.
    expect(codeOf(() => guard.checkNonce(alice, new Uint8Array(n), BOOT + 3))).toBe('ERR_REPLAY');
  });

  it('different senders with the same nonce are both accepted; each only once', () => {
    const guard = new ReplayGuard(SKEW, BOOT);
    const n = nonce();
    expect(codeOf(() => guard.checkNonce(alice, n, BOOT + 1))).toBeUndefined();
    expect(codeOf(() => guard.checkNonce(bob, n, BOOT + 1))).toBeUndefined();
    expect(codeOf(() => guard.checkNonce(alice, n, BOOT + 1))).toBe('ERR_REPLAY');
    expect(codeOf(() => guard.checkNonce(bob, n, BOOT + 1))).toBe('ERR_REPLAY');
  });

  it('one sender with different nonces is accepted every time', () => {
    const guard = new ReplayGuard(SKEW, BOOT);
    for (let i = 0; i < 100; i++) expect(codeOf(() => guard.checkNonce(alice, nonce(), BOOT + i))).toBeUndefined();
    expect(guard.size).toBe(100);
  });

  it('compares the bytes of a nonce view, not its backing buffer', () => {
    const guard = new ReplayGuard(SKEW, BOOT);
    const backing = new Uint8Array(randomBytes(64));
    expect(codeOf(() => guard.checkNonce(alice, backing.subarray(0, 16), BOOT))).toBeUndefined();
    expect(codeOf(() => guard.checkNonce(alice, backing.subarray(16, 32), BOOT))).toBeUndefined();
    const moved = new Uint8Array(48);
    moved.set(backing.subarray(0, 16), 32);
    expect(codeOf(() => guard.checkNonce(alice, moved.subarray(32), BOOT))).toBe('ERR_REPLAY');
  });

  it.each([0, 1, SKEW / 2, SKEW - 1])('a nonce first seen %s ms into a window is remembered for two full windows', (offset) => {
    const guard = new ReplayGuard(SKEW, BOOT);
    const start = BOOT + 5 * SKEW + offset;
    // Advance the guard's generations to this point with unrelated traffic.
    for (let t = BOOT; t < start; t += SKEW / 4) guard.checkNonce(bob, nonce(), t);
    const n = nonce();
    guard.checkNonce(alice, n, start);
    // Any ts that was valid with it stays valid for at most 2 × skew after it arrived.
    for (const later of [start + 1, start + SKEW, start + SKEW + 1, start + 2 * SKEW - 1, start + 2 * SKEW]) {
      expect(codeOf(() => guard.checkNonce(alice, n, later)), `${later - start} ms later`).toBe('ERR_REPLAY');
    }
  });

  it('a nonce is remembered across a long quiet spell too (no traffic between)', () => {
    const guard = new ReplayGuard(SKEW, BOOT);
    const n = nonce();
    guard.checkNonce(alice, n, BOOT + SKEW - 1);
    expect(codeOf(() => guard.checkNonce(alice, n, BOOT + 3 * SKEW - 1))).toBe('ERR_REPLAY');
  });

  it('eventually forgets old nonces, so memory is bounded', () => {
    const guard = new ReplayGuard(SKEW, BOOT);
    for (let i = 0; i < 50; i++) guard.checkNonce(alice, nonce(), BOOT);
    expect(guard.size).toBe(50);
    for (let t = BOOT; t <= BOOT + 4 * SKEW; t += SKEW) guard.checkNonce(bob, nonce(), t);
    expect(guard.size).toBeLessThan(50);
  });

  it('when full it refuses new nonces with ERR_OVERLOADED instead of forgetting early', () => {
    const guard = new ReplayGuard(SKEW, BOOT, 3);
    const seen = [nonce(), nonce(), nonce()];
    for (const n of seen) guard.checkNonce(alice, n, BOOT);
    expect(codeOf(() => guard.checkNonce(alice, nonce(), BOOT + 1))).toBe('ERR_OVERLOADED');
    for (const n of seen) expect(codeOf(() => guard.checkNonce(alice, n, BOOT + 2))).toBe('ERR_REPLAY');
  });
});

describe('ReplayGuard: shares', () => {
  it('one sender holds at most its share of the cache; others are not refused', () => {
    const guard = new ReplayGuard(SKEW, BOOT, 100, { perSender: 10, perAddress: 50 });
    for (let i = 0; i < 10; i++) guard.checkNonce(alice, nonce(), BOOT, '10.0.0.1');
    expect(codeOf(() => guard.checkNonce(alice, nonce(), BOOT, '10.0.0.2'))).toBe('ERR_OVERLOADED');
    expect(codeOf(() => guard.checkNonce(bob, nonce(), BOOT, '10.0.0.1'))).toBeUndefined();
  });

  it('a flood from fresh keys on one address stops at that address\'s share; another address is served', () => {
    const guard = new ReplayGuard(SKEW, BOOT, 200, { perSender: 10, perAddress: 50 });
    const refused: (string | undefined)[] = [];
    for (let i = 0; i < 80; i++) refused.push(codeOf(() => guard.checkNonce(Identity.generate().id, nonce(), BOOT, '::ffff:10.0.0.9')));
    expect(refused.filter((c) => c === undefined)).toHaveLength(50);
    expect(refused.filter((c) => c === 'ERR_OVERLOADED')).toHaveLength(30);
    expect(codeOf(() => guard.checkNonce(alice, nonce(), BOOT, '10.0.0.1'))).toBeUndefined();
    // IPv6: one /64 is one address.
    for (let i = 0; i < 50; i++) guard.checkNonce(Identity.generate().id, nonce(), BOOT, `2001:db8:1:2::${i.toString(16)}`);
    expect(codeOf(() => guard.checkNonce(bob, nonce(), BOOT, '2001:db8:1:2:ffff::1'))).toBe('ERR_OVERLOADED');
  });

  it('shares are given back as the window moves', () => {
    const guard = new ReplayGuard(SKEW, BOOT, 100, { perSender: 3, perAddress: 50 });
    for (let i = 0; i < 3; i++) guard.checkNonce(alice, nonce(), BOOT);
    expect(codeOf(() => guard.checkNonce(alice, nonce(), BOOT))).toBe('ERR_OVERLOADED');
    expect(codeOf(() => guard.checkNonce(alice, nonce(), BOOT + 3 * SKEW))).toBeUndefined();
  });
});
