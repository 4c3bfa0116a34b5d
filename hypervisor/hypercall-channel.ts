// The trap from a domain's worker into the hypervisor on the main thread. A hypercall is
// synchronous for the calling vCPU: the worker writes the call into a shared page, wakes the
// main thread and sleeps (Atomics.wait) until the answer is there. The main thread never
// blocks: it waits with Atomics.waitAsync. Pages the hypervisor hands over (grant maps) travel
// on a MessagePort that the worker drains synchronously before returning to the caller.
import { type MessagePort, receiveMessageOnPort } from 'node:worker_threads';

const enum CallState {
  IDLE = 0,
  CALL = 1,
  DONE = 2,
}

/** i32 words: state, caller domid, hypercall number, payload length; JSON payload from byte 64. */
const W_STATE = 0;
const W_DOMID = 1;
const W_OP = 2;
const W_LEN = 3;
const DATA = 64;
export const HYPERCALL_PAGE_BYTES = 256 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A page handed to the caller with a hypercall's result (a mapped grant, a new frame). */
export interface HandedFrame {
  readonly mfn: number;
  readonly sab: SharedArrayBuffer;
  /** Set when this is a domain's shared_info page, handed for event-channel sends. */
  readonly sharedInfoOf?: number;
  /** With sharedInfoOf, when that domain's vCPU runs on a pool thread: the thread's doorbell. */
  readonly doorbell?: SharedArrayBuffer;
}

export interface HypercallResult {
  readonly ret: unknown;
  readonly frames: HandedFrame[];
}

function writeJson(bytes: Uint8Array, i32: Int32Array, value: unknown): void {
  const out = encoder.encode(JSON.stringify(value ?? null));
  if (DATA + out.length > bytes.length) throw new RangeError('hypercall payload too large');
  bytes.set(out, DATA);
  i32[W_LEN] = out.length;
}

function readJson(bytes: Uint8Array, i32: Int32Array): unknown {
  return JSON.parse(decoder.decode(bytes.subarray(DATA, DATA + i32[W_LEN])));
}

/** How a kernel traps into the hypervisor. */
export interface HypercallPort {
  call(domid: number, op: number, args: unknown): HypercallResult;
}

/** Worker side: makes hypercalls. */
export class HypercallClient implements HypercallPort {
  private readonly i32: Int32Array;
  private readonly bytes: Uint8Array;

  constructor(sab: SharedArrayBuffer, private readonly port: MessagePort) {
    this.i32 = new Int32Array(sab);
    this.bytes = new Uint8Array(sab);
  }

  call(domid: number, op: number, args: unknown): HypercallResult {
    const i32 = this.i32;
    i32[W_DOMID] = domid;
    i32[W_OP] = op;
    writeJson(this.bytes, i32, args);
    Atomics.store(i32, W_STATE, CallState.CALL);
    Atomics.notify(i32, W_STATE);
    while (Atomics.load(i32, W_STATE) === CallState.CALL) Atomics.wait(i32, W_STATE, CallState.CALL);
    const ret = readJson(this.bytes, i32);
    const frames: HandedFrame[] = [];
    for (let m = receiveMessageOnPort(this.port); m !== undefined; m = receiveMessageOnPort(this.port)) {
      frames.push(m.message as HandedFrame);
    }
    Atomics.store(i32, W_STATE, CallState.IDLE);
    return { ret, frames };
  }
}

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
