/**
 * @module container/worker-messages
 * Shape checks for frames from a worker. A worker runs strangers' code, so it is treated like a network
 * peer: anything off-shape is a protocol violation and the worker is killed.
 */
import { isErrorCode, KeynodeError, type FromWorker, type WireError, type WorkerRequest, type Write } from '../../protocol/index.js';

function violation(what: string): never {
  throw new KeynodeError('ERR_BAD_MESSAGE', `worker frame: ${what}`);
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isStr = (v: unknown, max: number): v is string => typeof v === 'string' && v.length <= max;
const isBytes = (v: unknown): v is Uint8Array => v instanceof Uint8Array;

function checkWrite(w: unknown): Write {
  if (!isObj(w) || !isStr(w.name, 256) || w.name.length === 0 || w.name.includes('\u0000')) violation('bad write');
  if (w.op === 'ref' && isBytes(w.value)) return { op: 'ref', name: w.name, value: w.value };
  if (w.op === 'put' && isStr(w.key, 1024) && isBytes(w.value)) return { op: 'put', name: w.name, key: w.key, value: w.value };
  if (w.op === 'del' && isStr(w.key, 1024)) return { op: 'del', name: w.name, key: w.key };
  return violation('bad write');
}

function checkError(e: unknown): WireError {
  if (!isObj(e) || !isErrorCode(e.code) || !isStr(e.message, 64 * 1024)) violation('bad error');
  const out: WireError = { code: e.code, message: e.message };
  const r = e.remote;
  if (r !== undefined) {
    if (!isObj(r) || !isStr(r.name, 1024) || !isStr(r.message, 64 * 1024)) violation('bad remote error');
    out.remote = { name: r.name, message: r.message };
    if (isStr(r.code, 1024)) out.remote.code = r.code;
    if (isStr(r.stack, 64 * 1024)) out.remote.stack = r.stack;
  }
  return out;
}

function checkRequest(r: unknown): WorkerRequest {
  if (!isObj(r)) violation('bad request');
  switch (r.op) {
    case 'ref.get':
      if (isStr(r.name, 256)) return { op: 'ref.get', name: r.name };
      break;
    case 'index.get':
      if (isStr(r.name, 256) && isStr(r.key, 1024)) return { op: 'index.get', name: r.name, key: r.key };
      break;
    case 'index.entries':
      if (isStr(r.name, 256) && (r.prefix === undefined || isStr(r.prefix, 1024)) && (r.limit === undefined || isInt(r.limit))) {
        return { op: 'index.entries', name: r.name, prefix: (r.prefix as string | undefined) ?? '', limit: Math.min((r.limit as number | undefined) ?? 1000, 20_000) };
      }
      break;
    case 'at':
      if (isStr(r.node, 4096) && isStr(r.fn, 16 * 1024 * 1024) && isBytes(r.args)) return { op: 'at', node: r.node, fn: r.fn, args: r.args };
      break;
    case 'cap':
      if (isStr(r.name, 64) && isBytes(r.args)) return { op: 'cap', name: r.name, args: r.args };
      break;
    case 'spawn':
      return { op: 'spawn', spec: r.spec };
    case 'destroy':
      if (isStr(r.node, 4096)) return { op: 'destroy', node: r.node };
      break;
    case 'destroySelf':
      return { op: 'destroySelf' };
  }
  return violation(`bad request ${String(r.op)}`);
}

export function checkFromWorker(m: unknown): FromWorker {
  if (!isObj(m)) violation('not a map');
  switch (m.type) {
    case 'ready':
      if (isInt(m.pid)) return { type: 'ready', pid: m.pid };
      break;
    case 'idle':
      return { type: 'idle' };
    case 'released':
      if (isInt(m.heapUsed)) return { type: 'released', heapUsed: m.heapUsed };
      break;
    case 'started':
      if (isInt(m.id)) return { type: 'started', id: m.id };
      break;
    case 'request':
      if (isInt(m.id) && isInt(m.eval)) return { type: 'request', id: m.id, eval: m.eval, req: checkRequest(m.req) };
      break;
    case 'log':
      if (isInt(m.eval) && isStr(m.line, 64 * 1024)) return { type: 'log', eval: m.eval, line: m.line };
      break;
    case 'result':
      if (!isInt(m.id)) break;
      if (m.ok === true && isBytes(m.value) && Array.isArray(m.writes) && m.writes.length <= 100_000) {
        return { type: 'result', id: m.id, ok: true, value: m.value, writes: m.writes.map(checkWrite) };
      }
      if (m.ok === false) return { type: 'result', id: m.id, ok: false, error: checkError(m.error) };
      break;
  }
  return violation(`unexpected ${String(m.type)}`);
}
