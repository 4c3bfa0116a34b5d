// Packing: a fixed pool of threads that run many domains' vCPUs (free-running mode). Each
// thread has one hypercall page and one doorbell; the hypervisor rings the doorbell of the
// thread hosting a domain when that domain gets an upcall.
import { fileURLToPath } from 'node:url';
import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import type { Domain } from './domain.ts';
import { HypercallServer } from './hypercall-channel.ts';
import type { Hypercalls } from './hypercall.ts';
import { Errno } from './public/xen.ts';
import type { StartInfo } from '../domains/kernel/kernel.ts';
import type { PoolCommand, PoolWorkerData } from '../domains/kernel/pool-worker.ts';
import type { DomainProgram, WorkerBoot } from '../domains/kernel/worker.ts';

const POOL_WORKER = new URL('../domains/kernel/pool-worker.ts', import.meta.url);
const PRELOAD = fileURLToPath(new URL('../scripts/tsx-preload.mjs', import.meta.url));

interface PoolThread {
  readonly worker: Worker;
  readonly server: HypercallServer;
  readonly bell: Int32Array;
  readonly port: MessagePort;
}

export class VcpuPool {
  private readonly threads: PoolThread[] = [];
  private readonly placement = new Map<number, PoolThread>();
  private next = 0;

  constructor(size: number, hypercalls: Hypercalls) {
    const execArgv = process.execArgv.some((a) => a.includes('tsx-preload')) ? process.execArgv : [...process.execArgv, '--import', PRELOAD];
    for (let i = 0; i < size; i++) {
      const { port1, port2 } = new MessageChannel();
      const page = HypercallServer.page();
      const doorbell = new SharedArrayBuffer(4);
      // A pool thread may only speak for the domains placed on it.
      const server = new HypercallServer(page, port1, (domid, op, args) =>
        this.placement.get(domid) === this.threads[i] ? hypercalls.call(domid, op, args) : { ret: -Errno.EPERM });
      const data: PoolWorkerData = { hypercallPage: page, port: port2, doorbell };
      const worker = new Worker(POOL_WORKER, { workerData: data, transferList: [port2], execArgv });
      void server.serve();
      this.threads.push({ worker, server, bell: new Int32Array(doorbell), port: port1 });
    }
  }

  /** Starts a domain's kernel on the next thread (round robin); returns its control port. */
  place(d: Domain, startInfo: StartInfo, program: DomainProgram): MessagePort {
    const t = this.threads[this.next++ % this.threads.length];
    const { port1, port2 } = new MessageChannel();
    const pages = d.p2m.flatMap((f, gfn) => (f ? [{ gfn, sab: f.sab }] : []));
    const boot: WorkerBoot = { domid: d.domid, sharedInfo: d.sharedInfo!.sab, pages, startInfo, program };
    const cmd: PoolCommand = { cmd: 'boot', boot, control: port2 };
    t.worker.postMessage(cmd, [port2]);
    this.placement.set(d.domid, t);
    return port1;
  }

  /** The hypervisor's kick for a domain that got an upcall. */
  ring(domid: number): void {
    const t = this.placement.get(domid);
    if (!t) return;
    Atomics.add(t.bell, 0, 1);
    Atomics.notify(t.bell, 0);
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
