/**
 * @module node-worker/channel
 * The worker's end of the stdio channel: frames in on fd 0, frames out on fd 1. Anything else the worker
 * prints goes to stderr, which the container keeps for diagnostics.
 *
 * Neither end goes through Node's stream machinery: with a hundred workers taking turns, each eval finds its
 * worker's caches cold, and the Readable/Writable paths (push, addChunk, emit, writeOrBuffer, their ticks)
 * were a quarter of a worker's CPU per eval. Reads land in one buffer handed to a callback (net.Socket's
 * `onread`); writes are one blocking write(2) on fd 1, as Node itself does for stdout pipes on Linux.
 */
import { writeSync } from 'node:fs';
import { Socket, type OnReadOpts, type SocketConstructorOpts } from 'node:net';
import { decode, encode } from '../protocol/codec.js';
import { decodeEvalFrame, encodeResultIdleFrames, isEvalFrame } from '../protocol/eval-frames.js';
import { encodeFrame, FrameReader } from '../protocol/frames.js';
import type { FromWorker, ToWorker } from '../protocol/messages.js';

// Generous: the container enforces each node's own message cap on what it forwards.
const MAX_FRAME = 256 * 1024 * 1024;

/** A message as the bytes of its frame. */
export function frame(msg: FromWorker): Buffer {
  return encodeFrame(encode(msg));
}

/** Once a write to fd 1 would block without waiting (a non-blocking pipe), everything goes through the stream, in order. */
let streamed = false;

function write(bytes: Buffer): void {
  let at = 0;
  while (!streamed && at < bytes.length) {
    try {
      at += writeSync(1, bytes, at);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      streamed = true;
    }
  }
  if (at < bytes.length) process.stdout.write(at ? bytes.subarray(at) : bytes);
}

/**
 * Where messages go: the container. The boot rehearsal (main.ts) points it elsewhere for a moment, so every
 * path of a real wake has run once before the worker says it is ready.
 */
export let send = (msg: FromWorker): void => {
  write(frame(msg));
};

export function redirect(to: (msg: FromWorker) => void): (msg: FromWorker) => void {
  const before = send;
  send = to;
  redirected = to !== stdoutSend;
  return before;
}

const stdoutSend = send;
let redirected = false;

/**
 * An eval's result and the `idle` behind it, in one write: each write to the pipe is a system call here and
 * a wake-up of the container there, which on a virtual machine costs more than the rest of a small eval.
 * An ok result goes in the eval frames' binary layout (protocol/eval-frames.ts), an error as MessagePack.
 */
export function sendResult(result: Extract<FromWorker, { type: 'result' }>): void {
  if (redirected) {
    send(result);
    send({ type: 'idle' });
  } else write(result.ok ? encodeResultIdleFrames(result) : Buffer.concat([frame(result), frame({ type: 'idle' })]));
}

export function listen(onMessage: (msg: ToWorker) => void): void {
  const reader = new FrameReader(MAX_FRAME);
  const each = (frame: Buffer): void => onMessage(isEvalFrame(frame) ? decodeEvalFrame(frame) : (decode(new Uint8Array(frame)) as ToWorker));
  // `onread` is documented for socket.connect(); the constructor takes it too, but the types do not say so.
  const options: SocketConstructorOpts & { onread: OnReadOpts } = {
    fd: 0,
    readable: true,
    writable: false,
    onread: {
      buffer: Buffer.allocUnsafe(64 * 1024),
      // `into` is that Buffer (typed as a Uint8Array: Node hands back what it was given).
      callback(n: number, into: Uint8Array): boolean {
        // Frames are views into the read buffer, read into again next time: both decoders copy what they keep
        // (into plain Uint8Arrays, so no Buffer, whose prototype lockdown does not freeze, and no view on a
        // shared pool ever reaches user code through a decoded value).
        reader.read(into as Buffer, n, each);
        return true; // keep reading
      },
    },
  };
  const input = new Socket(options);
  // The container closing our stdin means it is gone or wants us gone.
  input.on('end', () => process.exit(0));
  input.on('error', () => process.exit(0));
}
