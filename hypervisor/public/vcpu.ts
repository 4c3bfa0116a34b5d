// The vCPU as the hypervisor hands it to a guest kernel: the boot record a vCPU starts from, the
// control page its runner and its kernel share (run token, pause gate, deadlines), the counters
// page, and the control channel a domain's program talks to the simulator on. Xen's
// xen/include/public/vcpu.h is the hypercall side of a vCPU; this is the simulator's side of the
// same thing, shared by hypervisor/ (the runners) and domains/kernel (the guest end).
import type { MessagePort } from 'node:worker_threads';
import type { StartInfo } from './xen.ts';

/**
 * free: every vCPU runs on its own (or a pool) thread at once, on real time. lockstep: one vCPU
 * runs at a time until it blocks, and virtual time advances only when all are idle.
 */
export type RunMode = 'free' | 'lockstep';

/**
 * The vCPU control page (i32 words unless noted):
 * - RUN: lockstep, the scheduler's run token; free-running, the pause gate (1 = may run).
 * - YIELD: lockstep, set by the vCPU when it blocked.
 * - DEADLINE (i64 at byte 8): the vCPU's next timer deadline (ns, -1 = none).
 * - NOW (i64 at byte 16): lockstep virtual time.
 * - PAUSE_SEQ: bumped by the runner each time it closes the gate.
 * - STOPPED_SEQ: the PAUSE_SEQ the vCPU last saw while parked at the closed gate, so the runner
 *   knows the vCPU runs nothing from then on (vcpu_sleep_sync's "it is off the CPU").
 * - CHOICE: lockstep, the task the scheduler lets run this time (an id from READY, 0 = none; ids start at 1):
 *   the vCPU takes its interrupts (upcalls, timers, mail) first, then resumes that one task.
 * - READY_N, READY: lockstep, the ids of the kernel's tasks parked at a preemption point and
 *   ready to go on (READY_N of them from i32 word READY, at most READY_MAX; the oldest first).
 */
export const VcpuControl = {
  RUN: 0, YIELD: 1, DEADLINE: 1, NOW: 2, PAUSE_SEQ: 6, STOPPED_SEQ: 7, CHOICE: 8, READY_N: 9, READY: 16, READY_MAX: 48, BYTES: 256,
} as const;
if (VcpuControl.READY + VcpuControl.READY_MAX > VcpuControl.BYTES / 4) throw new Error('VcpuControl: READY overflows the page');

/** Runner end (lockstep): the ids of the tasks the vCPU has ready, as it left them. */
export function vcpuReadyTasks(ctl: Int32Array): number[] {
  const n = Atomics.load(ctl, VcpuControl.READY_N);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(Atomics.load(ctl, VcpuControl.READY + i));
  return out;
}

/** Guest end: whether the gate is closed (free-running; lockstep vCPUs only run when granted). */
export function vcpuGateClosed(ctl: Int32Array): boolean {
  return Atomics.load(ctl, VcpuControl.RUN) === 0;
}

/**
 * Guest end, at a point where it runs no guest code: if the gate is closed, tell the runner so
 * (for the latest pause it asked); returns whether it is closed. The sequence is read before the
 * gate, so an acknowledgement never claims a pause the vCPU has not yet seen.
 */
export function vcpuParkAck(ctl: Int32Array): boolean {
  const seq = Atomics.load(ctl, VcpuControl.PAUSE_SEQ);
  if (Atomics.load(ctl, VcpuControl.RUN) !== 0) return false;
  Atomics.store(ctl, VcpuControl.STOPPED_SEQ, seq);
  Atomics.notify(ctl, VcpuControl.STOPPED_SEQ);
  return true;
}

/** Runner end: closes the gate; returns the sequence the vCPU's acknowledgement must reach. */
export function vcpuCloseGate(ctl: Int32Array): number {
  Atomics.store(ctl, VcpuControl.RUN, 0);
  const seq = Atomics.add(ctl, VcpuControl.PAUSE_SEQ, 1) + 1;
  // A vCPU parked on an earlier pause wakes, re-reads the sequence and acknowledges this one.
  Atomics.notify(ctl, VcpuControl.RUN);
  return seq;
}

/** Runner end: opens the gate. */
export function vcpuOpenGate(ctl: Int32Array): void {
  Atomics.store(ctl, VcpuControl.RUN, 1);
  Atomics.notify(ctl, VcpuControl.RUN);
}

/**
 * Runner end: resolves once the vCPU acknowledged pause `seq` (or `gone()` says it never will).
 * `nudge` wakes the vCPU wherever it sleeps; it is repeated while waiting, since a vCPU about to
 * sleep may miss the first one (it checked the gate just before it closed).
 */
export async function vcpuStopped(ctl: Int32Array, seq: number, gone: () => boolean, nudge: () => void): Promise<void> {
  for (;;) {
    const v = Atomics.load(ctl, VcpuControl.STOPPED_SEQ);
    if (v - seq >= 0 || gone()) return;
    nudge();
    const w = Atomics.waitAsync(ctl, VcpuControl.STOPPED_SEQ, v, 20);
    if (w.async) await w.value;
  }
}

