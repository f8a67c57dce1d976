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

export function send(msg: FromWorker): void {
  process.stdout.write(encodeFrame(encode(msg)));
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
