/**
 * Slow, stalled and idle clients at a real container's HTTP edge: slowloris headers, bodies that never end
 * (by Content-Length and mid-chunk), hundreds of idle connections. While they hang, a normal client's valid
 * requests still succeed quickly. Every socket opened here is destroyed in afterAll, pass or fail.
 *
 * That the server itself closes stalled requests is tested in slow-timeouts.test.ts, with short timeouts.
 */
import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lifetime, type NodeHandle } from 'keynode';
import { decode, encode, ERROR_STATUS, sealEnvelope } from '../../dist/protocol/index.js';
import { decode as msgpackDecode } from '@msgpack/msgpack';
import { startContainer, type TestContainer } from '../helpers/containers.js';

const INCREMENT = 'async (ctx) => { const r = ctx.ref("count"); const n = ((await r.get()) ?? 0) + 1; await r.set(n); return n; }';
const IDLE_SOCKETS = 500;
const LATENCY_BOUND_MS = 2_000;

let c: TestContainer;
let node: NodeHandle;
let port: number;
let pool: Pool;
/** Valid evals sent: the node's counter. */
let count = 0;
const sockets = new Set<Socket>();
const timers = new Set<NodeJS.Timeout>();

beforeAll(async () => {
  c = await startContainer();
  port = Number(new URL(c.url).port);
  node = await c.client.spawn({ lifetime: Lifetime.root() });
  pool = new Pool(c.url, { connections: 4 });
  await validEval(); // awake before the clients arrive
});

afterAll(async () => {
  for (const t of timers) clearInterval(t);
  timers.clear();
  for (const s of sockets) s.destroy();
  sockets.clear();
  await pool?.destroy();
});

/** A raw TCP connection to the container, tracked for cleanup; errors (resets by the server) are expected. */
async function open(): Promise<Socket> {
  const s = netConnect(port, '127.0.0.1');
  sockets.add(s);
  s.on('error', () => {});
  s.on('close', () => sockets.delete(s));
  await once(s, 'connect');
  return s;
}

function evalWire(): Uint8Array {
  return sealEnvelope(c.operator, 'eval', node.id, { fn: INCREMENT, args: encode([]) }, Date.now(), c.client.containerId);
}

/** A valid signed eval from a normal client: succeeds, counts once, and answers within the bound. */
async function validEval(): Promise<number> {
  const started = performance.now();
  const res = await pool.request({ path: `/${node.id}`, method: 'POST', body: evalWire(), headers: { 'content-type': 'application/msgpack' }, signal: AbortSignal.timeout(10_000) });
  const reply = msgpackDecode(new Uint8Array(await res.body.arrayBuffer())) as { ok: boolean; value: Uint8Array };
  const ms = performance.now() - started;
  expect({ status: res.statusCode, ok: reply.ok }).toEqual({ status: 200, ok: true });
  expect(decode(reply.value)).toBe(++count);
  return ms;
}

/** A valid container message (describe) from a normal client. */
async function validDescribe(): Promise<number> {
  const started = performance.now();
  const body = sealEnvelope(c.operator, 'describe', c.client.containerId, { node: node.id });
  const res = await pool.request({ path: '/', method: 'POST', body, headers: { 'content-type': 'application/msgpack' }, signal: AbortSignal.timeout(10_000) });
  await res.body.arrayBuffer();
  expect(res.statusCode).toBe(200);
  return performance.now() - started;
}

/** Reads what the server sends on `s` until it closes the connection (or `ms` passes). */
function readUntilClose(s: Socket, ms: number): Promise<{ closed: boolean; data: Buffer }> {
  return new Promise((resolve) => {
    let data = Buffer.alloc(0);
    s.on('data', (d: Buffer) => (data = Buffer.concat([data, d])));
    const timer = setTimeout(() => resolve({ closed: false, data }), ms);
    s.once('close', () => {
      clearTimeout(timer);
      resolve({ closed: true, data });
    });
  });
}

interface Stalled {
  slowloris: Socket[];
  partialLength: Socket[];
  midChunk: Socket[];
  betweenChunks: Socket[];
  idle: Socket[];
  idleAfterRequest: Socket[];
}

