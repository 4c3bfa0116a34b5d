// The guest's user-space xenstore tools, for scenarios: a root process that opened
// /dev/xen/xenbus (domains/kernel/xenbus-dev-frontend.ts) and speaks xenstore through it, a task
// of its own ('xenstore-user') that the kernel freezes at suspend. Its requests pass Linux's
// checks in that device and go out over the kernel's single ring; its watches are the kernel's,
// on its behalf. What Linux's device would refuse or rewrite (a message over 4080 bytes, a watch
// token xenstored should see) a hostile kernel can still send on its own ring: `ring: true`, and
// `xs-ring-corrupt`. Every command replies once, with a plain object.
import { XsError, type XsHandle } from '../libs/store/xs.ts';
import { XENSTORE_RING_SIZE, XSD_SOCKMSG_SIZE, XenstoreDomainInterface as X, XsdSockmsgType, encodeHeader } from '../../hypervisor/public/io/xs_wire.ts';
import type { Kernel } from '../kernel/kernel.ts';
import type { SavedWatch } from './kernel-state.ts';

/** One step of an `xs-batch`. */
export type XsBatchOp =
  | readonly ['write', string, string]
  | readonly ['read', string]
  | readonly ['mkdir', string]
  | readonly ['rm', string];

export type XsUserCommand =
  /**
   * One raw request: `payload` is latin1 with the NULs in it (`path\0`, `path\0value`). Replies
   * {type, payload} or {error} (the XS_ERROR name); with `timeoutNs`, {timedOut: true} if no
   * answer came in that much virtual time (the request is still pending in the kernel). With
   * `ring`, the kernel itself sends it on its ring (a hostile kernel), bytes unchanged.
   */
  | { cmd: 'xs'; id: number; type: number; payload: string; tx?: number; timeoutNs?: number; ring?: boolean }
  /**
   * XS_WATCH with this token; its events are logged for `xs-events`. With `reread`, a handler
   * runs per event, one at a time in arrival order (as xenwatch), sleeps `delayNs`, then reads
   * the event's path and logs the value it sees then (a slow watcher). With `ring`, a hostile
   * kernel sends this XS_WATCH itself, so xenstored sees the token (/dev/xen/xenbus keeps it).
   */
  | { cmd: 'xs-watch'; id: number; path: string; token: string; reread?: boolean; delayNs?: number; ring?: boolean }
  /** The logged events of `xs-watch` tokens, in order, and clears the log: {events}. */
  | { cmd: 'xs-events'; id: number }
  /** Operations in order, `gapNs` apart; in one transaction if `tx` (aborted at the first error). */
  | { cmd: 'xs-batch'; id: number; ops: readonly XsBatchOp[]; tx?: boolean; gapNs?: number }
  /** `times` read-modify-write increments of a counter, each in a transaction retried on EAGAIN: {retries}. */
  | { cmd: 'xs-increment'; id: number; path: string; times: number }
  /**
   * A broken kernel: a request header announcing more than the 4096-byte payload maximum,
   * written straight into req[]. Replies {error: the ring's `error` field} once xenstored looked.
   */
  | { cmd: 'xs-ring-corrupt'; id: number };

export interface WatchLogEntry {
  readonly path: string;
  readonly token: string;
  /** With `reread`: the value read when the handler ran, or the error name. */
  readonly value?: string;
}

const code = (e: unknown): string => (e instanceof XsError ? e.code : e instanceof Error ? e.message : String(e));
const sleep = (k: Kernel, ns: number): Promise<void> => new Promise((r) => void k.setTimer(ns, r));

/** Which connection a watch or request uses: the process's file, or the kernel's own ring. */
type Via = 'dev' | 'ring';

export class XsUser {
  private readonly log: WatchLogEntry[] = [];
  private readonly handlers = new Map<string, { path: string; reread: boolean; delayNs: number; via: Via }>();
  private readonly queue: { path: string; token: string; via: Via }[] = [];
  private draining = false;
  private devHandle: XsHandle | undefined;

  /**
   * `ring` is the kernel's own connection; `open` opens /dev/xen/xenbus for the process (again,
   * should the file have failed).
   */
  constructor(private readonly k: Kernel, private readonly ring: XsHandle, private readonly open: () => XsHandle) {
    ring.on('watch', (path, token) => this.onWatch(path, token, 'ring'));
  }

  /** The process's connection through /dev/xen/xenbus. */
  get xs(): XsHandle {
    if (!this.devHandle || this.devHandle.isClosed) {
      const h = this.open();
      h.on('watch', (path, token) => this.onWatch(path, token, 'dev'));
      this.devHandle = h;
    }
    return this.devHandle;
  }

  private via(v: Via): XsHandle {
    return v === 'ring' ? this.ring : this.xs;
  }

  private onWatch(path: string, token: string, via: Via): void {
    const h = this.handlers.get(token);
    if (!h || h.via !== via) return;
    if (!h.reread) {
      this.log.push({ path, token });
      return;
    }
    this.queue.push({ path, token, via });
    void this.drain();
  }

