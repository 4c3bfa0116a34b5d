// Packing: a fixed pool of threads that run many domains' vCPUs (free-running mode). Each
// thread has one hypercall page and one doorbell; whoever raises a pooled domain's upcall (the
// hypervisor, or a sender on the event-channel fast path) rings the doorbell of the thread
// hosting that domain.
import { fileURLToPath } from 'node:url';
import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import { bootPages, type Domain } from './domain.ts';
import { HypercallServer } from './hypercall-channel.ts';
import type { Hypercalls } from './hypercall.ts';
import { Errno, type StartInfo } from './public/xen.ts';
import {
  type DomainProgram, KERNEL_COUNTERS, type KernelStats, kernelStats, type PoolCommand, type PoolWorkerData, VcpuControl,
  vcpuCloseGate, vcpuOpenGate, vcpuStopped, type WorkerBoot,
} from './public/vcpu.ts';
import type { VcpuRunner } from './vcpu-runner.ts';

/** '.ts' when running the sources under tsx, '.js' when running dist/: workers need tsx's loader only for the first. */
const EXT = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const PRELOAD = fileURLToPath(new URL('../scripts/tsx-preload.mjs', import.meta.url));

interface PoolThread {
  readonly worker: Worker;
  readonly server: HypercallServer;
  readonly doorbell: SharedArrayBuffer;
  readonly bell: Int32Array;
  readonly port: MessagePort;
  /** The thread's own counters (KernelCounter layout: sleeps and polled are the thread's). */
  readonly counters: SharedArrayBuffer;
}

export interface PoolOptions {
  /** An idle pool thread polls its doorbell this many µs before it sleeps (HostOptions.spin). */
  readonly spin?: number;
}

export class VcpuPool {
  private readonly threads: PoolThread[] = [];
  private readonly placement = new Map<number, PoolThread>();
  private next = 0;

  constructor(size: number, hypercalls: Hypercalls, entry: URL, opts: PoolOptions = {}) {
    const execArgv = EXT === '.js' || process.execArgv.some((a) => a.includes('tsx-preload')) ? process.execArgv : [...process.execArgv, '--import', PRELOAD];
    for (let i = 0; i < size; i++) {
      const { port1, port2 } = new MessageChannel();
      const page = HypercallServer.page();
      const doorbell = new SharedArrayBuffer(4);
      const counters = new SharedArrayBuffer(KERNEL_COUNTERS * 8);
      // A pool thread may only speak for the domains placed on it.
      const server = new HypercallServer(page, port1, (domid, op, args) =>
        this.placement.get(domid) === this.threads[i] ? hypercalls.call(domid, op, args) : { ret: -Errno.EPERM });
      const data: PoolWorkerData = { hypercallPage: page, port: port2, doorbell, spin: opts.spin ?? 0, counters };
      const worker = new Worker(entry, { workerData: data, transferList: [port2], execArgv });
      void server.serve();
      this.threads.push({ worker, server, doorbell, bell: new Int32Array(doorbell), port: port1, counters });
    }
  }

  /**
   * Chooses the thread a new domain will run on (round robin), before anything can send it an
   * event: senders on the fast path are handed that thread's doorbell with its shared_info.
   */
  assign(domid: number): void {
    if (this.placement.has(domid)) return;
    this.placement.set(domid, this.threads[this.next++ % this.threads.length]);
  }

  /** The doorbell of the thread that runs (or will run) a domain, if it is pooled. */
  doorbell(domid: number): SharedArrayBuffer | undefined {
    return this.placement.get(domid)?.doorbell;
  }

  /**
   * Starts a domain's kernel on its thread (assigned now if not yet). A domain placed paused
   * has its program entered only once unpaused.
   */
  place(d: Domain, startInfo: StartInfo, program: DomainProgram, opts: { evtchnRoutes?: SharedArrayBuffer; paused?: boolean } = {}): PooledVcpu {
    this.assign(d.domid);
    const t = this.placement.get(d.domid)!;
    const { port1, port2 } = new MessageChannel();
    const pages = bootPages(d);
    const counters = new SharedArrayBuffer(KERNEL_COUNTERS * 8);
    const vcpu = new PooledVcpu(this, d.domid, port1, counters, opts.paused ?? false);
    const boot: WorkerBoot = {
      domid: d.domid, sharedInfo: d.sharedInfo!.sab, pages, startInfo, vcpus: d.maxVcpus, program, evtchnRoutes: opts.evtchnRoutes, counters,
      mode: 'free', vcpuControl: vcpu.vcpuControl,
    };
    const cmd: PoolCommand = { cmd: 'boot', boot, control: port2 };
    t.worker.postMessage(cmd, [port2]);
    return vcpu;
  }

  /** The pool threads' own counters: sleeps on the doorbell, events caught polling it. */
  threadStats(): KernelStats[] {
    return this.threads.map((t) => kernelStats(t.counters));
  }

  /** The pool's worker threads (event-loop utilisation, for benchmarks). */
  get workers(): readonly Worker[] {
    return this.threads.map((t) => t.worker);
  }

  /** The hypervisor's kick for a domain that got an upcall. */
  ring(domid: number): void {
    const t = this.placement.get(domid);
    if (!t) return;
    Atomics.add(t.bell, 0, 1);
    Atomics.notify(t.bell, 0);
  }

  /** Whether a domain still has a place on a thread. */
  placed(domid: number): boolean {
    return this.placement.has(domid);
  }

  halt(domid: number): void {
    const t = this.placement.get(domid);
    this.placement.delete(domid);
    t?.worker.postMessage({ cmd: 'halt', domid } satisfies PoolCommand);
  }

  async close(): Promise<void> {
    for (const t of this.threads) {
      t.server.close();
      await t.worker.terminate();
      t.port.close();
    }
  }
}

/** A packed domain's vCPU: its kernel lives on a pool thread; its pause gate is its own. */
export class PooledVcpu implements VcpuRunner {
  readonly lockstep = false;
  readonly hasMail = false;
  readonly failure: unknown = undefined;
  /** The domain's vCPU control page: the pause gate its kernel parks at on the pool thread. */
  readonly vcpuControl = new SharedArrayBuffer(VcpuControl.BYTES);
  private readonly ctl = new Int32Array(this.vcpuControl);
  private pauseSeq = 0;
  private gone = false;

  constructor(
    private readonly pool: VcpuPool, readonly domid: number, readonly control: MessagePort,
    private readonly counters: SharedArrayBuffer, paused: boolean,
  ) {
    if (paused) this.pauseSeq = vcpuCloseGate(this.ctl);
    else vcpuOpenGate(this.ctl);
  }

  run(): Promise<number> {
    throw new Error(`domain ${this.domid}: a packed vCPU is not run by the scheduler`);
  }

  readyTasks(): readonly number[] {
    return [];
  }

  /** Closes the gate and rings the thread's doorbell: its next scan parks this kernel. */
  pause(): void {
    this.pauseSeq = vcpuCloseGate(this.ctl);
    this.pool.ring(this.domid);
  }

  /** Opens the gate and rings the doorbell, so what is pending is taken at once. */
  unpause(): void {
    vcpuOpenGate(this.ctl);
    this.pool.ring(this.domid);
  }

  async stopped(): Promise<void> {
    await vcpuStopped(this.ctl, this.pauseSeq, () => this.gone || !this.pool.placed(this.domid), () => this.pool.ring(this.domid));
  }

  stats(): KernelStats {
    return kernelStats(this.counters);
  }

  async destroy(): Promise<void> {
    if (this.gone) return;
    this.gone = true;
    this.pool.halt(this.domid);
    this.control.close();
  }
}
