/**
 * @module node-worker/main
 * A worker process: one node at a time, evals one at a time. It boots blank (lockdown done), says `ready`,
 * becomes a node on `become` (a fresh Compartment), runs `eval`s and says `idle` after each. On `release`
 * it forgets the node entirely and says `released` once nothing of it is left to run; the container may
 * then make it another node of the same tenant.
 *
 * It holds no secret: the node's private key stays in the container, which signs on the node's behalf.
 * The container treats everything this process says as untrusted input.
 */
import { types } from 'node:util';
import { getHeapStatistics } from 'node:v8';
import { makeCodec, NodeRef } from '../protocol/codec.js';
import { KeynodeError, type RemoteError, type WireError } from '../protocol/errors.js';
import type { FromWorker, ToWorker, WorkerNode, WorkerRequest } from '../protocol/messages.js';
import { decodeEvalFrame, encodeEvalFrame, encodeResultIdleFrames } from '../protocol/eval-frames.js';
import { frame, listen, redirect, send, sendResult } from './channel.js';
import { makeConsole } from './console.js';
import { asGenuine, hostError, isGenuine } from './host-errors.js';
import { appendLog, makeContext, writesOf, type ContextDeps, type EvalScope } from './context.js';
import { nodeGlobals, Sandbox } from './sandbox.js';

declare function lockdown(options: Record<string, string>): void;
declare function harden<T>(value: T): T;

// Captured before lockdown tames the shared versions; only the compartment's globals receive them.
const powerful = { Date, Math, Intl };

// SES's own minified build: the same code in fewer bytes to read and compile at every process start.
require(require.resolve('ses').replace(/ses\.cjs$/, 'ses.umd.min.js'));
lockdown({
  errorTaming: 'unsafe', // keep stacks: users debug their own functions with them
  overrideTaming: 'severe',
  consoleTaming: 'unsafe',
  // Locale methods as in Node ((1234.5).toLocaleString('de-DE') is '1.234,5'): they read the host's locale
  // data, which is no authority, and SES's 'safe' replaces them with locale-blind versions.
  localeTaming: 'unsafe',
  // SES would exit the process on an uncaught error. A stray throw from a dangling user promise must not
  // kill an idle node, and a real crash is caught by the container anyway (the process exits).
  errorTrapping: 'none',
  unhandledRejectionTrapping: 'none',
});
harden(KeynodeError);
harden(NodeRef);

process.on('uncaughtException', (e) => process.stderr.write(`uncaught: ${safeText(e)}\n`));
process.on('unhandledRejection', (e) => process.stderr.write(`unhandled rejection: ${safeText(e)}\n`));

/** The eval whose log `console` writes to (the last one started, until it ends), and its node. */
let logging: EvalScope | undefined;
let loggingNode: WorkerNode | undefined;
const sendLog = (scope: EvalScope, line: string) => send({ type: 'log', eval: scope.id, line });
const nodeConsole = makeConsole((line) => {
  const l = logging;
  if (l && !l.ended && loggingNode?.log) appendLog({ log: sendLog }, l, line);
}, () => powerful.Date.now());
const globals = nodeGlobals(powerful, nodeConsole.console);
const raw = makeCodec((url) => harden(new NodeRef(url)));
const codec = {
  encode(v: unknown, label?: string): Uint8Array {
    try {
      return raw.encode(v, label);
    } catch (e) {
      throw asGenuine(e);
    }
  },
  decode(b: Uint8Array): unknown {
    try {
      return raw.decode(b);
    } catch (e) {
      throw asGenuine(e);
    }
  },
};

/** Everything this process holds of the node it serves now; `release` drops all of it at once. */
interface Serving {
  node: WorkerNode;
  here: unknown;
  sandbox: Sandbox;
  /** ctx requests awaiting the container's reply, by request ID. */
  pending: Map<number, { resolve(v: unknown): void; reject(e: unknown): void }>;
  /** What every eval's ctx is made from: built once per node (or change of its policies), not per eval. */
  deps: ContextDeps;
}