  /** The slow handlers: one event at a time, each re-reading the node when it finally runs. */
  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.queue.length) {
        const { via, ...ev } = this.queue.shift()!;
        const h = this.handlers.get(ev.token);
        if (!h) continue;
        if (h.delayNs > 0) await sleep(this.k, h.delayNs);
        let value: string;
        try {
          value = (await this.via(via).read(ev.path)).toString('latin1');
        } catch (e) {
          value = code(e);
        }
        this.log.push({ ...ev, value });
      }
    } finally {
      this.draining = false;
    }
  }

  /** The watches user space holds, for the kernel state a resumed kernel reads back. */
  savedWatches(): SavedWatch[] {
    return [...this.handlers].map(([token, h]) => ({ path: h.path, token, reread: h.reread, delayNs: h.delayNs, via: h.via }));
  }

  /**
   * xs_resume: every watch registered again, with its token, on the new domain's connection. A
   * watch fires once on registration, as any XS_WATCH does. xs_resume ignores what XS_WATCH
   * answers: EEXIST where the watch came along (the seed's migration) leaves it as it was.
   */
  async resumeWatches(watches: readonly SavedWatch[]): Promise<void> {
    for (const w of watches) {
      this.handlers.set(w.token, { path: w.path, reread: w.reread, delayNs: w.delayNs, via: w.via });
      await this.via(w.via).watch(w.path, w.token).catch(() => undefined);
    }
  }

  async run(m: XsUserCommand): Promise<Record<string, unknown>> {
    switch (m.cmd) {
      case 'xs': {
        const req = this.via(m.ring ? 'ring' : 'dev').request(m.type, Buffer.from(m.payload, 'latin1'), m.tx ?? 0).then(
          (r) => ({ type: r.type, payload: Buffer.from(r.payload).toString('latin1') }),
          (e: unknown) => ({ error: code(e) }),
        );
        if (m.timeoutNs === undefined) return req;
        let timer: { cancel(): void } | undefined;
        const timeout = new Promise<Record<string, unknown>>((r) => (timer = this.k.setTimer(m.timeoutNs!, () => r({ timedOut: true }))));
        const out = await Promise.race([req, timeout]);
        timer?.cancel();
        return out;
      }
      case 'xs-watch':
        this.handlers.set(m.token, { path: m.path, reread: m.reread ?? false, delayNs: m.delayNs ?? 0, via: m.ring ? 'ring' : 'dev' });
        try {
          await this.via(m.ring ? 'ring' : 'dev').watch(m.path, m.token);
          return {};
        } catch (e) {
          this.handlers.delete(m.token);
          return { error: code(e) };
        }
      case 'xs-events':
        return { events: this.log.splice(0) };
      case 'xs-batch':
        return this.batch(m.ops, m.tx ?? false, m.gapNs ?? 0);
      case 'xs-increment':
        return this.increment(m.path, m.times);
      case 'xs-ring-corrupt':
        return this.corruptRing();
    }
  }

  private async batch(ops: readonly XsBatchOp[], inTx: boolean, gapNs: number): Promise<Record<string, unknown>> {
    const tx = inTx ? await this.xs.transactionStart() : 0;
    const results: string[] = [];
    for (const [i, op] of ops.entries()) {
      if (i > 0 && gapNs > 0) await sleep(this.k, gapNs);
      try {
        switch (op[0]) {
          case 'write': await this.xs.write(op[1], Buffer.from(op[2], 'latin1'), tx); results.push('OK'); break;
          case 'read': results.push((await this.xs.read(op[1], tx)).toString('latin1')); break;
          case 'mkdir': await this.xs.mkdir(op[1], tx); results.push('OK'); break;
          case 'rm': await this.xs.rm(op[1], tx); results.push('OK'); break;
        }
      } catch (e) {
        if (!inTx) {
          results.push(code(e));
          continue;
        }
        // A careful client gives up on the whole transaction at the first error.
        await this.xs.transactionEnd(tx, false).catch(() => undefined);
        return { results, error: code(e), failedAt: i };
      }
    }
    if (!inTx) return { results };
    try {
      await this.xs.request(XsdSockmsgType.XS_TRANSACTION_END, 'T', tx);
      return { results, committed: true };
    } catch (e) {
      return { results, committed: false, error: code(e), failedAt: 'commit' };
    }
  }

  private async increment(path: string, times: number): Promise<Record<string, unknown>> {
    let retries = 0;
    for (let i = 0; i < times; i++) {
      retries += (await this.xs.transaction(async (tx) => {
        const v = Number((await this.xs.read(path, tx)).toString('latin1'));
        await this.xs.write(path, String(v + 1), tx);
      })).retries;
    }
    return { retries };
  }

  private async corruptRing(): Promise<Record<string, unknown>> {
    const page = this.k.page(this.k.startInfo.store_mfn);
    const words = new Int32Array(page.buffer, page.byteOffset, 1024);
    const h = encodeHeader({ type: XsdSockmsgType.XS_WRITE, req_id: 0x7fff, tx_id: 0, len: 5000 });
    const prod = Atomics.load(words, X.req_prod >> 2);
    for (let i = 0; i < XSD_SOCKMSG_SIZE; i++) page[X.req + ((prod + i) & (XENSTORE_RING_SIZE - 1))] = h[i];
    Atomics.store(words, X.req_prod >> 2, (prod + XSD_SOCKMSG_SIZE) | 0);
    this.k.notify(this.k.startInfo.store_evtchn);
    for (let i = 0; i < 100 && Atomics.load(words, X.error >> 2) === 0; i++) await sleep(this.k, 1e6);
    return { error: Atomics.load(words, X.error >> 2) };
  }
}
