/**
 * @module container/fleet/frame-bounds
 * The bounds a node's sandbox states, applied by the container to what its worker sends. The worker applies
 * most of them itself, but a worker whose language sandbox broke applies none: everything here assumes the
 * frame was written by the node's code. Frames an honest worker may also send (a long stack, a chatty eval,
 * a call bigger than the node's own limit) are cut or refused; frames only a broken worker sends are the
 * caller's reason to kill it.
 */
import { KeynodeError, type WireError, type WorkerRequest } from '../../protocol/index.js';
import { TokenBucket } from './rate.js';

/** The worker's own caps on a log line and on lines per eval (node-worker/context.ts), plus its note that it dropped some. */
export const MAX_LOG_LINE = 8 * 1024;
const TRUNCATED = '…[truncated]';
export const MAX_LOG_LINES_PER_EVAL = 1001;
/** Log lines a worker may send per second (and at once), whatever its evals: a flood costs the store and its readers. */
export const LOG_LINES_PER_SECOND = 1000;
export const LOG_CHARS_PER_SECOND = 1024 * 1024;

/** Log lines from one worker: each eval's cap, a rate per worker, and a count of what was dropped. */
export class LogAllowance {
  readonly #lines = new TokenBucket(LOG_LINES_PER_SECOND, LOG_LINES_PER_SECOND);
  readonly #chars = new TokenBucket(LOG_CHARS_PER_SECOND, LOG_CHARS_PER_SECOND);
  #thisEval = 0;
  #dropped = 0;

  startEval(): void {
    this.#thisEval = 0;
    this.#dropped = 0;
  }

  /** The line as it may be kept (cut to the line cap), or undefined when it is dropped. */
  admit(line: string): string | undefined {
    const kept = line.length > MAX_LOG_LINE + TRUNCATED.length ? `${line.slice(0, MAX_LOG_LINE)}${TRUNCATED}` : line;
    if (++this.#thisEval > MAX_LOG_LINES_PER_EVAL || !this.#lines.take(1) || !this.#chars.take(kept.length)) {
      this.#dropped++;
      return undefined;
    }
    return kept;
  }

  /** A line that tells the node's readers how many of this eval's lines were dropped, if any were. */
  endEval(): string | undefined {
    if (!this.#dropped) return undefined;
    const n = this.#dropped;
    this.#dropped = 0;
    return `[keynode] ${n} log line${n === 1 ? '' : 's'} of this eval dropped: at most ${MAX_LOG_LINES_PER_EVAL - 1} per eval, and ${LOG_LINES_PER_SECOND} lines or ${LOG_CHARS_PER_SECOND / 1024} KiB a second`;
  }
}

/** A call the node makes carries a message of its own: it is held to the node's `maxMessageBytes` like an eval it receives. */
export function requestTooLarge(req: WorkerRequest, maxMessageBytes: number): KeynodeError | undefined {
  let size = 0;
  if (req.op === 'at') size = Buffer.byteLength(req.fn, 'utf8') + req.args.length;
  else if (req.op === 'cap') size = req.args.length;
  if (size <= maxMessageBytes) return undefined;
  return new KeynodeError('ERR_TOO_LARGE', `a call of ${size} bytes (function and arguments); this node sends at most ${maxMessageBytes} (sandbox.maxMessageBytes)`);
}

/** A result value past the node's bound: an honest worker refuses it itself, so one that sends it is not honest. */
export function resultTooLarge(value: Uint8Array, maxMessageBytes: number): KeynodeError | undefined {
  if (value.length <= maxMessageBytes) return undefined;
  return new KeynodeError('ERR_TOO_LARGE', `the result is ${value.length} bytes; this node's limit is ${maxMessageBytes} (sandbox.maxMessageBytes)`);
}

const bytes = (s: string | undefined): number => (s === undefined ? 0 : Buffer.byteLength(s, 'utf8'));
/** Room for the error's keys and framing, beyond its strings. */
const ERROR_OVERHEAD = 96;

/**
 * A thrown error cut to fit the node's `maxMessageBytes`: the stack goes first, then the messages. An honest
 * worker's error can be longer than a small bound (a 16 KiB stack), so this cuts rather than refuses.
 */
export function fitError(e: WireError, maxMessageBytes: number): WireError {
  const out: WireError = { code: e.code, message: e.message };
  if (e.remote) out.remote = { ...e.remote };
  const r = out.remote;
  const size = () => ERROR_OVERHEAD + bytes(out.message) + bytes(r?.name) + bytes(r?.message) + bytes(r?.code) + bytes(r?.stack);
  const cut = (s: string): string => {
    // Each UTF-16 unit is at least one byte of UTF-8: cutting `excess` units (and the marker's) is always enough.
    const excess = size() - maxMessageBytes + TRUNCATED.length;
    return excess >= s.length ? '' : `${s.slice(0, s.length - excess)}${TRUNCATED}`;
  };
  if (size() <= maxMessageBytes) return out;
  if (r?.stack !== undefined) r.stack = cut(r.stack);
  if (r && size() > maxMessageBytes) r.message = cut(r.message);
  if (size() > maxMessageBytes) out.message = cut(out.message);
  if (r?.code !== undefined && size() > maxMessageBytes) r.code = cut(r.code);
  if (r && size() > maxMessageBytes) r.name = cut(r.name);
  return out;
}
