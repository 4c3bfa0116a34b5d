// The two byte streams between `xl migrate` and `xl migrate-receive` (xl's send_fd and recv_fd):
// whatever carries them - a child's stdin/stdout (the ssh command), or a socket to another host's
// control socket - feeds received chunks in with push()/end() and takes written bytes through the
// writer it was made with. Reads take exact amounts, as xl's read_exact() does.
//
// Lending, both ways: a writer may lend its bytes (write with a release callback, as the stream
// writer does with its PAGE_DATA buffers) - the transport gives them back once neither it nor the
// other side will read them again, and until then the writer leaves them alone; without release
// the bytes are the transport's to keep. A transport may lend what it delivers the same way
// (push with a release): the pipe gives a chunk back once its reader has read past it and reads
// again, so what readSome() returns is the reader's only until its next call on the pipe.
import { ByteQueue } from '../domains/dom0/toolstack/migration/byte-queue.ts';
import { copyOf } from '../domains/dom0/toolstack/migration/sr-record.ts';

export class MigratePipeClosed extends Error {}

export interface PipeWriter {
  /**
   * Queues bytes; false when the transport wants the writer to wait for drain(). With `release`
   * the bytes are lent: the transport calls it once (however the bytes end: read, written out,
   * dropped) when nobody will read them again.
   */
  write(bytes: Uint8Array, release?: () => void): boolean;
  /** Resolves once the transport took what was queued (or at once if it is gone). */
  drain(): Promise<void>;
  /** No more bytes from this side. */
  end(): void;
}

export class MigratePipe {
  private readonly q = new ByteQueue();
  private ended = false;
  private error: Error | undefined;
  private waiter: (() => void) | undefined;
  private full = false;
  /** This side closed: nothing more is read, what arrives goes back at once. */
  private dropped = false;

  constructor(private readonly out: PipeWriter, readonly name = 'migration stream') {}

  /**
   * Bytes from the other side, viewed rather than copied: without `release` the transport must not
   * reuse the buffer; with it, it may once the pipe has called it.
   */
  push(chunk: Uint8Array, release?: () => void): void {
    if (this.dropped) {
      release?.();
      return;
    }
    this.q.push(chunk, release);
    this.wake();
  }

  /** The other side closed (or the transport failed: `error`). */
  end(error?: Error): void {
    this.ended = true;
    this.error ??= error;
    this.wake();
  }

