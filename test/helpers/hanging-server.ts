/**
 * A plain HTTP server on 127.0.0.1 that accepts every message and never answers it, until `release()` drops
 * the ones it holds (the caller sees its connection break). It stands for a node URL whose host accepts TCP
 * and then hangs: it tells its (made-up) container ID at /.well-known/keynode, as a container would, so
 * callers get as far as sending their message. Closed after the test file, pass or fail.
 */
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Identity } from 'keynode';
import { PROTOCOL_VERSION } from '../../dist/protocol/index.js';
import { defer } from './containers.js';

export interface HangingServer {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  /** Requests it holds now (open and not answered). */
  readonly open: number;
  /** Requests it has received in all. */
  readonly received: number;
  /** The most requests it has held at once. */
  readonly maxOpen: number;
  /** Breaks every held request's connection; later ones are held again. */
  release(): void;
  close(): Promise<void>;
}

export async function hangingServer(): Promise<HangingServer> {
  const held = new Set<ServerResponse>();
  let received = 0;
  let maxOpen = 0;
  const containerId = Identity.generate().id;
  const server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/.well-known/keynode') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ containerId, url: '', time: Date.now(), v: PROTOCOL_VERSION }));
      return;
    }
    received++;
    req.resume();
    held.add(res);
    maxOpen = Math.max(maxOpen, held.size);
    res.on('close', () => held.delete(res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const close = async () => {
    for (const res of held) res.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  defer(close);
  return {
    url: `http://127.0.0.1:${port}`,
    get open() {
      return held.size;
    },
    get received() {
      return received;
    },
    get maxOpen() {
      return maxOpen;
    },
    release() {
      for (const res of held) res.destroy();
    },
    close,
  };
}
