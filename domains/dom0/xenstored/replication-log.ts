// The seed's replication log (not in Xen: real xenstored has no standbys): a byte ring in a
// SharedArrayBuffer with one writer (the primary xenstored) and N readers (its standbys, on other
// threads or, in lockstep, other tasks). Records are whole batches; the writer publishes a batch
// by moving `tail` after its last byte, so a reader never sees half of one. A reader frees its part
// of the ring by moving its own `head`; the writer never overwrites bytes a reader has not read.
//
// Positions are byte counts since the log began, kept modulo 2^32 in Int32 slots (unsigned
// differences stay right while the ring is smaller than 2^31 bytes).

/** Header slots (Int32): the published tail, the primary's liveness, the reader count, then one head per reader. */
const TAIL = 0;
const DEAD = 1;
const READERS = 2;
const HEADS = 3;

/** A broken invariant (messages built only then: checks sit on hot paths). */
function fail(what: string): never {
  throw new Error(`replication log: ${what}`);
}

function check(ok: boolean, what: string): asserts ok {
  if (!ok) fail(what);
}

/** The shared part: header and ring, in one SharedArrayBuffer another thread can be given. */
export interface ReplicationLogShared {
  readonly sab: SharedArrayBuffer;
  readonly capacity: number;
}

/** 16 MiB by default: a 100k-node tree's whole state fits, as it goes out at every new primary. */
export function createReplicationLog(readers: number, capacity = 1 << 24): ReplicationLogShared {
  if (!(readers >= 1 && readers <= 16)) fail(`${readers} readers (1 to 16)`);
  if (!(capacity >= 4096 && capacity <= 1 << 30 && (capacity & (capacity - 1)) === 0)) fail(`capacity ${capacity} is not a power of two in [4 KiB, 1 GiB]`);
  const header = (HEADS + readers) * 4;
  const sab = new SharedArrayBuffer(header + capacity);
  new Int32Array(sab, 0, HEADS + readers)[READERS] = readers;
  return { sab, capacity };
}

class Ring {
  readonly h: Int32Array;
  readonly data: Uint8Array;
  readonly readers: number;
  readonly capacity: number;
  /** capacity - 1: a position modulo the ring. */
  readonly mask: number;

  constructor(shared: ReplicationLogShared) {
    const readers = new Int32Array(shared.sab, 0, HEADS)[READERS];
    this.h = new Int32Array(shared.sab, 0, HEADS + readers);
    this.readers = readers;
    this.capacity = shared.capacity;
    this.mask = shared.capacity - 1;
    this.data = new Uint8Array(shared.sab, (HEADS + readers) * 4, shared.capacity);
  }

  tail(): number {
    return Atomics.load(this.h, TAIL) >>> 0;
  }

  head(i: number): number {
    return Atomics.load(this.h, HEADS + i) >>> 0;
  }

  /** The primary died: readers stop waiting for more. */
  dead(): boolean {
    return Atomics.load(this.h, DEAD) !== 0;
  }
}

/** The primary's end. */
export class ReplicationLogWriter extends Ring {
  /**
   * Called when the ring has too little room for a batch: must make some readers advance (run
   * in-process standbys, or wait for standby threads). Returns false if it cannot.
   */
  makeRoom: (needed: number) => boolean = () => false;
  /** Told after every publish (wakes standby tasks or threads). */
  onPublish: (() => void) | undefined;
  /** The tail as this writer, its only writer, last stored it. */
  private end = 0;
  /**
   * Bytes that may be written without looking at the readers' heads again: the free space when
   * last looked (readers only ever free more), so most publishes read no head at all.
   */
  room: number;
  /** Bytes published since standby threads were last woken. */
  private unwoken = 0;
  /** Set by markDead(): this writer's own copy (reading the shared word costs every publish). */
  private died = false;
  /** Bytes written in place after the tail and not yet published (place()). */
  private placed = 0;

  constructor(shared: ReplicationLogShared) {
    super(shared);
    this.room = this.capacity - this.used();
    this.end = this.tail();
  }

  /** Bytes the slowest reader has not yet read. */
  used(): number {
    const tail = this.tail();
    let most = 0;
    for (let i = 0; i < this.readers; i++) {
      const lag = (tail - this.head(i)) >>> 0;
      if (lag > this.capacity) fail(`reader ${i} is ${lag} bytes behind a ${this.capacity}-byte ring (head past tail?)`);
      most = Math.max(most, lag);
    }
    return most;
  }

  /** Looks at the readers' heads again: how much may be written now. */
  refreshRoom(): number {
    this.room = this.capacity - this.used();
    return this.room;
  }

