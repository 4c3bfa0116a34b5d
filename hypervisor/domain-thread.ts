// Starts a domain's vCPU as a worker thread and serves its hypercalls. The worker receives its
// own pages and shared_info page, and nothing else; more pages reach it only through hypercalls.
import { MessageChannel, Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { bootPages, type Domain } from './domain.ts';
import { HypercallServer } from './hypercall-channel.ts';
import type { Hypercalls } from './hypercall.ts';
import {
  type DomainProgram, KERNEL_COUNTERS, type KernelStats, kernelStats, type RunMode, VcpuControl, vcpuCloseGate, vcpuOpenGate,
  vcpuReadyTasks, vcpuStopped, type WorkerBoot,
} from './public/vcpu.ts';
import type { StartInfo } from './public/xen.ts';
import type { VcpuRunner } from './vcpu-runner.ts';

/** '.ts' when running the sources under tsx, '.js' when running dist/: workers need tsx's loader only for the first. */
const EXT = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const PRELOAD = fileURLToPath(new URL('../scripts/tsx-preload.mjs', import.meta.url));

/** Workers running the sources need the TypeScript loader too; mocha and `node --import` pass it on, the bin does not. */
function workerExecArgv(): string[] {
  const argv = [...process.execArgv];
  if (EXT === '.ts' && !argv.some((a) => a.includes('tsx-preload'))) argv.push('--import', PRELOAD);
  return argv;
}

export class DomainThread implements VcpuRunner {
  readonly domid: number;
  readonly worker: Worker;
  private readonly server: HypercallServer;
  readonly exited: Promise<number>;
  /** The vCPU control page shared with the thread (run token in lockstep, pause gate free). */
  readonly vcpuControl: SharedArrayBuffer;
  private readonly ctl: Int32Array;
  private readonly ctl64: BigInt64Array;
  /** The vCPU's event-channel counters (KernelCounter), written by its thread. */
  private readonly counters = new SharedArrayBuffer(KERNEL_COUNTERS * 8);
  private readonly upcallWord: Int32Array;
  readonly lockstep: boolean;
  readonly hasMail = false;
  /** A thread's crash surfaces as its Worker's 'error' event. */
  readonly failure: unknown = undefined;
  /** The pause the vCPU must acknowledge before stopped() resolves (free-running). */
  private pauseSeq = 0;

  constructor(
    d: Domain, hypercalls: Hypercalls, startInfo: StartInfo, program: DomainProgram, entry: URL, mode: RunMode = 'free',
    fast: { evtchnRoutes?: SharedArrayBuffer; spin?: number; paused?: boolean; tracing?: boolean } = {},
  ) {
    this.domid = d.domid;
    const { port1, port2 } = new MessageChannel();
    const page = HypercallServer.page();
    // The caller is the domain this thread runs, whatever the guest wrote into the trap page.
    this.server = new HypercallServer(page, port1, (_claimed, op, args) => hypercalls.call(d.domid, op, args));
    const pages = bootPages(d);
    // Lockstep: RUN is the scheduler's run token. Free-running: RUN is the pause gate, closed
    // while the domain is paused (created paused, XEN_DOMCTL_pausedomain, shut down).
    this.vcpuControl = new SharedArrayBuffer(VcpuControl.BYTES);
    this.ctl = new Int32Array(this.vcpuControl);
    this.ctl64 = new BigInt64Array(this.vcpuControl);
    this.upcallWord = new Int32Array(d.sharedInfo!.sab);
    Atomics.store(this.ctl64, VcpuControl.DEADLINE, -1n);
    this.lockstep = mode === 'lockstep';
    if (mode === 'free') {
      if (fast.paused) this.pauseSeq = vcpuCloseGate(this.ctl);
      else vcpuOpenGate(this.ctl);
    }
    const boot: WorkerBoot = {
      domid: d.domid, hypercallPage: page, port: port2, sharedInfo: d.sharedInfo!.sab, pages, startInfo, vcpus: d.maxVcpus, program,
      mode, vcpuControl: this.vcpuControl, evtchnRoutes: fast.evtchnRoutes, spin: fast.spin, tracing: fast.tracing,
      counters: this.counters,
    };
    this.worker = new Worker(entry, { workerData: boot, transferList: [port2], execArgv: workerExecArgv() });
    void this.server.serve();
    this.exited = new Promise((resolve) => this.worker.once('exit', (code) => {
      this.dead = true;
      this.server.close();
      port1.close();
      resolve(code);
    }));
  }

  get control(): Worker {
    return this.worker;
  }

  /**
   * Lockstep: lets this vCPU run at virtual time `now` until it blocks; resolves with its next
   * timer deadline (ns, or -1).
   */
  readyTasks(): readonly number[] {
    return this.dead || !this.lockstep ? [] : vcpuReadyTasks(this.ctl);
  }

  async run(now: number, task = 0): Promise<number> {
    if (!this.lockstep) throw new Error(`domain ${this.domid}: a free-running vCPU is not run by the scheduler`);
    const ctl = this.ctl;
    const seq = ++this.runs;
    const marker = new Promise<void>((resolve) => {
      const on = (m: { cmd?: string; seq?: number }): void => {
        if (m.cmd === 'yielded' && m.seq === seq) {
          this.worker.off('message', on);
          resolve();
        }
      };
      this.worker.on('message', on);
    });
    Atomics.store(this.ctl64, VcpuControl.NOW, BigInt(now));
    Atomics.store(ctl, VcpuControl.CHOICE, task);
    Atomics.store(ctl, VcpuControl.YIELD, 0);
    Atomics.store(ctl, VcpuControl.RUN, 1);
    Atomics.notify(ctl, VcpuControl.RUN);
    while (Atomics.load(ctl, VcpuControl.YIELD) === 0) {
      const w = Atomics.waitAsync(ctl, VcpuControl.YIELD, 0, 1000);
      if (w.async) await w.value;
      if (this.dead) return -1;
    }
    // Everything the vCPU posted during its run is delivered before the next one runs.
    await Promise.race([marker, this.exited]);
    return Number(Atomics.load(this.ctl64, VcpuControl.DEADLINE));
  }

  private dead = false;
  private runs = 0;

  stats(): KernelStats {
    return kernelStats(this.counters);
  }

  /**
   * Free-running: close the gate and kick the vCPU off its upcall word, so it parks at once.
   * Lockstep: nothing to do here - the scheduler grants no run to a paused domain.
   */
  pause(): void {
    if (this.lockstep) return;
    this.pauseSeq = vcpuCloseGate(this.ctl);
    Atomics.notify(this.upcallWord, 0);
  }

  unpause(): void {
    if (this.lockstep) return;
    vcpuOpenGate(this.ctl);
  }

  async stopped(): Promise<void> {
    if (this.lockstep) return;
    await vcpuStopped(this.ctl, this.pauseSeq, () => this.dead, () => Atomics.notify(this.upcallWord, 0));
  }

  /** Stops the vCPU thread at once, as domain_kill stops its vCPUs (no orderly shutdown). */
  async destroy(): Promise<void> {
    await this.worker.terminate();
    await this.exited;
  }
}
