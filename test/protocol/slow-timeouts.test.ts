/**
 * The server closes what stalls: headers that never finish, bodies that never finish, connections that
 * sit idle. With short configured timeouts, each gets its answer (408 in the usual error shape) and closes.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { decode } from '@msgpack/msgpack';
import { afterAll, describe, expect, it } from 'vitest';
import { Lifetime } from 'keynode';
import { startContainer } from '../helpers/containers.js';

const sockets: Socket[] = [];
afterAll(() => {
  for (const s of sockets) s.destroy();
});

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect(port, '127.0.0.1', () => resolve(s));
    s.on('error', reject);
    sockets.push(s);
  });
}

/** Everything the server sends until it closes the socket (bounded). */
function untilClosed(s: Socket, ms: number): Promise<{ closed: boolean; data: Buffer; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => resolve({ closed: false, data: Buffer.concat(chunks), ms: Date.now() - started }), ms);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ closed: true, data: Buffer.concat(chunks), ms: Date.now() - started });
    });
  });
}

describe('server timeouts', () => {
  it('closes slowloris headers, unfinished bodies and idle connections, and keeps serving', async () => {
    const { url, client } = await startContainer({ headersTimeoutMs: 800, requestTimeoutMs: 1500 });
    const port = Number(new URL(url).port);
    const node = await client.spawn({ lifetime: Lifetime.root() });

    const slowloris = await open(port);
    slowloris.write('POST / HTTP/1.1\r\nHost: x\r\nX-A: ');
    const partial = await open(port);
    partial.write(`POST /${node.id} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc`);
    const idle = await open(port);

    const [h, b, i] = await Promise.all([untilClosed(slowloris, 10_000), untilClosed(partial, 10_000), untilClosed(idle, 20_000)]);
    for (const r of [h, b]) {
      expect(r.closed).toBe(true);
      const text = r.data.toString('latin1');
      expect(text).toMatch(/^HTTP\/1\.1 408 /);
      const body = r.data.subarray(text.indexOf('\r\n\r\n') + 4);
      expect(decode(body)).toMatchObject({ ok: false, error: { code: 'ERR_REQUEST_TIMEOUT' } });
    }
    // An idle connection that never sends a request is closed too (without a reply: there is no request).
    expect(i.closed).toBe(true);
    expect(await client.at(node, () => 'serving')).toBe('serving');
  });
});