  get closed(): boolean {
    return this.ended;
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  private async more(): Promise<void> {
    await new Promise<void>((r) => (this.waiter = r));
  }

  /** Exactly n bytes (a copy of the reader's own); rejects if the other side closes first. */
  async readExact(n: number, what: string): Promise<Uint8Array> {
    this.q.settle();
    while (this.q.length < n) {
      if (this.ended) {
        throw new MigratePipeClosed(`${this.name}: ${this.error ? this.error.message : 'unexpected end of file'} reading ${what} (${this.q.length} of ${n} bytes)`);
      }
      await this.more();
    }
    return copyOf(this.q.take(n));
  }

  /** Bytes received and not yet read (a transport's flow control may look). */
  get queued(): number {
    return this.q.length;
  }

  /**
   * What has arrived (waiting for something), a chunk at a time as the transport delivered it -
   * not copied, nor joined with the chunks after it - or null once the other side closed. The
   * bytes may be lent: they are the caller's only until its next read, unread() or close().
   */
  async readSome(): Promise<Uint8Array | null> {
    this.q.settle();
    while (this.q.length === 0) {
      if (this.ended) return null;
      await this.more();
    }
    return this.q.takeChunk();
  }

  /** Puts bytes back in front (what followed a stream's END belongs to the next read). */
  unread(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    const rest = copyOf(this.q.takeAll());
    this.q.settle();
    this.q.push(copyOf(bytes));
    if (rest.length) this.q.push(rest);
  }

  /** Sends bytes; with `release` they are lent (see PipeWriter.write). */
  write(bytes: Uint8Array, release?: () => void): void {
    if (!this.out.write(bytes, release)) this.full = true;
  }

  /** Waits for the transport to take what was written (flow control between batches). */
  async drain(): Promise<void> {
    if (!this.full) return;
    this.full = false;
    await this.out.drain();
  }

  /** Sends everything, then closes this side; nothing more is read (lent chunks go back). */
  async close(): Promise<void> {
    this.dropped = true;
    this.q.discard();
    await this.drain();
    this.out.end();
  }
}

/**
 * Lent chunks a stream may hold before its writer is told to wait. A socket that takes a whole
 * 4 MiB record at once (TCP's buffers grow to several MiB) says "go on" every time, and a writer
 * that goes on in one turn of the event loop never sees its buffers come back: it would take a
 * new one per record, the whole stream in fresh memory.
 */
const STREAM_LENT_MAX = 2;

/** A writer over a Node stream (a socket, a child's stdin). */
export function streamWriter(s: NodeJS.WritableStream & { destroyed?: boolean; writableEnded?: boolean }): PipeWriter {
  /** Lent chunks the stream holds (their write callbacks not yet called). */
  let lent = 0;
  /** The stream said wait (write() returned false) and has not drained since. */
  let needDrain = false;
  let waiters: (() => void)[] = [];
  const gone = (): boolean => s.destroyed === true || s.writableEnded === true;
  const wake = (): void => {
    if ((needDrain || lent > STREAM_LENT_MAX) && !gone()) return;
    const w = waiters;
    waiters = [];
    for (const r of w) r();
  };
  // Drained, or gone (a writer waiting then goes on and finds the stream closed).
  const onDrain = (): void => {
    needDrain = false;
    wake();
  };
  s.on('drain', onDrain);
  s.once('close', onDrain);
  s.once('error', onDrain);
  return {
    write: (bytes, release) => {
      if (gone()) {
        release?.();
        return true;
      }
      let ok: boolean;
      if (release) {
        lent++;
        // The stream holds the bytes until they are flushed; its callback comes then, or with the
        // error that ends it.
        ok = s.write(bytes, () => {
          lent--;
          release();
          wake();
        });
      } else {
        ok = s.write(bytes);
      }
      if (!ok) needDrain = true;
      return ok && lent <= STREAM_LENT_MAX;
    },
    drain: () => (gone() || (!needDrain && lent <= STREAM_LENT_MAX) ? Promise.resolve() : new Promise<void>((r) => waiters.push(r))),
    end: () => {
      if (!gone()) s.end();
    },
  };
}

/** What can go wrong on an in-process link (a scenario's faults on the network between hosts). */
export interface LinkFaults {
  /** The sender's bytes past this many are lost and the link reset (a connection that dies). */
  readonly cutAfter?: number;
  /** Once `when()` holds at a write, the sender's bytes past `bytes` more are lost and the link reset. */
  readonly cutLater?: { readonly when: () => boolean; readonly bytes: number };
  /** The sender's "permission to go" (these exact bytes) is lost: the receiver's side of the link resets. */
  readonly loseWrite?: Uint8Array;
  /** Told when a fault above fires (for the trace). */
  readonly onFault?: (what: 'cut' | 'lost', bytes: number) => void;
}

/**
 * Two pipe ends in one process, what an ssh command's stdin/stdout carry between `xl migrate` and
 * `xl migrate-receive`: what one writes, the other reads. Faults apply to the sender's side.
 * drain() takes one turn of the event loop, so a sender that waits for it lets the receiver run.
 */
export function linkedPipes(faults: LinkFaults = {}): { sender: MigratePipe; receiver: MigratePipe } {
  let cutAfter = faults.cutAfter ?? Infinity;
  let later = faults.cutLater;
  const lose = faults.loseWrite ? Buffer.from(faults.loseWrite) : undefined;
  let sent = 0;
  /** Which directions are gone: a cut takes both, a lost go the receiver's side only. */
  let senderCut = false;
  let receiverCut = false;
  const link: { sender?: MigratePipe; receiver?: MigratePipe } = {};
  const to = (peer: () => MigratePipe, faulty: boolean): PipeWriter => ({
    write: (b, release) => {
      if ((faulty ? senderCut : receiverCut) || peer().closed) {
        release?.();
        return true;
      }
      if (faulty && later?.when()) {
        cutAfter = Math.min(cutAfter, sent + later.bytes);
        later = undefined;
      }
      if (faulty && lose?.equals(b)) {
        // Lost on the way in: the receiver's read fails, what it writes back still arrives.
        senderCut = true;
        faults.onFault?.('lost', sent);
        peer().end(new Error('connection reset'));
        release?.();
        return true;
      }
      if (faulty && sent + b.length > cutAfter) {
        const room = Math.max(0, cutAfter - sent);
        if (room > 0) peer().push(copyOf(b, 0, room));
        release?.();
        sent += room;
        senderCut = true;
        receiverCut = true;
        faults.onFault?.('cut', sent);
        peer().end(new Error('connection reset'));
        link.sender!.end(new Error('connection reset'));
        return true;
      }
      if (faulty) sent += b.length;
      // Lent bytes pass through lent (the receiver gives them back); others are copied, as a
      // kernel's pipe would.
      if (release) peer().push(b, release);
      else peer().push(copyOf(b));
      return true;
    },
    drain: () => new Promise((r) => setImmediate(r)),
    end: () => peer().end(),
  });
  link.sender = new MigratePipe(to(() => link.receiver!, true), 'migration sender');
  link.receiver = new MigratePipe(to(() => link.sender!, false), 'migration receiver');
  return link as { sender: MigratePipe; receiver: MigratePipe };
}