function serve(node: WorkerNode, here: unknown, sandbox: Sandbox, pending: Serving['pending']): Serving {
  return { node, here, sandbox, pending, deps: { node, here, codec, request: requester(pending), log: sendLog } };
}

let serving: Serving | undefined;
/**
 * A Compartment built while the process had nothing to do, for the next node: it has run no node's code, so
 * it is as fresh as one built at `become`, and the wake does not wait for it.
 */
let fresh: Sandbox | undefined;

function freshSandbox(): Sandbox {
  const s = fresh ?? new Sandbox(globals);
  fresh = undefined;
  return s;
}
// Request IDs never repeat in this process: a late reply for a released node can never match a new one.
let nextRequest = 1;

const collect = (globalThis as { gc?: () => void }).gc;

/**
 * A thrown or rejected value as text for stderr, without running any code of it: these handlers run when Node
 * gets to them, which may be after the eval that made the value has answered (a rejection is reported after the
 * ticks that send results), so a getter, a `toString` or a Proxy trap that spun there would be charged to the
 * next eval. Only own data properties are read.
 */
function safeText(e: unknown): string {
  if ((typeof e !== 'object' && typeof e !== 'function') || e === null) return String(e); // a primitive runs nothing
  if (types.isProxy(e)) return '[a Proxy]';
  try {
    for (const key of ['stack', 'message']) {
      const d = Object.getOwnPropertyDescriptor(e, key);
      if (typeof d?.value === 'string') return d.value.slice(0, 16 * 1024);
    }
  } catch {
    // nothing readable
  }
  return types.isNativeError(e) ? '[an error]' : `[a value of type ${typeof e}]`;
}

function readString(o: object, key: string, max: number): string | undefined {
  try {
    const v = (o as Record<string, unknown>)[key];
    return typeof v === 'string' ? v.slice(0, max) : typeof v === 'number' ? String(v) : undefined;
  } catch {
    return undefined;
  }
}

/** Stack lines of the user's own code only: frames in keynode's or SES's files would show host paths. */
function userStack(stack: string | undefined): string | undefined {
  return stack
    ?.split('\n')
    .filter((line) => !/^\s+at /.test(line) || /<anonymous>|eval at/.test(line))
    .map((line) => line.replace(/\(?(?:file:\/\/)?\/[^\s)]*\)?/g, '(keynode)'))
    .join('\n');
}

/** Whatever the user threw, reduced to data without trusting its getters to behave. */
function toWire(e: unknown): WireError {
  if (isGenuine(e)) return e.toWire();
  let remote: RemoteError;
  if ((typeof e === 'object' && e !== null) || typeof e === 'function') {
    remote = { name: readString(e, 'name', 200) ?? 'Error', message: readString(e, 'message', 4096) ?? '' };
    const code = readString(e, 'code', 200);
    const stack = userStack(readString(e, 'stack', 16 * 1024));
    if (code !== undefined) remote.code = code;
    if (stack !== undefined) remote.stack = stack;
  } else {
    let text: string;
    try {
      text = typeof e === 'symbol' ? e.toString() : String(e);
    } catch {
      text = '[unprintable]';
    }
    remote = { name: 'Thrown', message: text.slice(0, 4096) };
  }
  return { code: 'ERR_USER', message: `${remote.name}: ${remote.message}`, remote };
}

function requester(pending: Serving['pending']) {
  return (scope: EvalScope, req: WorkerRequest): Promise<unknown> => {
    if (scope.ended) return Promise.reject(hostError('ERR_EVAL_ENDED', 'this eval has already returned'));
    const id = nextRequest++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      send({ type: 'request', id, eval: scope.id, req });
    });
  };
}

