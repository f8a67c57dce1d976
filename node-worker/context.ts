/**
 * @module node-worker/context
 * The `ctx` an eval receives: exactly what the node's sandbox grants, as hardened objects. Writes are
 * buffered here and travel with the result, so the container commits them all or none. Every method
 * stops working when its eval ends, so a dangling promise cannot write after the commit.
 */
import type { WorkerNode, WorkerRequest, Write } from '../protocol/messages.js';
import { analyzed } from './analysis.js';
import { hostError } from './host-errors.js';

declare function harden<T>(value: T): T;

/**
 * What harden() would do to the objects made here, without its generic walk (tens of µs per eval, with a
 * fresh ctx every eval): each is a plain object whose own properties are functions made here or values
 * already hardened, and each function is an arrow, a method or an async function, so it has no `prototype`
 * of its own and its prototype chain is lockdown's, already frozen. `for…in`, not Object.values: no array
 * per object per eval (the prototype, Object.prototype, has nothing enumerable).
 */
function frozen<T extends object>(o: T): T {
  for (const k in o) {
    const v = o[k];
    if (typeof v === 'function') Object.freeze(v);
  }
  return Object.freeze(o);
}
let lifetime: typeof LIFETIME | undefined;

export interface Codec {
  /** `label` names the value in a refusal ('args', 'value'): `value.items[2] is a function`. */
  encode(v: unknown, label?: string): Uint8Array;
  decode(b: Uint8Array): unknown;
}

export interface EvalScope {
  readonly id: number;
  ended: boolean;
  /** This eval's writes by key, made at its first write (most evals write nothing). */
  writes: Map<string, Write> | undefined;
  logLines: number;
}

const NO_WRITES: readonly Write[] = Object.freeze([]);

/** What the eval wrote, in the order first written, for its result. */
export function writesOf(scope: EvalScope): readonly Write[] {
  return scope.writes ? [...scope.writes.values()] : NO_WRITES;
}

function written(scope: EvalScope): Map<string, Write> {
  return (scope.writes ??= new Map());
}

export interface ContextDeps {
  node: WorkerNode;
  here: unknown;
  codec: Codec;
  request(scope: EvalScope, req: WorkerRequest): Promise<unknown>;
  log(scope: EvalScope, line: string): void;
}

const MAX_NAME = 256;
const MAX_KEY = 1024;
const MAX_LOG_LINE = 8 * 1024;
const MAX_LOG_LINES_PER_EVAL = 1000;

function fail(code: 'ERR_SANDBOX' | 'ERR_EVAL_ENDED' | 'ERR_BAD_MESSAGE', message: string): never {
  throw hostError(code, message);
}

// A leading U+FEFF is refused: UTF-8 decoders drop it as a byte-order mark (MessagePack's does for longer
// strings), so a name or key starting with one could be written under one key and read under another.
function checkName(what: string, name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME || name.includes('\u0000') || name.charCodeAt(0) === 0xfeff) {
    fail('ERR_BAD_MESSAGE', `${what} name must be a string of 1 to ${MAX_NAME} characters without NUL, not starting with U+FEFF`);
  }
  return name;
}

function checkKey(key: unknown): string {
  if (typeof key !== 'string' || key.length > MAX_KEY || key.charCodeAt(0) === 0xfeff) {
    fail('ERR_BAD_MESSAGE', `index keys are strings of up to ${MAX_KEY} characters, not starting with U+FEFF`);
  }
  return key;
}

/** JSON for a log line, with what JSON leaves out shown rather than lost. */
function logJson(_key: string, v: unknown): unknown {
  if (typeof v === 'bigint') return `${v}n`;
  if (v instanceof Map) return { Map: [...v] };
  if (v instanceof Set) return { Set: [...v] };
  return v;
}

/** Formats log arguments without letting a hostile value break the worker. */
export function formatLogArgs(args: unknown[]): string {
  const parts = args.map((a) => {
    if (typeof a === 'string') return a;
    try {
      // Not the stack: its frames name the worker's files.
      if (a instanceof Error) return `${a.name}: ${a.message}`;
      const s = JSON.stringify(a, logJson);
      return s === undefined ? String(a) : s;
    } catch {
      try {
        return String(a);
      } catch {
        return '[unprintable]';
      }
    }
  });
  const line = parts.join(' ');
  return line.length > MAX_LOG_LINE ? `${line.slice(0, MAX_LOG_LINE)}…[truncated]` : line;
}