/** Opens every kind of stalled client; the slowloris ones keep trickling a header byte every 100 ms. */
async function stallEverything(): Promise<Stalled> {
  const wire = evalWire();
  const st: Stalled = { slowloris: [], partialLength: [], midChunk: [], betweenChunks: [], idle: [], idleAfterRequest: [] };
  for (let i = 0; i < 20; i++) {
    const s = await open();
    s.write(`POST /${node.id} HTTP/1.1\r\nHost: 127.0.0.1\r\n`);
    const header = Buffer.from(`X-Slow-${i}: ${'a'.repeat(100)}\r\n`.repeat(20));
    let at = 0;
    const t = setInterval(() => {
      if (s.destroyed || at >= header.length) return;
      s.write(header.subarray(at, ++at));
    }, 100);
    timers.add(t);
    st.slowloris.push(s);
  }
  for (let i = 0; i < 20; i++) {
    // A valid eval's first half, under a Content-Length for all of it: the rest never comes.
    const s = await open();
    s.write(`POST /${node.id} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/msgpack\r\nContent-Length: ${wire.length}\r\n\r\n`);
    s.write(wire.subarray(0, wire.length >> 1));
    st.partialLength.push(s);
  }
  for (let i = 0; i < 20; i++) {
    // Chunked: a chunk announced at 0x400 bytes, 100 sent.
    const s = await open();
    s.write(`POST /${node.id} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n`);
    s.write(wire.subarray(0, 100));
    st.midChunk.push(s);
  }
  for (let i = 0; i < 10; i++) {
    // Chunked: one whole chunk, then silence where the next chunk (or the last one) should be.
    const s = await open();
    s.write(`POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n${'x'.repeat(16)}\r\n`);
    st.betweenChunks.push(s);
  }
  for (let i = 0; i < IDLE_SOCKETS; i++) st.idle.push(await open()); // connected, never a byte
  for (let i = 0; i < 20; i++) {
    // One finished keep-alive request, then idle.
    const s = await open();
    const reply = once(s, 'data');
    s.write('GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n');
    await reply;
    st.idleAfterRequest.push(s);
  }
  return st;
}

describe('slow and idle clients', () => {
  it(`while slowloris, unfinished bodies and ${IDLE_SOCKETS} idle connections hang, valid requests still succeed quickly`, async () => {
    const countBefore = count;
    const st = await stallEverything();
    const stalled = Object.values(st).flat();
    expect(stalled.length).toBeGreaterThanOrEqual(IDLE_SOCKETS + 90);

    // A normal client keeps working while they hang: sequential evals and container messages, then bursts.
    const latencies: number[] = [];
    const until = Date.now() + 3_000;
    while (Date.now() < until) {
      latencies.push(await validEval());
      latencies.push(await validDescribe());
    }
    for (let burst = 0; burst < 3; burst++) {
      latencies.push(...(await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? validDescribe() : validEval())))));
    }
    const worst = Math.max(...latencies);
    console.log(`${latencies.length} valid requests while ${stalled.length} clients stalled: worst ${Math.round(worst)} ms, median ${Math.round(latencies.sort((a, b) => a - b)[latencies.length >> 1]!)} ms`);
    expect(worst).toBeLessThan(LATENCY_BOUND_MS);

    // None of the stalled requests ran (each unfinished eval would have moved the counter).
    expect(await c.client.at(node, (ctx) => ctx.ref('count').get())).toBe(count);
    expect(count - countBefore).toBeGreaterThan(10);
    expect(c.container.status).toBe('open');

    // The server has not answered any of them, which is right: their requests are not complete. (It closes
    // idle keep-alive connections after keepAliveTimeout; the rest wait for headersTimeout/requestTimeout.)
    for (const s of [...st.slowloris, ...st.partialLength, ...st.midChunk, ...st.betweenChunks]) expect(s.bytesRead).toBe(0);
    for (const s of stalled) s.destroy();
    // And after they go, still serving.
    await validEval();
  }, 60_000);

  it('a burst of 200 connections opened and dropped mid-request leaves the container serving', async () => {
    const opened = await Promise.all(Array.from({ length: 200 }, () => open()));
    for (const [i, s] of opened.entries()) {
      const wire = evalWire();
      if (i % 3 === 0) s.write(`POST /${node.id} HTTP/1.1\r\nHost: x\r\n`);
      else if (i % 3 === 1) s.write(Buffer.concat([Buffer.from(`POST /${node.id} HTTP/1.1\r\nHost: x\r\nContent-Length: ${wire.length}\r\n\r\n`), Buffer.from(wire.subarray(0, 50))]));
      else s.write(Buffer.concat([Buffer.from(`POST /${node.id} HTTP/1.1\r\nHost: x\r\nContent-Length: ${wire.length}\r\n\r\n`), Buffer.from(wire)]));
    }
    // Reset them all at once (RST, not FIN), some before and some after their request reached the handler.
    await new Promise((r) => setTimeout(r, 50));
    for (const s of opened) s.resetAndDestroy();
    // The complete ones (a third) may or may not have run before the reset; the counter says how many did,
    // once it stops moving.
    const read = async () => (await c.client.at(node, (ctx) => ctx.ref('count').get())) as number;
    let ran = await read();
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 250));
      const again = await read();
      if (again === ran) break;
      ran = again;
    }
    expect(ran).toBeGreaterThanOrEqual(count);
    expect(ran).toBeLessThanOrEqual(count + Math.ceil(200 / 3));
    count = ran;
    const ms = await validEval();
    expect(ms).toBeLessThan(LATENCY_BOUND_MS);
    expect(c.container.status).toBe('open');
  });

  it('idle keep-alive connections are closed by the server after keepAliveTimeout (5 s)', async () => {
    const idle = await Promise.all(Array.from({ length: 20 }, () => open()));
    const closed = idle.map((s) => {
      const r = readUntilClose(s, 8_000);
      s.write('GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n');
      return r;
    });
    const results = await Promise.all(closed);
    for (const r of results) {
      expect(r.data.toString('latin1')).toMatch(/^HTTP\/1\.1 200 /);
      expect(r.closed).toBe(true);
    }
  }, 15_000);

});

