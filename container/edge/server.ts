/**
 * @module container/server
 * The HTTP edge (node:http). POST / carries container messages, POST /<nodeId> node messages; both are
 * signed MessagePack envelopes. Health at /livez and /readyz, Prometheus at /metrics, and the container's
 * identity and clock at /.well-known/keynode. Every error leaves here as `{ ok: false, error: { code } }`
 * with the status its code maps to; this is the only place that mapping happens.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Logger } from 'pino';
import {
  AUTH_HEADER, b64url, decodeBodyMap, encode, isNodeId, isSessionFrame, KeynodeError, oneOffReplyMessage, openBody, parseEnvelope, PROTOCOL_VERSION, timeMessage, toKeynodeError, verifyEnvelope, verifyEnvelopeAsync,
  type Envelope, type NodeId, type Reply,
} from '../../protocol/index.js';
import type { Metrics } from './metrics.js';
import type { Operations } from './operations.js';
import type { ReplayGuard } from './replay.js';
import type { ReplyAuth, SessionEdge } from './sessions.js';

export interface ServerDeps {
  /** Bytes of bodies held at once across all requests. */
  maxInflightBytes: number;
  operations: Operations;
  replay: ReplayGuard;
  metrics: Metrics;
  logger: Logger;
  maxBodyBytes: number;
  info(): Record<string, unknown>;
  /** This container's ID: an envelope signed for another container is refused before its signature is checked. */
  containerId: NodeId;
  ready(): boolean;
  /** True when the node's queue is full: such a message is refused before any decoding or crypto. */
  overloaded(id: NodeId): boolean;
  sessions: SessionEdge;
  /** Signs as the container: replies to one-off messages, and its clock for whoever asks with a challenge. */
  sign(message: Uint8Array): Uint8Array;
  /** When this container started, and the skew window of one-off messages (stated in the signed clock). */
  bootedAt: number;
  skewMs: number;
  /** The operator's dashboard (edge/dashboard/), which owns every path under /dashboard; absent when turned off. */
  dashboard?: (req: IncomingMessage, res: ServerResponse) => void;
}

const MSGPACK = 'application/msgpack';

/** `auth` authenticates the reply's bytes to its sender, once the edge knows who that is (see sessions.ts). */
function send(res: ServerResponse, status: number, reply: Reply, auth?: ReplyAuth): void {
  if (res.headersSent || res.destroyed) return;
  const body = encode(reply);
  const headers: Record<string, string | number> = { 'content-type': MSGPACK, 'content-length': body.length };
  if (auth) headers[AUTH_HEADER] = auth(body);
  res.writeHead(status, headers);
  res.end(body);
}

function sendError(res: ServerResponse, err: KeynodeError, auth?: ReplyAuth): void {
  send(res, err.status, { ok: false, error: err.toWire() }, auth);
}

/**
 * Bytes of request bodies held right now, across all connections: bodies are read whole before their
 * signature can be checked, so strangers must not be able to make the container hold unbounded amounts.
 */
class BodyBudget {
  held = 0;
  constructor(readonly max: number) {}
}

/** Reads the body, refusing early (by Content-Length) or as soon as it passes the limit or the budget. */
function readBody(req: IncomingMessage, limit: number, budget: BodyBudget): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      reject(new KeynodeError('ERR_TOO_LARGE', `request body of ${declared} bytes exceeds the ${limit}-byte limit`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const give = () => {
      budget.held -= size;
      size = 0;
    };
    const fail = (e: KeynodeError) => {
      give();
      reject(e);
      req.removeAllListeners('data');
      req.resume();
    };
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      budget.held += chunk.length;
      if (size > limit) return fail(new KeynodeError('ERR_TOO_LARGE', `request body exceeds the ${limit}-byte limit`));
      if (budget.held > budget.max) return fail(new KeynodeError('ERR_OVERLOADED', 'the container is holding too many request bodies; retry shortly'));
      chunks.push(chunk);
    });
    req.on('end', () => {
      const body = Buffer.concat(chunks, size);
      give();
      resolve(body);
    });
    req.on('error', (e) => {
      give();
      reject(e);
    });
    req.on('close', give);
    req.on('aborted', () => reject(new KeynodeError('ERR_BAD_MESSAGE', 'request aborted')));
  });
}