/** Appends a line to the eval's log, up to the per-eval cap (shared by ctx.log and console). */
export function appendLog(deps: Pick<ContextDeps, 'log'>, scope: EvalScope, line: string): void {
  if (++scope.logLines > MAX_LOG_LINES_PER_EVAL) {
    if (scope.logLines === MAX_LOG_LINES_PER_EVAL + 1) deps.log(scope, `[log] more than ${MAX_LOG_LINES_PER_EVAL} lines in one eval; the rest are dropped`);
    return;
  }
  deps.log(scope, line);
}

// Guards shared by every eval (the scope and node are arguments, not captured), so a ctx costs only the
// functions the user can reach.
function live(scope: EvalScope): void {
  if (scope.ended) fail('ERR_EVAL_ENDED', 'this eval has already returned; ctx methods work only while it runs');
}

function canRead(scope: EvalScope, node: WorkerNode): void {
  live(scope);
  if (node.refs === 'none') fail('ERR_SANDBOX', "this node's sandbox grants no refs (sandbox.refs is 'none')");
}

function canWrite(scope: EvalScope, node: WorkerNode): void {
  canRead(scope, node);
  if (node.refs !== 'readwrite') fail('ERR_SANDBOX', "this node's sandbox grants read-only refs (sandbox.refs is 'read')");
}