  /**
   * Appends the first `length` bytes of `bytes` and publishes them (a batch, or a part of one
   * too big for the ring). Once this returns, every standby can read them: the daemon
   * acknowledges a batch's requests only after this (its replies leave in the flush that follows).
   * Bytes placed in the ring (place()) must have been published first: they come before these.
   */
  publish(bytes: Uint8Array, length = bytes.length): void {
    if (this.died) fail('publish after the primary died');
    if (length > bytes.length) fail(`publish of ${length} bytes from ${bytes.length}`);
    if (this.placed !== 0) fail(`publish with ${this.placed} bytes placed and not published`);
    let off = 0;
    while (off < length) {
      if (this.room === 0 && this.refreshRoom() === 0) {
        if (!this.makeRoom(Math.min(this.capacity, length - off))) fail(`ring full (${this.capacity} bytes) and no standby reads`);
        check(this.refreshRoom() > 0, 'makeRoom freed nothing');
      }
      const n = Math.min(this.room, length - off);
      const at = this.end & this.mask;
      const first = Math.min(n, this.capacity - at);
      // Plain views (Buffer.copy and Buffer.subarray allocate more and cost more per batch).
      this.data.set(new Uint8Array(bytes.buffer, bytes.byteOffset + off, first), at);
      if (first < n) this.data.set(new Uint8Array(bytes.buffer, bytes.byteOffset + off + first, n - first), 0);
      this.advance(n);
      off += n;
    }
    this.published();
  }

  /**
   * Claims `n` more bytes of the ring after those placed so far and not yet published, for the
   * caller to write in place (data[(position + i) & mask]: they may wrap around); returns their
   * first position, or -1 if the ring has no room for them now (nothing is claimed: the caller
   * stages the rest of its batch elsewhere and publishes it with publish()). Readers see none of
   * it until publishPlaced(), so a batch placed in part and dropped (unplace()) was never there.
   */
  place(n: number): number {
    if (this.placed + n > this.room && this.placed + n > this.refreshRoom()) return -1;
    const at = (this.end + this.placed) >>> 0;
    this.placed += n;
    return at;
  }

  /** Publishes the bytes placed in the ring (see publish() for what that promises). */
  publishPlaced(): void {
    if (this.died) fail('publish after the primary died');
    if (this.placed === 0) return;
    // place() never claimed more than the room it saw.
    check(this.placed <= this.room, 'placed past the room');
    const n = this.placed;
    this.placed = 0;
    this.advance(n);
    this.published();
  }

  /** Forgets the bytes placed and not published (a batch dropped: it never reaches a reader). */
  unplace(): void {
    this.placed = 0;
  }

  /** Moves the tail over `n` written bytes: readers may read them from now on. */
  private advance(n: number): void {
    this.end = (this.end + n) >>> 0;
    // The bytes are in place before the tail says so (Atomics.store is sequentially consistent).
    Atomics.store(this.h, TAIL, this.end | 0);
    this.room -= n;
    this.unwoken += n;
  }

  private published(): void {
    // Standby threads look every few milliseconds on their own; waking them (a futex call) per
    // batch would cost the primary more than the rest of publishing. They are woken early each
    // time another quarter of the ring has been written.
    if (this.unwoken >= this.capacity / 4) {
      this.unwoken = 0;
      Atomics.notify(this.h, TAIL);
    }
    this.onPublish?.();
  }

  /** The primary is gone (what a standby's watchdog would see): readers stop waiting. */
  markDead(): void {
    this.died = true;
    Atomics.store(this.h, DEAD, 1);
    Atomics.notify(this.h, TAIL);
  }
}

/** A standby's end: reader `index` of the log. */
export class ReplicationLogReader extends Ring {
  constructor(shared: ReplicationLogShared, readonly index: number) {
    super(shared);
    if (!(index >= 0 && index < this.readers)) fail(`reader ${index} of ${this.readers}`);
  }

  /** Published bytes not yet read. */
  available(): number {
    const n = (this.tail() - this.head(this.index)) >>> 0;
    if (n > this.capacity) fail(`reader ${this.index}: ${n} bytes available in a ${this.capacity}-byte ring`);
    return n;
  }

  /** Copies out everything published and not read yet, and frees it for the writer. */
  take(): Uint8Array {
    const n = this.available();
    if (n === 0) return new Uint8Array(0);
    const head = this.head(this.index);
    const at = head & (this.capacity - 1);
    const out = new Uint8Array(n);
    const first = Math.min(n, this.capacity - at);
    out.set(this.data.subarray(at, at + first));
    if (first < n) out.set(this.data.subarray(0, n - first), first);
    Atomics.store(this.h, HEADS + this.index, (head + n) | 0);
    return out;
  }

  /**
   * Has the OS give every page of the ring its memory now (standby 0 does, as its thread starts),
   * so that the primary's first pass over a new ring does not take a page fault on its own thread
   * every 4 KiB (some microseconds each: a sixth of what publishing a small batch costs). A
   * compare-exchange of 0 for 0 is a write to the OS and leaves every byte as it was, whatever the
   * writer does meanwhile.
   */
  mapIn(): void {
    const words = new Int32Array(this.data.buffer, this.data.byteOffset, this.capacity / 4);
    const from = (this.tail() & this.mask) >>> 2;
    for (let i = 0; i < words.length; i += 1024) Atomics.compareExchange(words, (from + i) % words.length, 0, 0);
    // The ring starts inside a page, so its first and last pages each hold part of one 4 KiB step.
    Atomics.compareExchange(words, 0, 0, 0);
    Atomics.compareExchange(words, words.length - 1, 0, 0);
  }

  /** Blocks this thread until something is published or the primary dies (worker threads only). */
  wait(timeoutMs: number): void {
    const tail = Atomics.load(this.h, TAIL);
    if ((tail >>> 0) !== this.head(this.index) || this.dead()) return;
    Atomics.wait(this.h, TAIL, tail, timeoutMs);
  }
}
