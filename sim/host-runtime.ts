// A running Xen host: the hypervisor model on this thread, each domain's vCPU in a worker.
// It plays the domain builder (libxenguest) for new guests: memory, xenstore ring page, store
// event channel, grant ref 1 for xenstored, start_info; dom0's toolstack then INTRODUCEs them.
import type { Worker } from 'node:worker_threads';
import type { Domain } from '../hypervisor/domain.ts';
import { DomainThread } from '../hypervisor/domain-thread.ts';
import { EventChannels } from '../hypervisor/event-channel.ts';
import { GrantTables } from '../hypervisor/grant-table.ts';
import { Hypercalls } from '../hypervisor/hypercall.ts';
import { Host } from '../hypervisor/host.ts';
import { GNTTAB_RESERVED_XENSTORE, grantRef } from '../hypervisor/public/grant_table.ts';
import type { DomId } from '../hypervisor/public/xen.ts';
import type { Dom0Args, Dom0Command } from '../domains/dom0/dom0.ts';
import type { StartInfo } from '../domains/kernel/kernel.ts';
import type { DomainProgram } from '../domains/kernel/worker.ts';

const DOM0_PROGRAM = new URL('../domains/dom0/dom0.ts', import.meta.url).href;

export interface GuestOptions {
  /** The guest kernel's program: module URL and arguments. */
  readonly program: DomainProgram;
  readonly pages?: number;
  readonly domid?: number;
}

export interface TraceEvent {
  readonly kind: string;
  readonly domid?: number;
  readonly [k: string]: unknown;
}

export class HostRuntime {
  readonly host = new Host();
  readonly evtchn: EventChannels;
  readonly gnttab: GrantTables;
  readonly hypercalls: Hypercalls;
  readonly threads = new Map<number, DomainThread>();
  readonly trace: TraceEvent[] = [];
  private seed: number;

  constructor(opts: { seed?: number; trace?: boolean } = {}) {
    this.seed = opts.seed ?? 1;
    this.evtchn = new EventChannels(this.host);
    this.gnttab = new GrantTables(this.host);
    this.hypercalls = new Hypercalls(this.host, this.evtchn, this.gnttab);
    if (opts.trace) {
      this.evtchn.onTrace((e) => this.trace.push(e as unknown as TraceEvent));
      this.gnttab.onTrace((e) => this.trace.push(e as unknown as TraceEvent));
      this.hypercalls.onTrace((e) => this.trace.push({ ...e }));
    }
  }

  private nextSeed(): number {
    this.seed = (Math.imul(this.seed, 1103515245) + 12345) >>> 0;
    return this.seed;
  }

  get dom0(): Worker {
    return this.threads.get(0)!.worker;
  }

  /** Boots dom0 running xenstored; resolves once it serves. */
  async bootDom0(args: Dom0Args = {}): Promise<void> {
    const d = this.host.createDomain({ domid: 0, privileged: true, maxPages: 64 });
    this.host.populate(d, 0, 16);
    this.host.unpause(d);
    const t = this.start(d, { store_mfn: 0, store_evtchn: 0 }, { module: DOM0_PROGRAM, args });
    await new Promise<void>((resolve, reject) => {
      t.worker.once('error', reject);
      t.worker.on('message', (m: { cmd: string }) => {
        if (m.cmd === 'ready') resolve();
      });
    });
  }

  private start(d: Domain, store: { store_mfn: number; store_evtchn: number }, program: DomainProgram): DomainThread {
    const si: StartInfo = { domid: d.domid, nr_pages: d.p2m.length, ...store, seed: this.nextSeed() };
    const t = new DomainThread(d, this.hypercalls, si, program);
    this.threads.set(d.domid, t);
    return t;
  }

  private dom0Command(m: Dom0Command): Promise<unknown> {
    const w = this.dom0;
    return new Promise((resolve) => {
      const on = (r: { cmd: string; domid: number }): void => {
        if (r.cmd === `${m.cmd}d` && r.domid === m.domid) {
          w.off('message', on);
          resolve(r);
        }
      };
      w.on('message', on);
      w.postMessage(m);
    });
  }

  /** Builds and starts a guest, then has dom0 INTRODUCE it to xenstored. */
  async createGuest(opts: GuestOptions): Promise<Domain> {
    const d = this.host.createDomain({ domid: opts.domid, maxPages: opts.pages ?? 32 });
    const nr = Math.min(opts.pages ?? 8, d.maxPages);
    this.host.populate(d, 0, nr);
    const storeGfn = nr - 1;
    const dom0 = this.host.domains.get(0)!;
    const alloc = this.evtchn.allocUnbound(dom0, { dom: d.domid, remote_dom: 0 as DomId });
    if (typeof alloc === 'number') throw new Error(`store event channel: ${alloc}`);
    this.gnttab.seedEntry(d, grantRef(GNTTAB_RESERVED_XENSTORE), 0 as DomId, storeGfn);
    // As libxl: INTRODUCE (which resets the ring) while the domain is still paused, then unpause.
    await this.dom0Command({ cmd: 'introduce', domid: d.domid, mfn: storeGfn, port: alloc.port });
    this.host.unpause(d);
    this.start(d, { store_mfn: storeGfn, store_evtchn: alloc.port }, opts.program);
    return d;
  }

  /** XEN_DOMCTL_destroydomain after stopping the vCPU. */
  async destroy(domid: number): Promise<void> {
    const t = this.threads.get(domid);
    this.threads.delete(domid);
    await t?.halt();
    const d = this.host.domains.get(domid);
    if (d) this.host.destroy(d);
  }

  async shutdown(): Promise<void> {
    for (const [domid, t] of [...this.threads].reverse()) {
      this.threads.delete(domid);
      await t.halt();
    }
  }
}