/**
 * What a vCPU did with event channels, counted as it runs (never traced, so a run replays the
 * same whether or not anyone reads them), for benchmarks to show where the time goes: indexes
 * into a Float64Array counters page the runner may share (KernelBoot.counters) to read them live.
 */
export const KernelCounter = {
  /** EVTCHNOP_send from this domain (fast path or trap). */
  sends: 0,
  /** Fast-path sends that raised the peer's upcall_pending 0 -> 1: a kick of its vCPU. */
  kicks: 1,
  /** Upcalls taken: passes of the event handler that found upcall_pending set. */
  upcalls: 2,
  /** Free-running: times the idle vCPU went to sleep on its upcall word. */
  sleeps: 3,
  /** Free-running with `spin`: events the idle vCPU caught while polling, without sleeping. */
  polled: 4,
} as const;
export const KERNEL_COUNTERS = Object.keys(KernelCounter).length;
export type KernelStats = Record<keyof typeof KernelCounter, number>;

/** Reads a counters page (Float64Array of KERNEL_COUNTERS). */
export function kernelStats(page: SharedArrayBuffer | ArrayBuffer): KernelStats {
  const c = new Float64Array(page);
  const out = {} as KernelStats;
  for (const [k, i] of Object.entries(KernelCounter)) out[k as keyof KernelStats] = c[i];
  return out;
}

/** The domain's "kernel image": a module exporting the entry point main(kernel, args, control). */
export interface DomainProgram {
  /** Module URL (file:) exporting the entry point. */
  readonly module: string;
  readonly entry?: string;
  readonly args?: unknown;
}

/**
 * A run of a domain's pages in one buffer: gfn + i is the 4 KiB at offset + i * 4096 of sab. Runs
 * keep the boot record small for a big guest (one per extent rather than one per page).
 */
export interface BootPages {
  readonly gfn: number;
  readonly count: number;
  readonly sab: SharedArrayBuffer;
  readonly offset: number;
}

/** The boot record: everything a vCPU needs to boot one domain's kernel. */
export interface KernelBoot {
  readonly mode?: RunMode;
  /** The vCPU control page (VcpuControl). */
  readonly vcpuControl?: SharedArrayBuffer;
  readonly domid: number;
  /** The trap page and frame port (absent in a pool, whose thread shares one). */
  readonly hypercallPage?: SharedArrayBuffer;
  readonly port?: MessagePort;
  readonly sharedInfo: SharedArrayBuffer;
  /** The domain's memory as runs: `count` pages from `gfn`, at `offset` of `sab`, 4 KiB apart. */
  readonly pages: readonly BootPages[];
  readonly startInfo: StartInfo;
  /**
   * d->max_vcpus: the vCPUs the domain has. Linux finds them probing VCPUOP_is_up at boot
   * (xen_fill_possible_map); the boot record carries the answer instead of the probes.
   */
  readonly vcpus: number;
  /** The hypervisor's route table for this domain's ports: EVTCHNOP_send runs without a trap. */
  readonly evtchnRoutes?: SharedArrayBuffer;
  /**
   * Free-running: once idle, poll for an event this many µs before sleeping (only worth it with
   * busy threads <= cores); 0 = sleep at once.
   */
  readonly spin?: number;
  /** The simulator keeps a trace: domain code may add its own events (kernel.trace). */
  readonly tracing?: boolean;
  /** Where the vCPU keeps its event-channel counters (KernelCounter), if the host reads them. */
  readonly counters?: SharedArrayBuffer;
}

/** The boot record with the program to run on it. */
export interface WorkerBoot extends KernelBoot {
  readonly program: DomainProgram;
}

/** A pool thread's boot record (packing: one thread runs many domains' vCPUs). */
export interface PoolWorkerData {
  readonly hypercallPage: SharedArrayBuffer;
  readonly port: MessagePort;
  /** i32 word the hypervisor (or a fast-path sender) increments and notifies when one of our domains gets an upcall. */
  readonly doorbell: SharedArrayBuffer;
  /** Once idle, poll the doorbell this many µs before sleeping; 0 = sleep at once. */
  readonly spin?: number;
  /** The thread's own counters (KernelCounter layout): sleeps and events caught polling. */
  readonly counters?: SharedArrayBuffer;
}

export type PoolCommand =
  | { cmd: 'boot'; boot: WorkerBoot; control: MessagePort }
  | { cmd: 'halt'; domid: number };

/** The side of a control channel a program or the simulator holds (a MessagePort's shape). */
/* eslint-disable @typescript-eslint/no-explicit-any -- listeners take whatever the program posts */
export interface ControlPort {
  postMessage(m: unknown): void;
  on(ev: 'message' | 'error', fn: (m: any) => void): unknown;
  once(ev: 'message' | 'error', fn: (m: any) => void): unknown;
  off(ev: 'message' | 'error', fn: (m: any) => void): unknown;
}
/* eslint-enable @typescript-eslint/no-explicit-any */
