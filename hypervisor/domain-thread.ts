// Starts a domain's vCPU as a worker thread and serves its hypercalls. The worker receives its
// own pages and shared_info page, and nothing else; more pages reach it only through hypercalls.
import { MessageChannel, Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import type { Domain } from './domain.ts';
import { HypercallServer } from './hypercall-channel.ts';
import type { Hypercalls } from './hypercall.ts';
import type { StartInfo } from '../domains/kernel/kernel.ts';
import type { DomainProgram, WorkerBoot } from '../domains/kernel/worker.ts';

const WORKER = new URL('../domains/kernel/worker.ts', import.meta.url);
const PRELOAD = fileURLToPath(new URL('../scripts/tsx-preload.mjs', import.meta.url));

/** Workers need the TypeScript loader too; mocha and `node --import` pass it on, the bin does not. */
function workerExecArgv(): string[] {
  const argv = [...process.execArgv];
  if (!argv.some((a) => a.includes('tsx-preload'))) argv.push('--import', PRELOAD);
  return argv;
}

export class DomainThread {
  readonly worker: Worker;
  private readonly server: HypercallServer;
  readonly exited: Promise<number>;

  constructor(d: Domain, hypercalls: Hypercalls, startInfo: StartInfo, program: DomainProgram) {
    const { port1, port2 } = new MessageChannel();
    const page = HypercallServer.page();
    this.server = new HypercallServer(page, port1, (domid, op, args) => hypercalls.call(domid, op, args));
    const pages = d.p2m.flatMap((f, gfn) => (f ? [{ gfn, sab: f.sab }] : []));
    const boot: WorkerBoot = {
      domid: d.domid, hypercallPage: page, port: port2, sharedInfo: d.sharedInfo!.sab, pages, startInfo, program,
    };
    this.worker = new Worker(WORKER, { workerData: boot, transferList: [port2], execArgv: workerExecArgv() });
    void this.server.serve();
    this.exited = new Promise((resolve) => this.worker.once('exit', (code) => {
      this.server.close();
      port1.close();
      resolve(code);
    }));
  }

  /** Stops the vCPU thread at once, as domain_kill stops its vCPUs (no orderly shutdown). */
  async halt(): Promise<void> {
    await this.worker.terminate();
    await this.exited;
  }
}
