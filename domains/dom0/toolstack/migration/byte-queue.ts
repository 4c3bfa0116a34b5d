// The bytes of a migration stream as they arrive (a file read at once, or a socket's chunks), taken
// in exact amounts as Xen's read_exact() takes them. Nothing is allocated from a length the stream
// claims: a take() is only served from bytes already received.
import assert from 'node:assert/strict';

export class ByteQueue {
  private chunks: Uint8Array[] = [];
  /** Index of the first chunk with unread bytes (chunks before it are spent). */
  private first = 0;
  /** Offset of the first unread byte in chunks[first]. */
  private head = 0;
  /** Bytes received and not yet taken. */
  private queued = 0;
  /** Bytes taken since the start of the stream (error messages give offsets). */
  private taken = 0;

  get length(): number {
    return this.queued;
  }

  get offset(): number {
    return this.taken;
  }

  /** Queues a chunk. It is viewed, not copied: the caller must not reuse its buffer. */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.queued += chunk.length;
  }

  /** The next n bytes: a view when they lie in one chunk, else a copy of exactly n queued bytes. */
  take(n: number): Uint8Array {
    assert(Number.isSafeInteger(n) && n >= 0 && n <= this.queued, `take(${n}) with ${this.queued} queued`);
    this.queued -= n;
    this.taken += n;
    if (n === 0) return new Uint8Array(0);
    const first = this.chunks[this.first];
    if (first.length - this.head >= n) {
      const view = first.subarray(this.head, this.head + n);
      this.advance(first, n);
      return view;
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.chunks[this.first];
      const part = Math.min(chunk.length - this.head, n - filled);
      out.set(chunk.subarray(this.head, this.head + part), filled);
      filled += part;
      this.advance(chunk, part);
    }
    return out;
  }

  /** The unread rest of the first queued chunk, as a view (nothing copied); empty if none. */
  takeChunk(): Uint8Array {
    if (this.queued === 0) return new Uint8Array(0);
    const first = this.chunks[this.first];
    return this.take(first.length - this.head);
  }

  /** Everything still queued (bytes that follow the stream, e.g. xl's next channel message). */
  takeAll(): Uint8Array {
    return this.take(this.queued);
  }

  private advance(chunk: Uint8Array, n: number): void {
    this.head += n;
    if (this.head === chunk.length) {
      this.first++;
      this.head = 0;
      // Drop spent chunks in bulk, so a long queue costs O(1) per chunk rather than a shift each.
      if (this.first >= 64 && this.first * 2 >= this.chunks.length) {
        this.chunks = this.chunks.slice(this.first);
        this.first = 0;
      }
    }
  }
}
