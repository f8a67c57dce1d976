/**
 * A plain HTTP server on 127.0.0.1 that accepts every request and never answers it, until `release()` drops
 * the ones it holds (the caller sees its connection break). It stands for a node URL whose host accepts TCP
 * and then hangs. Closed after the test file, pass or fail.
 */
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
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
  const server = createServer((req, res) => {
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