describe('malformed HTTP framing', () => {
  const requests: Record<string, string> = {
    'invalid method': 'P@ST / HTTP/1.1\r\nHost: x\r\n\r\n',
    'unknown HTTP version': 'POST / HTTP/9.9\r\nHost: x\r\n\r\n',
    'header name with a space': 'POST / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n',
    'headers over 16 KiB': `POST / HTTP/1.1\r\nHost: x\r\nX: ${'a'.repeat(20_000)}\r\n\r\n`,
    'Content-Length not a number': 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n',
    'negative Content-Length': 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n',
    'two Content-Lengths': 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab',
    'Content-Length and chunked': 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    'chunk size not hex': 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n',
    'chunk size past 2^64': 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\nab\r\n',
    'unknown Transfer-Encoding': 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n',
    'binary garbage': '\x00\x01\x02\x03\r\n\r\n',
  };

  async function rawExchange(text: string): Promise<{ closed: boolean; data: Buffer }> {
    const s = await open();
    const done = readUntilClose(s, 5_000);
    s.write(Buffer.from(text, 'latin1'));
    const r = await done;
    s.destroy();
    return r;
  }

  function parse(data: Buffer): { status: number; headers: string; body: Buffer } {
    const text = data.toString('latin1');
    const end = text.indexOf('\r\n\r\n');
    return { status: Number(/^HTTP\/1\.1 (\d{3}) /.exec(text)?.[1] ?? 0), headers: end < 0 ? text : text.slice(0, end), body: end < 0 ? Buffer.alloc(0) : data.subarray(end + 4) };
  }

  it('each gets a 4xx and a closed connection, and the container keeps serving', async () => {
    for (const [what, text] of Object.entries(requests)) {
      const r = await rawExchange(text);
      const { status } = parse(r.data);
      expect({ what, closed: r.closed, fourXX: status >= 400 && status < 500 }).toEqual({ what, closed: true, fourXX: true });
    }
    expect(await validEval()).toBeLessThan(LATENCY_BOUND_MS);
  });

  it('each carries the usual { ok: false, error: { code } } reply with the status its code maps to', async () => {
    // The edge promises one error shape everywhere; framing errors are answered by the clientError handler.
    const wrong: string[] = [];
    for (const [what, text] of Object.entries(requests)) {
      const { status, headers, body } = parse((await rawExchange(text)).data);
      let code: unknown;
      try {
        code = (msgpackDecode(body) as { ok: boolean; error: { code: string } }).error.code;
      } catch {
        code = undefined;
      }
      const ok = typeof code === 'string' && Object.hasOwn(ERROR_STATUS, code) && ERROR_STATUS[code as keyof typeof ERROR_STATUS] === status;
      if (!ok) wrong.push(`${what}: ${JSON.stringify(headers.split('\r\n')[0])}, body ${body.length} bytes, code ${String(code)}`);
    }
    expect(wrong).toEqual([]);
  });
});
