/**
 * @module container/edge/dashboard/dashboard
 * The operator's live status page under /dashboard/. The page itself (HTML, script, styles, uPlot) is
 * static and holds no data; every figure comes from /dashboard/api/*, which answers 401 without a session
 * (sessions.ts). It shows what the admin CLI shows the operator (list, describe, logs, stats, budgets) and
 * nothing else: no node's state, and no code (capability and lease-check sources are left out). It changes
 * one thing: a node can be destroyed, after a confirmation, as `keynode destroy` would.
 */
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { Logger } from 'pino';
import { decode, isNodeId, KeynodeError, toKeynodeError, type NodeId, type NodeInfo } from '../../../protocol/index.js';
import { successor, type NodeRecord } from '../../../store/index.js';
import { Live, type LiveDeps } from './live.js';
import { PAGE_CSS, PAGE_HTML } from './page-shell.js';
import { Sessions } from './sessions.js';

export interface DashboardDeps extends LiveDeps {
  containerId: NodeId;
  /** The container's public URL: cookies are marked Secure when it is https. */
  url: string;
  logger: Logger;
}

const require = createRequire(import.meta.url);
const STATIC: Record<string, { type: string; path: () => string }> = {
  '/dashboard/app.js': { type: 'text/javascript; charset=utf-8', path: () => new URL('./page/app.js', import.meta.url).pathname },
  '/dashboard/uplot.js': { type: 'text/javascript; charset=utf-8', path: () => require.resolve('uplot/dist/uPlot.iife.min.js') },
  '/dashboard/uplot.css': { type: 'text/css; charset=utf-8', path: () => require.resolve('uplot/dist/uPlot.min.css') },
};

const SECURITY_HEADERS = {
  // The page runs only its own files, and no other site may frame it (the destroy button).
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};
const ROWS_MAX = 500;
const MAX_STREAMS = 64;
const MAX_JSON_BODY = 4096;

export class Dashboard {
  readonly #deps: DashboardDeps;
  readonly #sessions: Sessions;
  readonly #secure: boolean;
  readonly live: Live;
  readonly #files = new Map<string, Buffer>();
  readonly #streams = new Set<ServerResponse>();

  constructor(deps: DashboardDeps) {
    this.#deps = deps;
    this.#sessions = new Sessions(deps.operator, deps.containerId);
    this.#secure = deps.url.startsWith('https:');
    this.live = new Live(deps);
  }

