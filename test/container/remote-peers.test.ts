/**
 * What a peer container's HTTP reply can do to the container calling it (container/edge/remote.ts): a reply
 * past the size bound ends with ERR_TOO_LARGE (declared or chunked), one that never comes ends by the call's
 * deadline, and an honest one comes back whole with its authenticator.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { RemotePeers } from '../../dist/container/edge/remote.js';
import { AUTH_HEADER } from '../../dist/protocol/index.js';
import { defer } from '../helpers/containers.js';

async function peer(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => handler(req, res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  defer(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('replies from peer containers', () => {
  it('bounds their size and time, and returns an honest one whole', async () => {
    const remote = new RemotePeers(1024, { total: 4, perTenant: 4, queue: 16 });
    defer(() => remote.close());
    const big = Buffer.alloc(4096, 7);
    const origin = await peer((req, res) => {
      if (req.url === '/declared') return void res.writeHead(200, { 'content-length': big.length }).end(big);
      if (req.url === '/chunked') {
        res.writeHead(200);
        for (let i = 0; i < 8; i++) res.write(big.subarray(0, 512));
        return void res.end();
      }
      if (req.url === '/silent') return; // never answers
      res.writeHead(200, { 'content-length': 3, [AUTH_HEADER]: 'mac' }).end(Buffer.from([1, 2, 3]));
    });
    const post = (path: string, ms = 10_000) => remote.post(origin + path, () => new Uint8Array([0x90]), Date.now() + ms, 'tenant');
    const codeOf = (p: Promise<unknown>) => p.then(() => 'returned', (e: { code?: string }) => e.code);

    expect(await codeOf(post('/declared'))).toBe('ERR_TOO_LARGE');
    expect(await codeOf(post('/chunked'))).toBe('ERR_TOO_LARGE');
    const t0 = Date.now();
    expect(await codeOf(post('/silent', 300))).toBe('ERR_UNAVAILABLE');
    expect(Date.now() - t0).toBeLessThan(5_000);
    const ok = await post('/honest');
    expect(ok).toEqual({ status: 200, body: new Uint8Array([1, 2, 3]), auth: 'mac' });
  });
});
