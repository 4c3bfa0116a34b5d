// /dev/xen/xenbus, as Linux's drivers/xen/xenbus/xenbus_dev_frontend.c has it: each open file
// lets a user process speak the xenstore wire protocol, and the kernel forwards its requests
// over the kernel's single xenbus connection. The process gets its replies with its own req_id
// back; XS_WATCH and XS_UNWATCH do not reach xenstored as written but register a kernel watch
// whose events go to this file alone, with the process's token; the file remembers the
// transactions the process started and aborts those still open when it is closed.
//
// Offered as a byte stream (and XsDirectTransport), so `XsHandle.fromStream(file, name)` is a
// normal client of it. Every byte written is the process's and hostile: write(2)'s checks are
// Linux's (a message must fit, header included, in XENSTORE_PAYLOAD_MAX bytes; a transaction id
// must be one this file started; XS_TRANSACTION_END says "T" or "F"; watch path and token are
// NUL-terminated). Where Linux fails the write(2) itself (EINVAL, E2BIG, a watch xenstored
// refused) the process sees that errno as an XS_ERROR reply to the request, which is what
// libxenstore's caller sees too; a stream cannot fail one write and go on.
//
// R17 (Linux d10e0cc113c9): a transaction remembers the suspend generation it began in; after a
// suspend its commit is refused with EAGAIN and its abort acknowledged, without asking
// xenstored (see xenbus-xs.ts). The buggy variant has no generations: its transactions hold
// suspend up instead.
import { Duplex } from 'node:stream';
import type { XsDirectTransport, XsHandle } from '../libs/store/xs.ts';
import { XsError } from '../libs/store/xs.ts';
import {
  XENSTORE_PAYLOAD_MAX, XSD_SOCKMSG_SIZE, XsdSockmsgType, decodeHeader, encodeHeader, type XsdSockmsg,
} from '../../hypervisor/public/io/xs_wire.ts';
import type { XenbusWatch, Xenwatch } from './xenbus-watch.ts';
import type { XsState } from './xenbus-xs.ts';

/** The kernel side a file talks through. */
export interface XenbusDevKernel {
  /** The kernel's xenbus connection (xenbus_xs.c). */
  readonly xs: XsHandle;
  /** The kernel's watch thread (register_xenbus_watch). */
  readonly watch: Xenwatch;
  /** The suspend gate and its generation (xb_dev_generation_id). */
  readonly state: XsState;
}

/** xenbus_transaction_holder: a transaction this file started. */
interface Transaction {
  /** 0 until XS_TRANSACTION_START is answered. */
  id: number;
  readonly generation: number;
}

/** watch_adapter: a kernel watch on behalf of this file, and the token the process chose. */
interface WatchAdapter {
  readonly path: string;
  readonly token: string;
  readonly handle: XenbusWatch;
}

/** An errno name (write(2) failed) or the bytes taken. */
export type WriteResult = number | string;

export class XenbusDevFile extends Duplex implements XsDirectTransport {
  /** The partial request (u.buffer: header and payload together fit in XENSTORE_PAYLOAD_MAX). */
  private readonly buffer = Buffer.alloc(XENSTORE_PAYLOAD_MAX);
  private len = 0;
  private readonly transactions: Transaction[] = [];
  private readonly watches: WatchAdapter[] = [];
  /** msgbuffer_mutex: one write(2) at a time, in order. */
  private writing: Promise<unknown> = Promise.resolve();
  /** Forwarded requests still waiting for xenstored (the file's references in Linux). */
  private inFlight = 0;
  private drained: (() => void) | undefined;
  private released = false;
  onDirectData: ((chunk: Buffer) => void) | undefined;

  constructor(private readonly kernel: XenbusDevKernel) {
    super();
  }

  /** Transactions this file has open (their ids; 0 while XS_TRANSACTION_START is in flight). */
  get openTransactions(): readonly number[] {
    return this.transactions.map((t) => t.id);
  }

  /** Watches this file holds: [path, token] as the process gave them. */
  get watchList(): readonly (readonly [string, string])[] {
    return this.watches.map((w) => [w.path, w.token] as const);
  }

  /**
   * xenbus_file_write: buffers a partial message; acts on it once complete. Resolves with the
   * bytes taken or the errno write(2) fails with, once the message was acted on (a watch
   * registered; a forwarded request sent on its way, not answered).
   */
  fileWrite(data: Uint8Array): Promise<WriteResult> {
    const r = this.writing.then(() => this.writeNow(data));
    this.writing = r;
    return r;
  }

