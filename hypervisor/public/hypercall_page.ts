// The guest end of the trap into the hypervisor (the hypercall page): a vCPU's call is
// synchronous - it writes the call into a page shared with the hypervisor's thread, wakes it and
// sleeps (Atomics.wait) until the answer is there. Pages the hypervisor hands over (grant maps)
// travel on a MessagePort that the caller drains before returning. The hypervisor's end is
// hypervisor/hypercall-channel.ts.
import { type MessagePort, receiveMessageOnPort } from 'node:worker_threads';
import type { FifoShare } from './event_fifo.ts';

/** The page's state word: idle, a call is waiting, the answer is there. */
export const CallState = { IDLE: 0, CALL: 1, DONE: 2 } as const;

/** i32 words: state, caller domid, hypercall number, payload length; JSON payload from byte 64. */
export const W_STATE = 0;
export const W_DOMID = 1;
export const W_OP = 2;
export const W_LEN = 3;
export const DATA = 64;
export const HYPERCALL_PAGE_BYTES = 256 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A page handed to the caller with a hypercall's result (a mapped grant, a new frame). */
export interface HandedFrame {
  readonly mfn: number;
  readonly sab: SharedArrayBuffer;
  /** Where the page is in sab (a frame of a big guest's extent shares its buffer); 0 if absent. */
  readonly offset?: number;
  /** Set when this is a domain's shared_info page, handed for event-channel sends. */
  readonly sharedInfoOf?: number;
  /** With sharedInfoOf, when that domain's vCPU runs on a pool thread: the thread's doorbell. */
  readonly doorbell?: SharedArrayBuffer;
  /** With sharedInfoOf, when that domain runs the FIFO ABI: what a sender links events with. */
  readonly fifo?: FifoShare;
}

export interface HypercallResult {
  readonly ret: unknown;
  readonly frames: HandedFrame[];
}

export function writeJson(bytes: Uint8Array, i32: Int32Array, value: unknown): void {
  const out = encoder.encode(JSON.stringify(value ?? null));
  if (DATA + out.length > bytes.length) throw new RangeError('hypercall payload too large');
  bytes.set(out, DATA);
  i32[W_LEN] = out.length;
}

export function readJson(bytes: Uint8Array, i32: Int32Array): unknown {
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