function runEval(msg: Extract<ToWorker, { type: 'eval' }>): void {
  // Held for the whole eval: a release cannot arrive before its result (the container waits for idle).
  const s = serving;
  if (s && msg.fn === undefined && !s.sandbox.has(msg.h)) {
    // Named by a hash this Compartment has not compiled (or has dropped): nothing runs, the container resends.
    finishSoon({ type: 'result', id: msg.id, ok: false, error: { code: 'ERR_UNKNOWN_CODE', message: 'this worker does not have that function' } });
    return;
  }
  // No `started` frame: whether an eval may have run is the container's to know (it counts what it wrote and
  // what the worker answered), not the worker's to say, so that frame would be one more per eval for nothing.
  const scope: EvalScope = { id: msg.id, ended: false, writes: undefined, logLines: 0 };
  let returned: unknown;
  try {
    if (!s) throw hostError('ERR_INTERNAL', 'eval before become');
    const fn = s.sandbox.compile(msg.h, msg.fn);
    const args = codec.decode(msg.args);
    if (!Array.isArray(args)) throw hostError('ERR_BAD_MESSAGE', 'eval arguments must be an array');
    const ctx = makeContext(s.deps, scope, msg.from);
    nodeConsole.reset();
    logging = scope;
    loggingNode = s.node;
    // The decoded array itself, ctx in front: a spread would build an iterator per eval.
    args.unshift(ctx);
    returned = Reflect.apply(fn, undefined, args);
  } catch (e) {
    scope.ended = true;
    const result: EvalResult = { type: 'result', id: msg.id, ok: false, error: toWire(e) };
    if (logging === scope) logging = loggingNode = undefined;
    finishSoon(result);
    return;
  }
  void settle(scope, s, returned);
}

type EvalResult = Extract<FromWorker, { type: 'result' }>;

/**
 * The rest of an eval once what it returned has settled. Apart from runEval, so the async function's frame
 * (kept on the heap across the await) holds only what this part needs: it is made once per eval.
 */
async function settle(scope: EvalScope, s: Serving, returned: unknown): Promise<void> {
  let result: EvalResult;
  try {
    const value = await returned;
    // End the scope before encoding: a getter on the result must not be able to write after this point.
    scope.ended = true;
    const bytes = codec.encode(value, 'result');
    if (bytes.length > s.node.maxMessageBytes) throw hostError('ERR_TOO_LARGE', `the result is ${bytes.length} bytes; this node's limit is ${s.node.maxMessageBytes}`);
    result = { type: 'result', id: scope.id, ok: true, value: bytes, writes: writesOf(scope) };
  } catch (e) {
    scope.ended = true;
    result = { type: 'result', id: scope.id, ok: false, error: toWire(e) };
  }
  if (logging === scope) logging = loggingNode = undefined;
  // After an await, so in a microtask: see finishSoon.
  process.nextTick(sendResult, result);
}

/**
 * Sends an eval's result and `idle` in one write, once every microtask has run: work the eval left behind
 * (a dangling promise loop) keeps this worker from saying idle, so it is charged to that eval's time limit,
 * not to the next eval. The result waits for it too (for an eval that leaves nothing behind, the rest of
 * this turn): one write instead of two is one wake-up of the container fewer per eval.
 *
 * How: Node runs the ticks queued during a microtask checkpoint only once that checkpoint has emptied the
 * microtask queue, so a tick queued from a microtask runs after every microtask. Called outside one, this
 * hops into one first. (setImmediate waited the same, at the cost of a trip through the event loop's check
 * phase and its async-hook bookkeeping on every eval.)
 */
function finishSoon(result: EvalResult): void {
  void Promise.resolve().then(() => process.nextTick(sendResult, result));
}

/**
 * Frames that arrived after a `release`, held until the released node's leftovers have run out: the next
 * node starts only in a quiet process, even when the container sends its `become` right behind the release.
 */
let held: ToWorker[] | undefined;