/** A request Node's HTTP parser refused (bad framing, huge headers, too slow): answered in the usual shape. */
function clientErrorReply(err: NodeJS.ErrnoException): KeynodeError {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return new KeynodeError('ERR_HEADERS_TOO_LARGE', 'request headers are too large');
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new KeynodeError('ERR_REQUEST_TIMEOUT', 'the request did not arrive in time');
    default:
      return new KeynodeError('ERR_BAD_MESSAGE', `malformed HTTP request${err.code ? ` (${err.code})` : ''}`);
  }
}

export interface HttpTimeouts {
  requestTimeoutMs: number;
  headersTimeoutMs: number;
}

/** The server, without its handler: it is attached once the listening port (and so node URLs) is known. HTTPS with `tls`. */
export function createHttpServer(timeouts: HttpTimeouts & { maxConnections: number }, maxBodyBytes: number, tls?: { cert: Buffer; key: Buffer }): Server {
  const options = {
    requestTimeout: timeouts.requestTimeoutMs,
    headersTimeout: timeouts.headersTimeoutMs,
    keepAliveTimeout: 5_000,
    // Node checks the two timeouts above on this interval; keep it a fraction of the shorter one.
    connectionsCheckingInterval: Math.max(100, Math.min(30_000, Math.floor(Math.min(timeouts.requestTimeoutMs, timeouts.headersTimeoutMs) / 4))),
  };
  // An https.Server is an http.Server to everything below (same events, same request handling).
  const server: Server = tls ? (createHttpsServer({ ...options, ...tls }) as unknown as Server) : createServer(options);
  server.maxConnections = timeouts.maxConnections;
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable || err.code === 'ECONNRESET') return void socket.destroy();
    const e = clientErrorReply(err);
    const body = Buffer.from(encode({ ok: false, error: e.toWire() } satisfies Reply));
    const reason = e.status === 431 ? 'Request Header Fields Too Large' : e.status === 408 ? 'Request Timeout' : 'Bad Request';
    socket.write(`HTTP/1.1 ${e.status} ${reason}\r\ncontent-type: ${MSGPACK}\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n`);
    socket.end(body);
  });
  // "Expect: 100-continue" with a body we would refuse: refuse before the client sends it.
  server.on('checkContinue', (req, res) => {
    if (Number(req.headers['content-length']) > maxBodyBytes) {
      res.shouldKeepAlive = false;
      return sendError(res, new KeynodeError('ERR_TOO_LARGE', `request body of ${req.headers['content-length']} bytes exceeds the ${maxBodyBytes}-byte limit`));
    }
    res.writeContinue();
    server.emit('request', req, res);
  });
  return server;
}

