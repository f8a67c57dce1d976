/**
 * @module node-worker/channel
 * The worker's end of the stdio channel: frames in on fd 0, frames out on fd 1. Anything else the worker
 * prints goes to stderr, which the container keeps for diagnostics.
 */
import { decode, encode } from '../protocol/codec.js';
import { encodeFrame, FrameReader } from '../protocol/frames.js';
import type { FromWorker, ToWorker } from '../protocol/messages.js';

// Generous: the container enforces each node's own message cap on what it forwards.
const MAX_FRAME = 256 * 1024 * 1024;

/** A message as the bytes of its frame. */
export function frame(msg: FromWorker): Buffer {
  return encodeFrame(encode(msg));
}

/**
 * Where messages go: the container. The boot rehearsal (main.ts) points it elsewhere for a moment, so every
 * path of a real wake has run once before the worker says it is ready.
 */
export let send = (msg: FromWorker): void => {
  process.stdout.write(frame(msg));
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
 * Several messages in one write: each write to the pipe is a system call here and a wake-up of the
 * container there, which on a virtual machine costs more than the rest of a small eval.
 */
export function sendAll(msgs: FromWorker[]): void {
  if (redirected) for (const m of msgs) send(m);
  else process.stdout.write(Buffer.concat(msgs.map(frame)));
}

export function listen(onMessage: (msg: ToWorker) => void): void {
  const reader = new FrameReader(MAX_FRAME);
  process.stdin.on('data', (chunk: Buffer) => {
    for (const frame of reader.push(chunk)) {
      // A plain copy, so no Buffer (whose prototype lockdown does not freeze) and no view on a shared pool
      // ever reaches user code through a decoded value.
      onMessage(decode(new Uint8Array(frame)) as ToWorker);
    }
  });
  // The container closing our stdin means it is gone or wants us gone.
  process.stdin.on('end', () => process.exit(0));
}