  private async writeNow(data: Uint8Array): Promise<WriteResult> {
    if (this.released) return 'EBADF';
    if (data.length === 0) return 0;
    if (data.length > this.buffer.length - this.len) {
      this.len = 0; // dump what was buffered
      return 'EINVAL';
    }
    this.buffer.set(data, this.len);
    this.len += data.length;
    if (this.len < XSD_SOCKMSG_SIZE) return data.length;
    const hdr = decodeHeader(this.buffer);
    if (XSD_SOCKMSG_SIZE + hdr.len > this.buffer.length) {
      this.len = 0;
      return 'E2BIG';
    }
    if (this.len < XSD_SOCKMSG_SIZE + hdr.len) return data.length;
    // A whole message: bytes past it in the same write are dropped, as Linux drops them.
    const body = Buffer.from(this.buffer.subarray(XSD_SOCKMSG_SIZE, XSD_SOCKMSG_SIZE + hdr.len));
    this.len = 0;
    const err = hdr.type === XsdSockmsgType.XS_WATCH || hdr.type === XsdSockmsgType.XS_UNWATCH
      ? await this.writeWatch(hdr, body)
      : this.writeTransaction(hdr, body);
    return err ?? data.length;
  }

  /** xenbus_write_transaction: everything but (UN)WATCH goes to xenstored, checked first. */
  private writeTransaction(hdr: XsdSockmsg, body: Buffer): string | undefined {
    const { state } = this.kernel;
    let trans: Transaction | undefined;
    if (hdr.type === XsdSockmsgType.XS_TRANSACTION_START) {
      trans = { id: 0, generation: state.generation };
      this.transactions.push(trans);
    } else if (hdr.tx_id !== 0 && !this.transaction(hdr.tx_id)) {
      this.commandReply(hdr, XsdSockmsgType.XS_ERROR, 'ENOENT');
      return undefined;
    } else if (hdr.type === XsdSockmsgType.XS_TRANSACTION_END) {
      if (!(body.length === 2 && (body[0] === 0x54 || body[0] === 0x46) && body[1] === 0)) {
        this.commandReply(hdr, XsdSockmsgType.XS_ERROR, 'EINVAL');
        return undefined;
      }
      const t = this.transaction(hdr.tx_id);
      if (t && !state.quirks.userTransactionsBlockSuspend && t.generation !== state.generation) {
        // Begun before a suspend: xenstored may no longer know it, and its reads may be stale.
        this.forget(t);
        if (body[0] === 0x54) this.commandReply(hdr, XsdSockmsgType.XS_ERROR, 'EAGAIN');
        else this.commandReply(hdr, XsdSockmsgType.XS_TRANSACTION_END, 'OK');
        return undefined;
      }
    }
    this.forward(hdr, body, trans);
    return undefined;
  }

  /** xenbus_dev_request_and_reply and xenbus_dev_queue_reply: send, then answer with the process's req_id. */
  private forward(hdr: XsdSockmsg, body: Buffer, trans: Transaction | undefined): void {
    this.inFlight++;
    this.kernel.xs.request(hdr.type, body, hdr.tx_id, true).then(
      (m) => {
        if (hdr.type === XsdSockmsgType.XS_TRANSACTION_START && trans) {
          trans.id = Number.parseInt(Buffer.from(m.payload).toString('latin1'), 10) >>> 0;
        } else if (hdr.type === XsdSockmsgType.XS_TRANSACTION_END) {
          const t = this.transaction(hdr.tx_id);
          if (t) this.forget(t);
        }
        this.queueReply({ type: m.type, req_id: hdr.req_id, tx_id: m.tx_id, len: m.payload.length }, m.payload);
      },
      (e: unknown) => {
        // A reply that never comes (the connection died) leaves the process waiting, as in Linux.
        if (!(e instanceof XsError)) return;
        if (hdr.type === XsdSockmsgType.XS_TRANSACTION_START && trans) this.forget(trans);
        else if (hdr.type === XsdSockmsgType.XS_TRANSACTION_END) {
          const t = this.transaction(hdr.tx_id);
          if (t) this.forget(t);
        }
        const text = Buffer.from(`${e.code}\0`, 'latin1');
        this.queueReply({ type: XsdSockmsgType.XS_ERROR, req_id: hdr.req_id, tx_id: hdr.tx_id, len: text.length }, text);
      },
    ).finally(() => {
      if (--this.inFlight === 0) this.drained?.();
    });
  }

