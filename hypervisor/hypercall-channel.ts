// The trap from a domain's worker into the hypervisor on the main thread. A hypercall is
// synchronous for the calling vCPU: the worker writes the call into a shared page, wakes the
// main thread and sleeps (Atomics.wait) until the answer is there. The main thread never
// blocks: it waits with Atomics.waitAsync. Pages the hypervisor hands over (grant maps) travel
// on a MessagePort that the worker drains synchronously before returning to the caller. This is
// the hypervisor's end; the guest's end and the page layout are public/hypercall_page.ts.
import type { MessagePort } from 'node:worker_threads';
import {
  CallState, type HandedFrame, HYPERCALL_PAGE_BYTES, type HypercallPort, type HypercallResult, readJson, W_DOMID, W_OP, W_STATE, writeJson,
} from './public/hypercall_page.ts';

/** What the hypervisor does with one hypercall: a result, and pages to hand over. */
export type HypercallHandler = (domid: number, op: number, args: unknown) => { ret: unknown; frames?: HandedFrame[] };

/** Main-thread side: serves the hypercalls of one worker until closed. */
export class HypercallServer {
  private readonly i32: Int32Array;
  private readonly bytes: Uint8Array;
  private closed = false;

  constructor(
    readonly sab: SharedArrayBuffer,
    private readonly port: MessagePort,
    private readonly handler: HypercallHandler,
  ) {
    this.i32 = new Int32Array(sab);
    this.bytes = new Uint8Array(sab);
  }

  static page(): SharedArrayBuffer {
    return new SharedArrayBuffer(HYPERCALL_PAGE_BYTES);
  }

  close(): void {
    this.closed = true;
    Atomics.notify(this.i32, W_STATE);
  }

  /** Runs until close(); never blocks the main thread. */
  async serve(): Promise<void> {
    const i32 = this.i32;
    while (!this.closed) {
      const v = Atomics.load(i32, W_STATE);
      if (v === CallState.CALL) {
        this.answer();
        continue;
      }
      const w = Atomics.waitAsync(i32, W_STATE, v);
      if (w.async) await w.value;
    }
  }

  private answer(): void {
    const i32 = this.i32;
    let ret: unknown;
    let frames: HandedFrame[] = [];
    try {
      const r = this.handler(i32[W_DOMID], i32[W_OP], readJson(this.bytes, i32));
      ret = r.ret;
      frames = r.frames ?? [];
    } catch (e) {
      // A hypervisor bug must not wedge the caller: it sees -EFAULT... and the error is logged.
      ret = { error: String(e) };
    }
    for (const f of frames) this.port.postMessage(f);
    writeJson(this.bytes, i32, ret);
    Atomics.store(i32, W_STATE, CallState.DONE);
    Atomics.notify(i32, W_STATE);
  }
}

/**
 * A vCPU on the hypervisor's own thread (inline lockstep): the trap is a call. Arguments and
 * results still cross as JSON, so neither side can hold a reference into the other's objects.
 */
export class InlineHypercallClient implements HypercallPort {
  constructor(private readonly handler: HypercallHandler) {}

  call(domid: number, op: number, args: unknown): HypercallResult {
    let ret: unknown;
    let frames: HandedFrame[] = [];
    try {
      const r = this.handler(domid, op, JSON.parse(JSON.stringify(args ?? null)));
      ret = r.ret;
      frames = r.frames ?? [];
    } catch (e) {
      ret = { error: String(e) };
    }
    return { ret: JSON.parse(JSON.stringify(ret ?? null)), frames: frames.map((f) => ({ ...f })) };
  }
}
