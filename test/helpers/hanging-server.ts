/**
 * A plain HTTP server on 127.0.0.1 that accepts every message and never answers it, until `release()` drops
 * the ones it holds (the caller sees its connection break). It stands for a node URL whose host accepts TCP
 * and then hangs: it tells its (made-up) container ID and signed clock at /.well-known/keynode and answers
 * session hellos, as a container would, so callers get as far as sending their message. Closed after the
 * test file, pass or fail.
 */
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Identity } from 'keynode';
import {
  AUTH_HEADER, b64url, encode, oneOffReplyMessage, openBody, parseEnvelope, PROTOCOL_VERSION, SESSION_WINDOW, timeMessage, x25519Pair,
} from '../../dist/protocol/index.js';
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
  const me = Identity.generate();
  const containerId = me.id;
  const boot = Date.now();
  const server = createServer((req, res) => {
    if (req.method === 'GET' && req.url?.startsWith('/.well-known/keynode')) {
      const time = Date.now();
      const info: Record<string, unknown> = { containerId, url: '', time, boot, skewMs: 30_000, v: PROTOCOL_VERSION };
      const challenge = new URL(req.url, 'http://x').searchParams.get('challenge');
      if (challenge) info.proof = b64url(me.sign(timeMessage(containerId, new Uint8Array(Buffer.from(challenge, 'base64url')), time, boot, 30_000)));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(info));
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      // A hello is answered (a session the server never uses); every other message is held.
      const bytes = new Uint8Array(Buffer.concat(chunks));
      if (req.url === '/' && bytes[0] !== 0x98) {
        try {
          const raw = parseEnvelope(bytes);
          if (raw.type === 'hello') {
            openBody(raw);
            const value = { sid: new Uint8Array(16).fill(1), epk: x25519Pair().publicKey, time: Date.now(), ttlMs: 3_600_000, window: SESSION_WINDOW, boxKey: new Uint8Array(32).fill(9), maxBodyBytes: 16 * 1024 * 1024 };
            const body = encode({ ok: true, value });
            res.writeHead(200, { 'content-type': 'application/msgpack', [AUTH_HEADER]: b64url(me.sign(oneOffReplyMessage(raw.sig, body))) }).end(body);
            return;
          }
        } catch {
          // not a hello: held like the rest
        }
      }
      received++;
      held.add(res);
      maxOpen = Math.max(maxOpen, held.size);
    });
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