  /** xenbus_write_watch: a kernel watch for this file, answered "OK" by the kernel itself. */
  private async writeWatch(hdr: XsdSockmsg, body: Buffer): Promise<string | undefined> {
    const nul = body.indexOf(0);
    const nul2 = nul < 0 ? -1 : body.indexOf(0, nul + 1);
    if (nul2 < 0) {
      this.commandReply(hdr, XsdSockmsgType.XS_ERROR, 'EINVAL');
      return undefined;
    }
    const path = body.toString('latin1', 0, nul);
    const token = body.toString('latin1', nul + 1, nul2);
    if (hdr.type === XsdSockmsgType.XS_WATCH) {
      let handle: XenbusWatch;
      try {
        handle = await this.kernel.watch.register(path, (p) => this.watchFired(p, token));
      } catch (e) {
        return e instanceof XsError ? e.code : 'EIO';
      }
      if (this.released) {
        await handle.unregister();
        return 'EBADF';
      }
      this.watches.push({ path, token, handle });
    } else {
      const i = this.watches.findIndex((w) => w.token === token && w.path === path);
      if (i >= 0) {
        const [w] = this.watches.splice(i, 1);
        await w.handle.unregister();
      }
    }
    this.commandReply(hdr, hdr.type, 'OK');
    return undefined;
  }

  /** watch_fired (in xenwatch): the event, with the process's token, for this file alone. */
  private watchFired(path: string, token: string): void {
    if (this.released) return;
    const body = Buffer.from(`${path}\0${token}\0`, 'latin1');
    this.queueReply({ type: XsdSockmsgType.XS_WATCH_EVENT, req_id: 0, tx_id: 0, len: body.length }, body);
  }

  /** xenbus_command_reply: an answer the kernel gives itself, on the request's own header. */
  private commandReply(req: XsdSockmsg, type: number, text: string): void {
    const body = Buffer.from(`${text}\0`, 'latin1');
    this.queueReply({ type, req_id: req.req_id, tx_id: req.tx_id, len: body.length }, body);
  }

  private queueReply(hdr: XsdSockmsg, body: Uint8Array): void {
    if (this.released) return;
    const out = Buffer.allocUnsafe(XSD_SOCKMSG_SIZE + body.length);
    encodeHeader(hdr, out);
    out.set(body, XSD_SOCKMSG_SIZE);
    if (this.onDirectData) this.onDirectData(out);
    else this.push(out);
  }

  private transaction(id: number): Transaction | undefined {
    return this.transactions.find((t) => t.id === id);
  }

  private forget(t: Transaction): void {
    const i = this.transactions.indexOf(t);
    if (i >= 0) this.transactions.splice(i, 1);
  }

  /**
   * xenbus_file_release (xenbus_worker, once no reply is outstanding): abort the transactions
   * still open with the kernel's own XS_TRANSACTION_END, drop the watches and queued replies.
   */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.writing;
    if (this.inFlight > 0) await new Promise<void>((r) => (this.drained = r));
    for (const t of this.transactions.splice(0)) await this.kernel.xs.transactionEnd(t.id, false).catch(() => undefined);
    for (const w of this.watches.splice(0)) await w.handle.unregister();
  }

  // --- the stream --------------------------------------------------------------------------

  /** One write(2) per message; a failed one is answered as XS_ERROR (see the header comment). */
  sendDirect(data: Uint8Array): void {
    void this.fileWrite(data).then((r) => this.failed(data, r));
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (error?: Error | null) => void): void {
    this.fileWrite(chunk).then((r) => {
      this.failed(chunk, r);
      cb();
    }, cb);
  }

  override _read(): void {
    // Replies are pushed as they are queued.
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    void this.release();
    cb(err);
  }

  private failed(data: Uint8Array, r: WriteResult): void {
    if (typeof r === 'number' || data.length < XSD_SOCKMSG_SIZE || this.released) return;
    const hdr = decodeHeader(data);
    const text = Buffer.from(`${r}\0`, 'latin1');
    this.queueReply({ type: XsdSockmsgType.XS_ERROR, req_id: hdr.req_id, tx_id: hdr.tx_id, len: text.length }, text);
  }
}
