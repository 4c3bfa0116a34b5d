// Starts a domain's vCPU as a worker thread and serves its hypercalls. The worker receives its
// own pages and shared_info page, and nothing else; more pages reach it only through hypercalls.
import { MessageChannel, Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import type { Domain } from './domain.ts';
import { HypercallServer } from './hypercall-channel.ts';
import type { Hypercalls } from './hypercall.ts';
import { KERNEL_COUNTERS, type KernelStats, kernelStats, type RunMode, type StartInfo, VcpuControl } from '../domains/kernel/kernel.ts';
import type { DomainProgram, WorkerBoot } from '../domains/kernel/worker.ts';

/** '.ts' when running the sources under tsx, '.js' when running dist/: workers load the same kind. */
const EXT = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const WORKER = new URL(`../domains/kernel/worker${EXT}`, import.meta.url);
const PRELOAD = fileURLToPath(new URL('../scripts/tsx-preload.mjs', import.meta.url));

/** Workers running the sources need the TypeScript loader too; mocha and `node --import` pass it on, the bin does not. */
function workerExecArgv(): string[] {
  const argv = [...process.execArgv];
  if (EXT === '.ts' && !argv.some((a) => a.includes('tsx-preload'))) argv.push('--import', PRELOAD);
  return argv;
}

export class DomainThread {
  readonly worker: Worker;
  private readonly server: HypercallServer;
  readonly exited: Promise<number>;
  /** Lockstep: the vCPU control page shared with the thread. */
  readonly control: SharedArrayBuffer;
  private readonly ctl: Int32Array;
  private readonly ctl64: BigInt64Array;
  /** The vCPU's event-channel counters (KernelCounter), written by its thread. */
  private readonly counters = new SharedArrayBuffer(KERNEL_COUNTERS * 8);

  constructor(
    d: Domain, hypercalls: Hypercalls, startInfo: StartInfo, program: DomainProgram, mode: RunMode = 'free',
    fast: { evtchnRoutes?: SharedArrayBuffer; spin?: number; paused?: boolean; tracing?: boolean } = {},
  ) {
    const { port1, port2 } = new MessageChannel();
    const page = HypercallServer.page();
    // The caller is the domain this thread runs, whatever the guest wrote into the trap page.
    this.server = new HypercallServer(page, port1, (_claimed, op, args) => hypercalls.call(d.domid, op, args));
    const pages = d.p2m.flatMap((f, gfn) => (f ? [{ gfn, sab: f.sab }] : []));
    // Lockstep: RUN is the scheduler's run token. Free-running: RUN is the unpause gate the
    // vCPU waits at before it first runs.
    this.control = new SharedArrayBuffer(VcpuControl.BYTES);
    this.ctl = new Int32Array(this.control);
    this.ctl64 = new BigInt64Array(this.control);
    Atomics.store(this.ctl64, VcpuControl.DEADLINE, -1n);
    if (mode === 'free' && !fast.paused) Atomics.store(this.ctl, VcpuControl.RUN, 1);
    this.mode = mode;
    const boot: WorkerBoot = {
      domid: d.domid, hypercallPage: page, port: port2, sharedInfo: d.sharedInfo!.sab, pages, startInfo, program,
      mode, vcpuControl: this.control, evtchnRoutes: fast.evtchnRoutes, spin: fast.spin, tracing: fast.tracing,
      counters: this.counters,
    };
    this.worker = new Worker(WORKER, { workerData: boot, transferList: [port2], execArgv: workerExecArgv() });
    void this.server.serve();
    this.exited = new Promise((resolve) => this.worker.once('exit', (code) => {
      this.dead = true;
      this.server.close();
      port1.close();
      resolve(code);
    }));
  }

  /**
   * Lockstep: lets this vCPU run at virtual time `now` until it blocks; resolves with its next
   * timer deadline (ns, or -1).
   */
  async run(now: number): Promise<number> {
    const ctl = this.ctl!;
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
    Atomics.store(this.ctl64!, VcpuControl.NOW, BigInt(now));
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
    return Number(Atomics.load(this.ctl64!, VcpuControl.DEADLINE));
  }

  private dead = false;
  private readonly mode: RunMode;

  /** The vCPU's event-channel counters so far (for benchmarks; not part of any trace). */
  kernelStats(): KernelStats {
    return kernelStats(this.counters);
  }

  /** Free-running: stop the vCPU at its next event or timer (XEN_DOMCTL_pausedomain). */
  hold(): void {
    if (this.mode !== 'free') return;
    Atomics.store(this.ctl!, VcpuControl.RUN, 0);
  }

  /** Free-running: let a vCPU created (or put) paused run. */
  release(): void {
    if (this.mode !== 'free') return;
    Atomics.store(this.ctl!, VcpuControl.RUN, 1);
    Atomics.notify(this.ctl!, VcpuControl.RUN);
  }
  private runs = 0;

  /** Stops the vCPU thread at once, as domain_kill stops its vCPUs (no orderly shutdown). */
  async halt(): Promise<void> {
    await this.worker.terminate();
    await this.exited;
  }
}
