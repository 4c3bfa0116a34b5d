// The bytes of a migration stream as they arrive (a file read at once, or a socket's chunks), taken
// in exact amounts as Xen's read_exact() takes them. Nothing is allocated from a length the stream
// claims: a take() is only served from bytes already received.
//
// A chunk may be lent (pushed with a release callback): its owner will reuse its buffer once the
// queue gives it back. take() hands out views of chunks, so a lent chunk is given back only when
// it has been read to its end AND the consumer has said it is done with every view it took
// (settle()) - or, for the unread rest of a chunk the consumer cannot wait for, after keepUnread()
// has copied that rest into memory of the queue's own. That memory is two assembly buffers used in
// turn and reused (a big guest's stream is 4 MiB PAGE_DATA records cut by 64 KiB-1 MiB socket
// reads: each record's bytes are copied once, into memory already touched, rather than copied
// into a new buffer per chunk and again into a new one per record); a take() that starts in the
// kept bytes appends the rest of its bytes there and returns a view. Such views are valid until
// keepUnread() next starts keeping afresh - the one after next, at the earliest (a reader's
// lent-chunk contract: until its next push).
import assert from 'node:assert/strict';
import { copyOf } from './sr-record.ts';

interface Chunk {
  readonly bytes: Uint8Array;
  /** A lent chunk's way back to its owner (called once); undefined for a chunk that is the queue's. */
  readonly release?: () => void;
  /** A view of the assembly buffer asm[turn] (keepUnread()), the queue's own. */
  readonly kept?: true;
}

export class ByteQueue {
  private chunks: Chunk[] = [];
  /** Index of the first chunk with unread bytes (chunks before it are spent). */
  private first = 0;
  /** Offset of the first unread byte in chunks[first]. */
  private head = 0;
  /** Bytes received and not yet taken. */
  private queued = 0;
  /** Bytes taken since the start of the stream (error messages give offsets). */
  private taken = 0;
  /** Lent chunks read to their end (or copied), given back at the next settle(). */
  private spent: (() => void)[] = [];
  /** Chunks before this index are none of them lent any more (keepUnread() has been there). */
  private ownedTo = 0;
  /** The assembly buffers (see the top), the one in use, and how much of it is in use. */
  private readonly asm: Uint8Array[] = [new Uint8Array(0), new Uint8Array(0)];
  private turn = 0;
  private asmUsed = 0;

  get length(): number {
    return this.queued;
  }

  get offset(): number {
    return this.taken;
  }

  /**
   * Queues a chunk. It is viewed, not copied. Without `release` it is the queue's from now on (the
   * caller must not reuse its buffer); with it, it is lent: the queue calls `release` exactly once,
   * after which the owner may overwrite it.
   */
  push(chunk: Uint8Array, release?: () => void): void {
    if (chunk.length === 0) {
      release?.();
      return;
    }
    this.chunks.push({ bytes: chunk, release });
    this.queued += chunk.length;
  }

  /** The next n bytes: a view when they lie in one chunk, else a copy of exactly n queued bytes. */
  take(n: number): Uint8Array {
    assert(Number.isSafeInteger(n) && n >= 0 && n <= this.queued, `take(${n}) with ${this.queued} queued`);
    this.queued -= n;
    this.taken += n;
    if (n === 0) return new Uint8Array(0);
    const first = this.chunks[this.first];
    if (first.bytes.length - this.head >= n) {
      const view = first.bytes.subarray(this.head, this.head + n);
      this.advance(first, n);
      return view;
    }
    if (this.isKeptTail(first)) {
      // The kept bytes are at the end of the assembly buffer: the rest goes after them.
      const start = first.bytes.byteOffset + this.head;
      const have = first.bytes.length - this.head;
      this.advance(first, have);
      const parts: Uint8Array[] = [];
      for (let want = n - have; want > 0;) {
        const chunk = this.chunks[this.first];
        const part = Math.min(chunk.bytes.length - this.head, want);
        parts.push(chunk.bytes.subarray(this.head, this.head + part));
        want -= part;
        this.advance(chunk, part);
      }
      return this.appendKept(start, parts);
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.chunks[this.first];
      const part = Math.min(chunk.bytes.length - this.head, n - filled);
      out.set(chunk.bytes.subarray(this.head, this.head + part), filled);
      filled += part;
      this.advance(chunk, part);
    }
    return out;
  }

  /** The next n bytes without taking them: a view when they lie in one chunk, else a copy. */
  peek(n: number): Uint8Array {
    assert(Number.isSafeInteger(n) && n >= 0 && n <= this.queued, `peek(${n}) with ${this.queued} queued`);
    const first = this.chunks[this.first];
    if (n === 0) return new Uint8Array(0);
    if (first.bytes.length - this.head >= n) return first.bytes.subarray(this.head, this.head + n);
    const out = new Uint8Array(n);
    let filled = 0;
    for (let i = this.first; filled < n; i++) {
      const c = this.chunks[i].bytes;
      const from = i === this.first ? this.head : 0;
      const part = Math.min(c.length - from, n - filled);
      out.set(c.subarray(from, from + part), filled);
      filled += part;
    }
    return out;
  }