export function makeContext(deps: ContextDeps, scope: EvalScope, from: string): unknown {
  const { node, codec } = deps;
  const ask = (req: WorkerRequest): Promise<unknown> => deps.request(scope, req);

  const ref = (rawName: unknown) => {
    const name = checkName('ref', rawName);
    const key = `r\u0000${name}`;
    return frozen({
      async get(): Promise<unknown> {
        canRead(scope, node);
        const w = scope.writes?.get(key);
        if (w?.op === 'ref') return codec.decode(w.value);
        const bytes = (await ask({ op: 'ref.get', name })) as Uint8Array | null;
        return bytes ? codec.decode(bytes) : undefined;
      },
      async set(value: unknown): Promise<void> {
        canWrite(scope, node);
        // Encoded now: later changes to `value` do not leak into the commit, and bad values fail here.
        written(scope).set(key, { op: 'ref', name, value: codec.encode(value, 'value') });
      },
    });
  };

  const index = (rawName: unknown) => {
    const name = checkName('index', rawName);
    const wkey = (k: string) => `i\u0000${name}\u0000${k}`;
    const overlay = (): Map<string, Write> => {
      const prefix = `i\u0000${name}\u0000`;
      const out = new Map<string, Write>();
      for (const [k, w] of scope.writes ?? []) if (k.startsWith(prefix)) out.set(k.slice(prefix.length), w);
      return out;
    };
    return frozen({
      async get(rawKey: unknown): Promise<unknown> {
        canRead(scope, node);
        const k = checkKey(rawKey);
        const w = scope.writes?.get(wkey(k));
        if (w) return w.op === 'put' ? codec.decode(w.value) : undefined;
        const bytes = (await ask({ op: 'index.get', name, key: k })) as Uint8Array | null;
        return bytes ? codec.decode(bytes) : undefined;
      },
      async put(rawKey: unknown, value: unknown): Promise<void> {
        canWrite(scope, node);
        const k = checkKey(rawKey);
        written(scope).set(wkey(k), { op: 'put', name, key: k, value: codec.encode(value, 'value') });
      },
      async delete(rawKey: unknown): Promise<void> {
        canWrite(scope, node);
        const k = checkKey(rawKey);
        written(scope).set(wkey(k), { op: 'del', name, key: k });
      },
      /** Entries in key order, this eval's own writes included. */
      async entries(options?: { prefix?: unknown; limit?: unknown }): Promise<[string, unknown][]> {
        canRead(scope, node);
        const prefix = options?.prefix === undefined ? '' : checkKey(options.prefix);
        const limit = options?.limit === undefined ? 1000 : Number(options.limit);
        if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) fail('ERR_BAD_MESSAGE', 'entries() limit is an integer from 1 to 10000');
        const mine = overlay();
        // Ask for enough rows that our own deletes cannot leave the page short.
        const stored = (await ask({ op: 'index.entries', name, prefix, limit: limit + mine.size })) as [string, Uint8Array][];
        const merged = new Map<string, Uint8Array>();
        for (const [k, v] of stored) merged.set(k, v);
        for (const [k, w] of mine) {
          if (!k.startsWith(prefix)) continue;
          if (w.op === 'put') merged.set(k, w.value);
          else merged.delete(k);
        }
        // The store's order: UTF-8 bytes (code points), not JavaScript's UTF-16 string order.
        const keys = [...merged.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
        return keys.slice(0, limit).map((k) => [k, codec.decode(merged.get(k)!)] as [string, unknown]);
      },
    });
  };

  const at = async (target: unknown, fn: unknown, ...args: unknown[]): Promise<unknown> => {
    live(scope);
    const nodeName = typeof target === 'string' ? target : (target as { url?: unknown })?.url;
    if (typeof nodeName !== 'string') fail('ERR_BAD_MESSAGE', 'ctx.at(node, fn, ...args): node is a node URL, ID or handle');
    if (typeof fn !== 'function') fail('ERR_BAD_MESSAGE', 'ctx.at(node, fn, ...args): fn must be a function');
    const source = String(fn);
    // Checked here too, for an error at the caller with its line and column; the target checks again.
    analyzed(source);
    const bytes = (await ask({ op: 'at', node: nodeName, fn: source, args: codec.encode(args, 'args') })) as Uint8Array;
    return codec.decode(bytes);
  };

  const caps: Record<string, (...args: unknown[]) => Promise<unknown>> = {};
  for (const name of node.capabilities) {
    const call = async (...args: unknown[]) => {
      live(scope);
      const bytes = (await ask({ op: 'cap', name, args: codec.encode(args, 'args') })) as Uint8Array;
      return codec.decode(bytes);
    };
    // Defined, not assigned: a capability named `__proto__` is an own property like any other (frozen below).
    Object.defineProperty(caps, name, { value: call, enumerable: true, writable: true, configurable: true });
  }

  const ctx = {
    here: deps.here,
    /** Lifetime values for ctx.spawn, as in the client library. */
    Lifetime: (lifetime ??= harden(LIFETIME)),
    /** The principal that sent this eval. */
    caller: from,
    ref,
    index,
    at,
    caps: frozen(caps),
    log(...args: unknown[]): void {
      live(scope);
      if (!node.log) return;
      appendLog(deps, scope, formatLogArgs(args));
    },
    async spawn(options: unknown): Promise<unknown> {
      live(scope);
      if (node.spawn === false) fail('ERR_SANDBOX', "this node's sandbox does not allow spawn (sandbox.spawn is false)");
      const bytes = (await ask({ op: 'spawn', spec: toPlain(options) })) as Uint8Array;
      return codec.decode(bytes);
    },
    async destroy(target: unknown): Promise<void> {
      live(scope);
      const nodeName = typeof target === 'string' ? target : (target as { url?: unknown })?.url;
      if (typeof nodeName !== 'string') fail('ERR_BAD_MESSAGE', 'ctx.destroy(node): node is a node URL, ID or handle');
      await ask({ op: 'destroy', node: nodeName });
    },
    async destroySelf(): Promise<void> {
      live(scope);
      await ask({ op: 'destroySelf' });
    },
  };
  return frozen(ctx);
}

const LIFETIME = {
  root: () => ({ kind: 'root' }),
  ephemeral: () => ({ kind: 'ephemeral' }),
  linked: () => ({ kind: 'linked' }),
  resetting: (seconds: number) => ({ kind: 'resetting', seconds }),
  leased: (seconds: number, check: { node: unknown; fn: unknown }) => ({ kind: 'leased', seconds, check }),
};

/** Spawn options may contain functions (a lease check, capability targets): send them as source. */
function toPlain(v: unknown, depth = 0): unknown {
  if (depth > 8) fail('ERR_BAD_MESSAGE', 'spawn options nest too deeply');
  if (typeof v === 'function') return String(v);
  if (Array.isArray(v)) return v.map((x) => toPlain(x, depth + 1));
  if (typeof v === 'object' && v !== null) {
    if ('url' in v && 'id' in v && typeof (v as { url: unknown }).url === 'string') return (v as { url: string }).url;
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v)) out[k] = toPlain((v as Record<string, unknown>)[k], depth + 1);
    return out;
  }
  return v;
}
