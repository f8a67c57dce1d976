/**
 * Protocol v3 by hand, for tests that must send what no client would: raw one-off envelopes, raw hellos and
 * session frames with any counter, MAC or extra, and HTTP proxies that read or rewrite what passes.
 */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, connect as tcpConnect, type AddressInfo, type Socket } from 'node:net';
import { request } from 'undici';
import {
  AUTH_HEADER, checkHelloReply, decode, encode, noSessionMessage, oneOffReplyMessage, replyMacValid, sealFrame, sessionKeys, signEnvelope, signedBy, x25519Pair, x25519Secret,
  type FrameExtra, type NodeId, type SessionKeys,
} from '../../dist/protocol/index.js';
import { defer } from './containers.js';

export interface Signer {
  readonly id: string;
  sign(message: Uint8Array): Uint8Array;
}

export interface Answer {
  status: number;
  body: Uint8Array;
  auth: string | undefined;
  ok: boolean;
  code: string | undefined;
  value: unknown;
}

export async function post(url: string, path: string, body: Uint8Array): Promise<Answer> {
  const res = await request(`${url}${path}`, { method: 'POST', body, headers: { 'content-type': 'application/msgpack' } });
  const bytes = new Uint8Array(await res.body.arrayBuffer());
  const reply = decode(bytes) as { ok: boolean; value?: unknown; error?: { code: string } };
  const auth = res.headers[AUTH_HEADER];
  return { status: res.statusCode, body: bytes, auth: typeof auth === 'string' ? auth : undefined, ok: reply.ok, code: reply.error?.code, value: reply.value };
}

/** A session opened by hand: its ID and keys, and frames built with any counter. */
export interface RawSession {
  sid: Uint8Array;
  keys: SessionKeys;
  containerId: string;
  next: number;
  /** A MACed frame (next counter unless `n` is given). */
  frame(type: string, to: string, body: Record<string, unknown>, options?: { n?: number; extra?: FrameExtra; key?: SessionKeys['request'] }): { bytes: Uint8Array; mac: Uint8Array; n: number };
  /** True when `answer` carries a valid MAC of this session for the request with MAC `mac`. */
  authentic(answer: Answer, mac: Uint8Array): boolean;
}

export async function handshake(url: string, containerId: string, who: Signer, epk?: Uint8Array): Promise<RawSession> {
  const pair = x25519Pair();
  const { bytes, sig } = signEnvelope(who as never, 'hello', containerId as NodeId, { epk: epk ?? pair.publicKey }, Date.now(), containerId as NodeId);
  const answer = await post(url, '/', bytes);
  if (!answer.ok) throw new Error(`hello refused: ${answer.code}`);
  if (!answer.auth || !signedBy(containerId as NodeId, oneOffReplyMessage(sig, answer.body), answer.auth)) throw new Error('hello reply not signed by the container');
  const hello = checkHelloReply(answer.value);
  const keys = sessionKeys(x25519Secret(pair.privateKey, hello.epk), hello.sid, who.id as NodeId, containerId as NodeId, pair.publicKey, hello.epk);
  const session: RawSession = {
    sid: hello.sid,
    keys,
    containerId,
    next: 1,
    frame(type, to, body, options = {}) {
      const n = options.n ?? session.next++;
      const f = sealFrame(options.key ?? keys.request, hello.sid, n, type as never, to as NodeId, encode(body), options.extra);
      return { ...f, n };
    },
    authentic(a, mac) {
      return a.auth !== undefined && replyMacValid(keys.reply, mac, a.body, a.auth);
    },
  };
  return session;
}

/** True when `answer` is the container's signed statement that it had no session for the request with MAC `mac`. */
export function signedNoSession(containerId: string, answer: Answer, mac: Uint8Array): boolean {
  return answer.code === 'ERR_NO_SESSION' && answer.auth !== undefined && signedBy(containerId as NodeId, noSessionMessage(mac, answer.body), answer.auth);
}

/** A free port on 127.0.0.1 (closed again: a container restarted on it keeps its URL). */
export async function freePort(): Promise<number> {
  const server = createTcpServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** A TCP proxy to `target` (host:port) that keeps every byte each way. */
export async function tapProxy(targetPort: number): Promise<{ url: string; up: Buffer[]; down: Buffer[]; close(): Promise<void> }> {
  const up: Buffer[] = [];
  const down: Buffer[] = [];
  const sockets = new Set<Socket>();
  const server = createTcpServer((client) => {
    const upstream = tcpConnect(targetPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    client.on('data', (d) => {
      up.push(Buffer.from(d));
      upstream.write(d);
    });
    upstream.on('data', (d) => {
      down.push(Buffer.from(d));
      client.write(d);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  defer(close);
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, up, down, close };
}

export interface ForwardedReply {
  status: number;
  headers: Record<string, string>;
  body: Uint8Array;
}

/**
 * An HTTP proxy to `target` whose `rewrite` may change each reply to a POST (and see its request) before it
 * goes back; GETs pass untouched unless `rewriteGet` is given. `requests` keeps every POST body that came through.
 */
export async function rewritingProxy(target: string, rewrite: (reply: ForwardedReply, request: Uint8Array, path: string) => ForwardedReply | Promise<ForwardedReply>, rewriteGet?: (reply: ForwardedReply, path: string) => ForwardedReply): Promise<{ url: string; requests: Uint8Array[] }> {
  const requests: Uint8Array[] = [];
  const server = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const body = new Uint8Array(Buffer.concat(chunks));
      if (req.method === 'POST') requests.push(body);
      const up = await request(`${target}${req.url}`, { method: req.method as 'POST', body: req.method === 'POST' ? body : undefined, headers: { 'content-type': 'application/msgpack' } });
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(up.headers)) if (typeof v === 'string' && k !== 'content-length' && k !== 'connection' && k !== 'keep-alive' && k !== 'transfer-encoding') headers[k] = v;
      let reply: ForwardedReply = { status: up.statusCode, headers, body: new Uint8Array(await up.body.arrayBuffer()) };
      if (req.method === 'POST') reply = await rewrite(reply, body, req.url ?? '/');
      else if (rewriteGet) reply = rewriteGet(reply, req.url ?? '/');
      res.writeHead(reply.status, { ...reply.headers, 'content-length': reply.body.length });
      res.end(reply.body);
    })().catch((e: unknown) => {
      res.destroy(e as Error);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  defer(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

/** What a request body is: a session frame, or a one-off envelope of some type. */
export function kindOf(body: Uint8Array): string {
  if (body[0] === 0x98) return 'session';
  try {
    return `one-off ${(decode(body) as { type?: string }).type}`;
  } catch {
    return 'garbage';
  }
}

export { AUTH_HEADER };