/** Drops the node: once this returns, nothing in this process refers to its Compartment, ctx or requests. */
function release(): void {
  serving = undefined;
  held ??= [];
  // Work the node left behind (a continuation of a reply that came in before the release) runs out first:
  // setImmediate fires only once the microtask queue is empty.
  setImmediate(() => {
    // A heap past half its cap is collected before it is measured: if it stays there, something of the
    // node survived (the container retires the worker); if it does not, the next node starts with room.
    // Below that, garbage is left to V8, which collects it far more cheaply than a forced full collection.
    const { used_heap_size: used, heap_size_limit: limit } = getHeapStatistics();
    if (collect && used > limit / 2) collect();
    send({ type: 'released', heapUsed: getHeapStatistics().used_heap_size });
    const next = held ?? [];
    held = undefined;
    // Nothing waiting yet: build the next node's Compartment now, while nobody waits for it.
    if (!next.length) return void setImmediate(() => (serving || holding() ? undefined : (fresh ??= new Sandbox(globals))));
    // Another release among the held frames holds the rest again, behind its own drain.
    while (next.length && !holding()) handle(next.shift()!);
    if (next.length) held!.push(...next);
  });
}

/** Whether frames are being held (a function: TypeScript cannot see `handle` set it). */
function holding(): boolean {
  return held !== undefined;
}

function handle(msg: ToWorker): void {
  if (held && msg.type !== 'stop') {
    held.push(msg);
    return;
  }
  switch (msg.type) {
    case 'become':
      // The same node again is a change of its policies; another node starts from a fresh Compartment.
      if (serving?.node.id === msg.node.id) serving = serve(msg.node, serving.here, serving.sandbox, serving.pending);
      else serving = serve(msg.node, harden(new NodeRef(msg.node.url)), freshSandbox(), new Map());
      return;
    case 'eval':
      void runEval(msg);
      return;
    case 'release':
      release();
      return;
    case 'reply': {
      const pending = serving?.pending;
      const p = pending?.get(msg.id);
      if (!p) return;
      pending!.delete(msg.id);
      if (msg.ok) p.resolve(msg.value);
      else p.reject(hostError(msg.error.code, msg.error.message, msg.error.remote));
      return;
    }
    case 'stop':
      process.exit(0);
  }
}

listen(handle);

/**
 * A rehearsal of one whole wake before saying ready: become, an eval that reads, writes and logs, one that
 * takes no arguments and returns a number (the codec's scalar paths), their results, idle, release. V8 compiles
 * each function the first time it runs; a pooled worker's first real wake should not pay for that. Frames are
 * built (the eval frames through their binary layout both ways) but go nowhere; requests are answered here.
 */
async function rehearse(): Promise<void> {
  const id = 'a'.repeat(52);
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  const evals: Extract<ToWorker, { type: 'eval' }>[] = [
    {
      type: 'eval',
      id: 0,
      h: 'rehearsal',
      fn: 'async (ctx, a) => { const before = await ctx.ref("x").get(); await ctx.ref("x").set({ a, before, m: new Map([[1, 2n]]) }); ctx.log("warm", a); console.log("%s", a); return { a, t: typeof ctx }; }',
      args: codec.encode([1, 'x', [true]]),
      from: id,
    },
    { type: 'eval', id: 1, h: 'rehearsal-2', fn: '() => 1', args: codec.encode([]), from: id },
  ];
  const next = () => {
    const e = evals.shift();
    if (e) handle(decodeEvalFrame(encodeEvalFrame(e).subarray(4)));
    else handle({ type: 'release' });
  };
  const restore = redirect((msg) => {
    if (msg.type === 'result' && msg.ok) encodeResultIdleFrames(msg);
    else frame(msg);
    if (msg.type === 'request') queueMicrotask(() => handle({ type: 'reply', id: msg.id, ok: true, value: null }));
    if (msg.type === 'idle') next();
    if (msg.type === 'released') done();
  });
  handle({ type: 'become', node: { id, url: `http://localhost/${id}`, parent: id, refs: 'readwrite', log: true, capabilities: [], spawn: false, maxMessageBytes: 1024 } });
  next();
  await finished;
  redirect(restore);
}

void rehearse().then(() => send({ type: 'ready', pid: process.pid }));
