// How the hypervisor runs a domain's vCPU, whatever carries it: a thread of its own
// (domain-thread.ts), a shared pool thread (vcpu-pool.ts), or the hypervisor's own thread in
// lockstep (inline-vcpu.ts). The scheduler and the domain hooks (pause count, shutdown, destroy)
// speak only this interface, so every way of pausing a domain reaches every runner.
import type { ControlPort, KernelStats, WorkerBoot } from './public/vcpu.ts';
import type { HypercallPort } from './public/hypercall_page.ts';

export interface VcpuRunner {
  readonly domid: number;
  /** Lockstep: the scheduler grants this vCPU the CPU with run(); free-running: it runs itself. */
  readonly lockstep: boolean;
  /** The simulator's end of the domain program's control channel. */
  readonly control: ControlPort;
  /**
   * Lockstep: lets the vCPU run at virtual time `now` until it blocks; resolves with its next
   * timer deadline (ns, or -1). `task` (from readyTasks) is the one parked task it may resume
   * after taking its interrupts (0: none). Free-running runners refuse.
   */
  run(now: number, task?: number): Promise<number>;
  /** Lockstep: the kernel's tasks parked at a preemption point, ready to go on (VcpuControl.READY). */
  readyTasks(): readonly number[];
  /**
   * vcpu_pause: the vCPU runs nothing from its next preemption point on (no upcall, no timer, no
   * program start). Counted by the hypervisor, not here: one pause() per runnable -> paused edge.
   */
  pause(): void;
  /** vcpu_unpause: it may run again; what became due meanwhile runs now. */
  unpause(): void;
  /** Resolves once the vCPU has acknowledged the last pause() (runs no guest code). */
  stopped(): Promise<void>;
  /** domain_kill: stops the vCPU for good, at once. */
  destroy(): Promise<void>;
  /** The vCPU's event-channel counters so far (benchmarks; never part of a trace). */
  stats(): KernelStats | undefined;
  /** Lockstep: messages from the simulator wait for the vCPU's next run. */
  readonly hasMail: boolean;
  /** Set when the domain's program threw (the domain crashed). */
  readonly failure: unknown;
}

/**
 * What starts a kernel, handed to the hypervisor by whoever assembles the host: the hypervisor
 * knows the boot record (public/vcpu.ts) but no kernel code.
 */
export interface KernelImage {
  /** Entry module of a vCPU thread of its own (given workerData: WorkerBoot). */
  readonly worker: URL;
  /** Entry module of a pool thread (given workerData: PoolWorkerData). */
  readonly poolWorker: URL;
  /**
   * A kernel on the hypervisor's thread (inline lockstep), trapping through `hc`; `crashed` hears
   * of its program throwing.
   */
  readonly inline: (boot: WorkerBoot, hc: HypercallPort, control: ControlPort, crashed: (e: unknown) => void) => InlineKernel;
}

/** A kernel run inline: one lockstep run at a time, on the caller's thread. */
export interface InlineKernel {
  /** Runs until blocked, delivering the domain's mail first; resolves with the next deadline. */
  run(deliverMail: () => boolean): Promise<number>;
  stop(): void;
}
