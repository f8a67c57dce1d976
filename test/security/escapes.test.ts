/**
 * Runs every published escape in ./escapes.ts as the function of an `at` on a node with the default sandbox,
 * and proves that none of them obtains `process`, `require`, the file system, the network, another node's
 * state or a private key, and that the node, the other node and the container all keep serving.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { isKeynodeError, Lifetime, type KeynodeError, type NodeHandle } from 'keynode';
import { defer, startContainer, type TestContainer } from '../helpers/containers.js';
import { ESCAPES } from './escapes.js';

/** Codes an escape attempt may end with: its own error, or the container stopping it. */
const ALLOWED = ['ERR_USER', 'ERR_BAD_FUNCTION', 'ERR_RESULT', 'ERR_EVAL_TIMEOUT', 'ERR_OUT_OF_MEMORY', 'ERR_WORKER_CRASHED', 'ERR_SANDBOX'];
const SECRET = `victim-secret-${randomBytes(12).toString('hex')}`;

let tc: TestContainer;
let attacker: NodeHandle;
let victim: NodeHandle;
/** Text that must never appear in anything an attacker gets back. */
let forbidden: string[];

beforeAll(async () => {
  tc = await startContainer();
  const { client } = tc;
  // Short timeout: some attempts recurse to the stack limit or spin; none needs long.
  attacker = await client.spawn({ lifetime: Lifetime.root(), sandbox: { timeoutMs: 2000 } });
  victim = await client.spawn({ lifetime: Lifetime.root() });
  await client.at(victim, (ctx, secret: string) => ctx.ref('secret').set(secret), SECRET);
  const keys = [attacker.exportSecretKey()!, victim.exportSecretKey()!].map((k) => Buffer.from(k));
  forbidden = [
    SECRET,
    'root:',
    '/bin/bash',
    'ESCAPED',
    ...keys.flatMap((k) => [k.toString('hex'), k.toString('base64').replace(/=+$/, ''), k.toString('base64url'), Array.from(k).join(',')]),
  ];
});

/** Everything in a value or error as text, bytes as hex, so a leaked key shows whatever its form. */
function text(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x: unknown) => (x instanceof Uint8Array ? Buffer.from(x).toString('hex') : typeof x === 'bigint' ? String(x) : x)) ?? String(v);
  } catch {
    return String(v);
  }
}

describe('published sandbox escapes', () => {
  it('has at least 40 cases, each with a source and a body that parses as a function', () => {
    expect(ESCAPES.length).toBeGreaterThanOrEqual(40);
    expect(new Set(ESCAPES.map((c) => c.name)).size).toBe(ESCAPES.length);
    for (const c of ESCAPES) {
      expect(c.source.length, c.name).toBeGreaterThan(5);
      expect(typeof new Function(`return ${c.body}`)(), c.name).toBe('function');
    }
  });

  it.each(ESCAPES.map((c) => [c.name, c] as const))('blocks: %s', async (_name, c) => {
    const { client } = tc;
    const marker = join(tmpdir(), `keynode-escape-${randomUUID()}`);
    defer(async () => rmSync(marker, { force: true }));
    const env = { marker, victim: victim.url, victimId: victim.id };
    const fn = new Function(`return ${c.body}`)() as (ctx: unknown, e: typeof env, b: Uint8Array) => unknown;
    const outcome = await client.at(attacker, fn, env, new Uint8Array([1, 2, 3])).then(
      (value) => ({ ok: true as const, value }),
      (error: unknown) => ({ ok: false as const, error }),
    );

    if (outcome.ok) {
      const v = outcome.value;
      expect(typeof v === 'string' && v.startsWith('ESCAPED'), `${c.name} returned ${text(v).slice(0, 500)}`).toBe(false);
      const t = text(v);
      for (const f of forbidden) expect(t.includes(f), `${c.name} leaked ${f.slice(0, 40)}: ${t.slice(0, 500)}`).toBe(false);
    } else {
      const e = outcome.error as KeynodeError;
      expect(isKeynodeError(e), `${c.name} threw a non-keynode error: ${String(e)}`).toBe(true);
      expect(ALLOWED, `${c.name} failed with ${e.code}: ${e.message}`).toContain(e.code);
      const t = text({ message: e.message, remote: e.remote });
      for (const f of forbidden) expect(t.includes(f), `${c.name} leaked ${f.slice(0, 40)} in its error: ${t.slice(0, 500)}`).toBe(false);
    }

    // Nothing was written outside the sandbox.
    expect(existsSync(marker), `${c.name} created ${marker}`).toBe(false);
    // The node keeps serving, the other node's state is untouched, the container keeps answering.
    expect(await client.at(attacker, () => 'ok')).toBe('ok');
    expect(await client.at(victim, (ctx) => ctx.ref('secret').get())).toBe(SECRET);
    expect((await client.describe(attacker)).id).toBe(attacker.id);
  });
});

describe('state between evals', () => {
  it('leaves nothing behind in Node-internal objects reachable from the SES globals (TextEncoder, TextDecoder)', async () => {
    const { client } = tc;
    // One eval (one caller) marks every prototype it can reach from errors Node's own classes throw...
    const marked = await client.at(attacker, () => {
      const provoke = [
        () => new TextDecoder('no-such-encoding'),
        () => new TextEncoder().encodeInto('x', 'y' as unknown as Uint8Array),
        () => TextDecoder.prototype.decode.call({}, new Uint8Array(1)),
        () => new TextDecoder().decode('x' as unknown as Uint8Array),
      ];
      const out: string[] = [];
      for (const f of provoke) {
        try {
          f();
        } catch (e) {
          try {
            (Object.getPrototypeOf(e) as Record<string, unknown>).leftBehind = 'by an earlier eval';
            out.push(`marked ${(e as { code?: string }).code}`);
          } catch {
            out.push(`frozen ${(e as { code?: string }).code}`);
          }
        }
      }
      return out;
    });
    // ...and the next eval (perhaps another caller's) must not see the mark.
    const seen = await client.at(attacker, () => {
      const provoke = [
        () => new TextDecoder('no-such-encoding'),
        () => new TextEncoder().encodeInto('x', 'y' as unknown as Uint8Array),
        () => TextDecoder.prototype.decode.call({}, new Uint8Array(1)),
        () => new TextDecoder().decode('x' as unknown as Uint8Array),
      ];
      return provoke.map((f) => {
        try {
          f();
          return 'no error';
        } catch (e) {
          return `${(e as { code?: string }).code}: ${String((e as { leftBehind?: unknown }).leftBehind)}`;
        }
      });
    });
    expect(seen.filter((s) => s.includes('by an earlier eval')), `marked: ${marked.join(', ')}`).toEqual([]);
  });
});