export function requestHandler(deps: ServerDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const { operations, replay, metrics, logger } = deps;
  const bodies = new BodyBudget(deps.maxInflightBytes);
  /** Requests read and not yet answered. */
  let inFlight = 0;

  async function handleMessage(req: IncomingMessage, res: ServerResponse, pathId: NodeId | undefined): Promise<void> {
    const started = performance.now();
    let type = 'unknown';
    let counted = false;
    // Set once the sender is authenticated (or the container has something to sign): every reply after that
    // point carries an authenticator; refusals before it cannot, and clients do not trust them.
    let auth: ReplyAuth | undefined;
    try {
      const bytes = await readBody(req, deps.maxBodyBytes, bodies);
      inFlight++;
      counted = true;
      // Copy into a plain Uint8Array: decoded byte strings must not be views on a pooled Buffer.
      const wire = new Uint8Array(bytes);
      let value: unknown;
      if (isSessionFrame(wire)) {
        // A MAC costs ~2 µs: checked before the node's queue, so that refusal is authenticated too.
        const { env, frame } = deps.sessions.open(wire, req.socket.remoteAddress, (a) => (auth = a));
        type = env.type;
        if (pathId !== undefined && deps.overloaded(pathId)) throw new KeynodeError('ERR_OVERLOADED', `node ${pathId} has a full queue; retry later`);
        env.body = decodeBodyMap(frame.bodyBytes);
        value = await operations.handle(env, pathId);
      } else {
        // A flood at one node must not cost the container a signature check per message it will refuse anyway.
        if (pathId !== undefined && deps.overloaded(pathId)) throw new KeynodeError('ERR_OVERLOADED', `node ${pathId} has a full queue; retry later`);
        const raw = parseEnvelope(wire);
        type = raw.type;
        if (raw.at !== deps.containerId) throw new KeynodeError('ERR_ACCESS_DENIED', `this message was signed for container ${raw.at}, not for this one (${deps.containerId})`);
        replay.checkTime(raw.ts);
        if (raw.type === 'hello') {
          if (pathId !== undefined) throw new KeynodeError('ERR_BAD_MESSAGE', 'a hello goes to the container (POST /), not to a node');
          deps.sessions.admitHello(req.socket.remoteAddress);
        }
        // A request alone is verified inline (lowest latency); with others in hand, on the threadpool, so
        // both cores verify and the loop keeps routing and replying (~20 µs of it per verify, not ~90).
        if (!(inFlight > 1 ? await verifyEnvelopeAsync(raw) : verifyEnvelope(raw))) throw new KeynodeError('ERR_BAD_SIGNATURE', `the signature does not verify against the sender ${raw.from}`);
        auth = (body) => b64url(deps.sign(oneOffReplyMessage(raw.sig, body)));
        replay.checkNonce(raw.from, raw.nonce, Date.now(), req.socket.remoteAddress);
        const env = openBody(raw);
        value = env.type === 'hello' ? deps.sessions.hello(env as Envelope<'hello'>) : await operations.handle(env, pathId);
      }
      send(res, 200, { ok: true, value }, auth);
      metrics.request(type, 'ok', performance.now() - started);
    } catch (e) {
      const err = toKeynodeError(e);
      if (err.code === 'ERR_INTERNAL') logger.error({ err: e }, 'internal error');
      metrics.request(type, err.code, performance.now() - started);
      if (err.code === 'ERR_TOO_LARGE' && !req.complete) res.setHeader('connection', 'close');
      sendError(res, err, auth);
    } finally {
      if (counted) inFlight--;
    }
  }

  /** Who this container is, and (to a `challenge`) its clock, signed: clients learn the time from nothing else. */
  function wellKnown(req: IncomingMessage, res: ServerResponse): void {
    const now = Date.now();
    const info: Record<string, unknown> = { ...deps.info(), v: PROTOCOL_VERSION, time: now, boot: deps.bootedAt, skewMs: deps.skewMs };
    const q = (req.url ?? '').indexOf('?challenge=');
    if (q >= 0) {
      const challenge = Buffer.from((req.url ?? '').slice(q + 11, q + 11 + 64), 'base64url');
      if (challenge.length < 8 || challenge.length > 32) return sendError(res, new KeynodeError('ERR_BAD_MESSAGE', 'a challenge is 8 to 32 bytes, base64url'));
      try {
        deps.sessions.admitHello(req.socket.remoteAddress);
      } catch (e) {
        return sendError(res, e as KeynodeError);
      }
      info.proof = b64url(deps.sign(timeMessage(deps.containerId, new Uint8Array(challenge), now, deps.bootedAt, deps.skewMs)));
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(info));
  }

  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (deps.dashboard && (path === '/dashboard' || path.startsWith('/dashboard/'))) return deps.dashboard(req, res);
    if (req.method === 'GET' || req.method === 'HEAD') {
      if (path === '/livez') return void res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      if (path === '/readyz') return void res.writeHead(deps.ready() ? 200 : 503, { 'content-type': 'text/plain' }).end(deps.ready() ? 'ready\n' : 'not ready\n');
      if (path === '/metrics') {
        void metrics.render().then((text) => res.writeHead(200, { 'content-type': metrics.contentType }).end(text));
        return;
      }
      if (path === '/.well-known/keynode') return wellKnown(req, res);
    }
    if (req.method === 'POST') {
      if (path === '/') return void handleMessage(req, res, undefined);
      const id = path.slice(1);
      if (isNodeId(id)) return void handleMessage(req, res, id);
      req.resume();
      return sendError(res, new KeynodeError('ERR_BAD_NODE_ID', `POST / for the container or /<nodeId> for a node; ${JSON.stringify(path.slice(0, 80))} is neither`));
    }
    req.resume();
    if (path === '/' || isNodeId(path.slice(1))) return sendError(res, new KeynodeError('ERR_METHOD_NOT_ALLOWED', `use POST with a signed MessagePack envelope`));
    sendError(res, new KeynodeError('ERR_NOT_FOUND', `no route ${req.method} ${path.slice(0, 80)}`));
  };
}