  /** Unread bytes in the first queued chunk (what take() can give as a view of it). */
  get firstChunkLength(): number {
    return this.queued === 0 ? 0 : this.chunks[this.first].bytes.length - this.head;
  }

  /** The unread rest of the first queued chunk, as a view (nothing copied); empty if none. */
  takeChunk(): Uint8Array {
    if (this.queued === 0) return new Uint8Array(0);
    const first = this.chunks[this.first];
    return this.take(first.bytes.length - this.head);
  }

  /** Everything still queued (bytes that follow the stream, e.g. xl's next channel message). */
  takeAll(): Uint8Array {
    return this.take(this.queued);
  }

  /** The consumer holds no view of what it took so far: every lent chunk read to its end goes back. */
  settle(): void {
    const spent = this.spent;
    this.spent = [];
    for (const release of spent) release();
  }

  /**
   * The lent chunks' unread bytes become the queue's own (copied), so that their owners may have
   * them back at the next settle() although they were not read to their end.
   */
  keepUnread(): void {
    if (this.keepAssembled()) return;
    for (let i = Math.max(this.first, this.ownedTo); i < this.chunks.length; i++) {
      const c = this.chunks[i];
      if (!c.release) continue;
      this.chunks[i] = { bytes: copyOf(c.bytes, i === this.first ? this.head : 0) };
      if (i === this.first) this.head = 0;
      this.spent.push(c.release);
    }
    this.ownedTo = this.chunks.length;
  }

  /** Whether chunk c ends where the assembly buffer in use ends (bytes can be appended to it). */
  private isKeptTail(c: Chunk): boolean {
    return c.kept === true && c.bytes.buffer === this.asm[this.turn].buffer && c.bytes.byteOffset + c.bytes.length === this.asmUsed;
  }

  /**
   * Appends parts to the assembly buffer in use (a bigger one when they do not fit: the bytes from
   * `start` on are copied into it, those before may still be viewed); returns the bytes from start.
   */
  private appendKept(start: number, parts: readonly Uint8Array[]): Uint8Array {
    let add = 0;
    for (const p of parts) add += p.length;
    let buf = this.asm[this.turn];
    if (this.asmUsed + add > buf.length) {
      const grown = new Uint8Array(Math.max(2 * buf.length, this.asmUsed - start + add));
      grown.set(buf.subarray(start, this.asmUsed));
      this.asmUsed -= start;
      start = 0;
      this.asm[this.turn] = buf = grown;
    }
    for (const p of parts) {
      buf.set(p, this.asmUsed);
      this.asmUsed += p.length;
    }
    return buf.subarray(start, this.asmUsed);
  }

  /**
   * keepUnread() into the assembly buffers, when every unread chunk is lent but the first, which
   * may be the kept tail: they become one kept chunk. False (nothing done) otherwise.
   */
  private keepAssembled(): boolean {
    if (this.queued === 0) return false;
    const first = this.chunks[this.first];
    const append = this.isKeptTail(first);
    if (!append && !first.release) return false;
    for (let i = this.first + 1; i < this.chunks.length; i++) if (!this.chunks[i].release) return false;
    const parts: Uint8Array[] = [];
    let start: number;
    if (append) {
      start = first.bytes.byteOffset + this.head;
    } else {
      // Afresh, in the other buffer: views of this one handed out since the last keep stay valid.
      this.turn ^= 1;
      this.asmUsed = 0;
      start = 0;
      parts.push(first.bytes.subarray(this.head));
      this.spent.push(first.release!);
    }
    for (let i = this.first + 1; i < this.chunks.length; i++) {
      parts.push(this.chunks[i].bytes);
      this.spent.push(this.chunks[i].release!);
    }
    this.chunks[this.first] = { bytes: this.appendKept(start, parts), kept: true };
    this.chunks.length = this.first + 1;
    this.head = 0;
    this.ownedTo = this.chunks.length;
    return true;
  }

  /** Drops everything unread (the stream is abandoned); lent chunks go back at once. */
  discard(): void {
    for (let i = this.first; i < this.chunks.length; i++) {
      const release = this.chunks[i].release;
      if (release) this.spent.push(release);
    }
    this.taken += this.queued;
    this.queued = 0;
    this.chunks = [];
    this.first = 0;
    this.head = 0;
    this.ownedTo = 0;
    this.settle();
  }

  private advance(chunk: Chunk, n: number): void {
    this.head += n;
    if (this.head === chunk.bytes.length) {
      if (chunk.release) this.spent.push(chunk.release);
      this.first++;
      this.head = 0;
      // Drop spent chunks in bulk, so a long queue costs O(1) per chunk rather than a shift each.
      if (this.first >= 64 && this.first * 2 >= this.chunks.length) {
        this.chunks = this.chunks.slice(this.first);
        this.ownedTo = Math.max(0, this.ownedTo - this.first);
        this.first = 0;
      }
    }
  }
}