  /** Every request whose path is /dashboard or under it. */
  handle(req: IncomingMessage, res: ServerResponse): void {
    this.#route(req, res).catch((e: unknown) => {
      const err = toKeynodeError(e);
      if (err.code === 'ERR_INTERNAL') this.#deps.logger.error({ err: e }, 'dashboard: internal error');
      if (!res.headersSent) sendJson(res, err.status, { error: err.toWire() });
      else res.end();
    });
  }

  close(): void {
    this.live.close();
    for (const res of this.#streams) res.end();
  }

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Paths only: a query string is never logged or needed (the link token travels in the URL fragment).
    const path = (req.url ?? '/').split('?')[0]!;
    const method = req.method ?? 'GET';
    if (path === '/dashboard') return void res.writeHead(308, { location: '/dashboard/', ...SECURITY_HEADERS }).end();
    if (method === 'GET' && path === '/dashboard/') return void res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', ...SECURITY_HEADERS }).end(PAGE_HTML);
    if (method === 'GET' && path === '/dashboard/style.css') return void res.writeHead(200, { 'content-type': 'text/css; charset=utf-8', ...SECURITY_HEADERS }).end(PAGE_CSS);
    const file = STATIC[path];
    if (method === 'GET' && file) {
      let body = this.#files.get(path);
      if (!body) this.#files.set(path, (body = await readFile(file.path())));
      return void res.writeHead(200, { 'content-type': file.type, ...SECURITY_HEADERS }).end(body);
    }
    if (path === '/dashboard/session') {
      if (method !== 'POST') throw new KeynodeError('ERR_METHOD_NOT_ALLOWED', 'POST the link token here');
      this.#sameOrigin(req);
      const { token } = (await readJson(req)) as { token?: unknown };
      const id = this.#sessions.open(token);
      this.#deps.logger.info('dashboard: a session was opened with an operator link');
      return void res.writeHead(204, { 'set-cookie': this.#sessions.cookie(id, this.#secure), ...SECURITY_HEADERS }).end();
    }
    if (!path.startsWith('/dashboard/api/')) throw new KeynodeError('ERR_NOT_FOUND', `no dashboard route ${path.slice(0, 80)}`);

    const session = this.#sessions.check(req.headers.cookie);
    if (!session) {
      req.resume();
      throw new KeynodeError('ERR_UNAUTHENTICATED', 'no dashboard session: open the page with a link from `keynode dashboard`');
    }
    const rest = path.slice('/dashboard/api/'.length).split('/');
    if (method === 'POST') {
      this.#sameOrigin(req);
      if (rest[0] === 'logout' && rest.length === 1) {
        this.#sessions.end(session);
        return void res.writeHead(204, { 'set-cookie': Sessions.clearCookie(this.#secure), ...SECURITY_HEADERS }).end();
      }
      if (rest[0] === 'nodes' && rest[2] === 'destroy' && rest.length === 3) return this.#destroy(req, res, nodeParam(rest[1]));
      throw new KeynodeError('ERR_NOT_FOUND', `no dashboard route POST ${path.slice(0, 80)}`);
    }
    if (method !== 'GET') throw new KeynodeError('ERR_METHOD_NOT_ALLOWED', 'the dashboard API is read-only but for destroy');
    const query = new URL(req.url ?? '/', 'http://x').searchParams;
    if (rest[0] === 'live' && rest.length === 1) return this.#liveStream(req, res, query.get('q') ?? '');
    if (rest[0] === 'nodes' && rest.length === 1) return sendJson(res, 200, await this.#rows(query.get('q') ?? ''));
    if (rest[0] === 'nodes' && rest.length === 2) return sendJson(res, 200, await this.#detail(nodeParam(rest[1])));
    if (rest[0] === 'nodes' && rest[2] === 'logs' && rest.length === 3) return this.#logStream(req, res, nodeParam(rest[1]));
    if (rest[0] === 'budgets' && rest.length === 1) return sendJson(res, 200, await this.#budgets());
    throw new KeynodeError('ERR_NOT_FOUND', `no dashboard route ${path.slice(0, 80)}`);
  }

  /**
   * Requests that change something must come from the page itself: SameSite=Strict already keeps the cookie
   * off other sites' requests; a custom header cannot be sent cross-origin without a preflight we never allow.
   */
  #sameOrigin(req: IncomingMessage): void {
    if (req.headers['x-keynode-dashboard'] !== '1') throw new KeynodeError('ERR_ACCESS_DENIED', 'dashboard requests that change something come from the dashboard page');
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://${req.headers.host}` && origin !== `https://${req.headers.host}`) {
      throw new KeynodeError('ERR_ACCESS_DENIED', 'cross-origin dashboard request refused');
    }
  }

  // --- reading ---------------------------------------------------------------------------------

  /** A row of the node table: what `keynode ls` shows, plus the budget. */
  #row(rec: NodeRecord): Row {
    const awake = this.#deps.runtime.supervisor.get(rec.id);
    const worker = awake?.worker;
    return {
      id: rec.id,
      status: worker ? awake.publicStatus : 'asleep',
      pid: worker?.pid ?? null,
      memoryMB: worker ? awake.grantedMB : null,
      lastActivity: worker ? awake.lastActivity : null,
      lifetime: rec.lifetime.kind,
      parent: rec.parent,
      budget: rec.budget,
      createdAt: rec.createdAt,
    };
  }

  /** Awake nodes first (they are what changes), then the directory from the ID prefix `q`; ROWS_MAX at most. */
  async #rows(q: string): Promise<{ rows: Row[]; more: boolean }> {
    const prefix = /^[a-z2-7]{0,52}$/.test(q) ? q : '';
    const rows = new Map<NodeId, Row>();
    for (const n of this.#deps.runtime.supervisor.nodes()) {
      if (rows.size >= ROWS_MAX) break;
      if (n.worker && !n.destroyed && n.id.startsWith(prefix)) rows.set(n.id, this.#row(n.rec));
    }
    let more = false;
    const range = prefix ? { gte: prefix, lt: successor(prefix) } : {};
    for await (const v of this.#deps.runtime.store.sub('n').values({ ...range, limit: ROWS_MAX + 1 })) {
      const rec = decode(v) as NodeRecord;
      if (rows.has(rec.id)) continue;
      if (rows.size >= ROWS_MAX) {
        more = true;
        break;
      }
      rows.set(rec.id, this.#row(rec));
    }
    return { rows: [...rows.values()], more };
  }

  async #detail(id: NodeId): Promise<unknown> {
    const { runtime } = this.#deps;
    const rec = await runtime.lookup(id);
    const children: NodeId[] = [];
    for await (const kid of runtime.store.children(id)) {
      if (children.length >= 100) break;
      children.push(kid);
    }
    const report = await runtime.budgets.report(id);
    return { node: withoutCode(runtime.info(rec)), children, moreChildren: children.length >= 100, budget: report };
  }

  /** The budget tree: the operator's capacity, then each principal it granted a budget to, with their use. */
  async #budgets(): Promise<unknown> {
    const { runtime, operator } = this.#deps;
    const principals: unknown[] = [];
    // Holders are nodes with children and granted principals; only principals have limits of their own.
    for await (const [id, v] of runtime.store.sub('b').iterator({ limit: 10_000 })) {
      if (id === operator || !(decode(v) as { limits?: unknown }).limits) continue;
      principals.push(await runtime.budgets.report(id));
      if (principals.length >= ROWS_MAX) break;
    }
    return { root: await runtime.budgets.report(operator), principals };
  }

  // --- streams ---------------------------------------------------------------------------------

  #openStream(req: IncomingMessage, res: ServerResponse): ((event: string, data: unknown) => void) | undefined {
    if (this.#streams.size >= MAX_STREAMS) throw new KeynodeError('ERR_OVERLOADED', `${MAX_STREAMS} dashboard streams are open already`);
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', connection: 'keep-alive', ...SECURITY_HEADERS });
    res.flushHeaders();
    this.#streams.add(res);
    const ping = setInterval(() => res.write(': ping\n\n'), 15_000).unref();
    const closed = () => {
      clearInterval(ping);
      this.#streams.delete(res);
    };
    req.socket.setTimeout(0);
    res.on('close', closed);
    return (event, data) => {
      if (!res.writableEnded && !res.destroyed) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
  }

  async #liveStream(req: IncomingMessage, res: ServerResponse, q: string): Promise<void> {
    const send = this.#openStream(req, res)!;
    send('hello', { containerId: this.#deps.containerId, url: this.#deps.url, history: this.live.history, errors: this.live.errors });
    let tick = 0;
    let busy = false;
    const pushTables = async (all: boolean) => {
      if (busy) return;
      busy = true;
      try {
        send('nodes', await this.#rows(q));
        if (all) send('budgets', await this.#budgets());
      } catch (e) {
        this.#deps.logger.warn({ err: e }, 'dashboard: reading the node table failed');
      } finally {
        busy = false;
      }
    };
    const unsubscribe = this.live.subscribe((sample) => {
      send('stats', { sample, errors: this.live.errors });
      // Tables every other second, budgets every fifth: both read the store.
      if (++tick % 2 === 0) void pushTables(tick % 10 === 0);
    });
    res.on('close', unsubscribe);
    await pushTables(true);
  }

  async #logStream(req: IncomingMessage, res: ServerResponse, id: NodeId): Promise<void> {
    const { runtime } = this.#deps;
    await runtime.lookup(id); // 404 before the stream opens
    const send = this.#openStream(req, res)!;
    let open = true;
    res.on('close', () => (open = false));
    const tail = await runtime.logs.read(id, 0, 10_000);
    const first = tail.slice(-200);
    send('lines', first);
    let after = tail.at(-1)?.seq ?? 0;
    while (open) {
      await runtime.logs.waitForLines(id, 15_000);
      if (!open) break;
      if (runtime.destroying.has(id) || !(await runtime.find(id))) {
        send('gone', { id });
        break;
      }
      const lines = await runtime.logs.read(id, after, 1000);
      if (lines.length) {
        after = lines.at(-1)!.seq;
        send('lines', lines);
      }
    }
    res.end();
  }

  // --- the one change ---------------------------------------------------------------------------

  async #destroy(req: IncomingMessage, res: ServerResponse, id: NodeId): Promise<void> {
    // The page asks for confirmation and names the node again: a stray request destroys nothing.
    if (req.headers['x-keynode-confirm'] !== id) throw new KeynodeError('ERR_BAD_MESSAGE', 'confirm a destroy by naming the node in x-keynode-confirm');
    req.resume();
    await this.#deps.runtime.lookup(id);
    await this.#deps.runtime.destroy(id, 'destroyed by the operator (dashboard)');
    this.live.recount();
    this.#deps.logger.info({ node: id }, 'dashboard: node destroyed by the operator');
    sendJson(res, 200, { destroyed: id });
  }
}

interface Row {
  id: NodeId;
  status: string;
  pid: number | null;
  memoryMB: number | null;
  lastActivity: number | null;
  lifetime: string;
  parent: NodeId;
  budget: unknown;
  createdAt: number;
}

/** A node's description without the code it carries: capability functions and lease checks are tenants' code. */
function withoutCode(info: NodeInfo): NodeInfo {
  const caps = Object.fromEntries(Object.entries(info.sandbox.capabilities ?? {}).map(([k, c]) => [k, { node: (c as { node: string }).node }]));
  const lifetime = info.lifetime as { kind: string; check?: { node: string } };
  return {
    ...info,
    sandbox: { ...info.sandbox, capabilities: caps as never },
    lifetime: lifetime.check ? { ...lifetime, check: { node: lifetime.check.node } } : lifetime,
  };
}

function nodeParam(v: string | undefined): NodeId {
  if (!isNodeId(v)) throw new KeynodeError('ERR_BAD_NODE_ID', 'not a node ID');
  return v;
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  if (res.headersSent) return;
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), ...SECURITY_HEADERS }).end(body);
}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_JSON_BODY) {
        req.removeAllListeners('data');
        req.resume();
        reject(new KeynodeError('ERR_TOO_LARGE', 'dashboard requests are small JSON bodies'));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}'));
      } catch {
        reject(new KeynodeError('ERR_BAD_MESSAGE', 'the body must be JSON'));
      }
    });
    req.on('error', reject);
  });
}
