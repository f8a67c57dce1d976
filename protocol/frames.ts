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

  /**
   * Feeds the first `n` bytes of a read buffer that is read into again after this call: each whole frame is
   * handed to `each` as a view into it, valid only until `each` returns; only a frame cut short is copied.
   * A stream read whose frames are whole (nearly every read of a small frame) is thus copied nowhere.
   */
  read(buffer: Buffer, n: number, each: (frame: Buffer) => void): void {
    if (this.#size > 0) {
      for (const frame of this.push(Buffer.from(buffer.subarray(0, n)))) each(frame);
      return;
    }
    let at = 0;
    try {
      while (n - at >= 4) {
        const length = buffer.readUInt32BE(at);
        if (length > this.#max) throw new KeynodeError('ERR_TOO_LARGE', `frame of ${length} bytes exceeds the ${this.#max}-byte limit`);
        if (n - at - 4 < length) break;
        const start = at + 4;
        at = start + length;
        each(buffer.subarray(start, at));
      }
    } finally {
      // Even when `each` throws, the stream stays in step: the rest of this read goes through push() (whole
      // frames in it are dropped with the throw; a partial one waits for the rest of its bytes).
      if (at < n) this.push(Buffer.from(buffer.subarray(at, n)));
    }
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
