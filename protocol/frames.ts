/**
 * @module protocol/frames
 * Length-prefixed MessagePack frames for the container ↔ worker stdio channel: a 4-byte big-endian
 * length, then that many bytes of MessagePack. A frame past `maxFrameBytes` is a protocol violation.
 */
import { KeynodeError } from './errors.js';

export function encodeFrame(payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(4 + payload.length);
  out.writeUInt32BE(payload.length, 0);
  out.set(payload, 4);
  return out;
}

/** Accumulates stream chunks and yields whole frame payloads. */
export class FrameReader {
  readonly #max: number;
  #chunks: Buffer[] = [];
  #size = 0;

  constructor(maxFrameBytes: number) {
    this.#max = maxFrameBytes;
  }

  /** Feeds a chunk; returns the payloads it completed. Throws ERR_TOO_LARGE on an oversized frame. */
  push(chunk: Buffer): Buffer[] {
    this.#chunks.push(chunk);
    this.#size += chunk.length;
    const frames: Buffer[] = [];
    while (this.#size >= 4) {
      const head = this.#peek(4);
      const length = head.readUInt32BE(0);
      if (length > this.#max) throw new KeynodeError('ERR_TOO_LARGE', `frame of ${length} bytes exceeds the ${this.#max}-byte limit`);
      if (this.#size < 4 + length) break;
      const all = this.#take(4 + length);
      frames.push(all.subarray(4));
    }
    return frames;
  }

  #peek(n: number): Buffer {
    if (this.#chunks[0]!.length >= n) return this.#chunks[0]!;
    const joined = Buffer.concat(this.#chunks);
    this.#chunks = [joined];
    return joined;
  }

  #take(n: number): Buffer {
    const first = this.#peek(n);
    const out = first.subarray(0, n);
    const rest = first.subarray(n);
    this.#chunks[0] = rest;
    if (rest.length === 0) this.#chunks.shift();
    this.#size -= n;
    return out;
  }
}
