// A domain's vCPU on the hypervisor's own thread: the inline lockstep engine. Lockstep already
// runs one vCPU at a time; running them all on one thread keeps exactly that semantics without
// a thread hand-off per run, so thousands of seeded runs fit in a minute (the scenario swarm).
// The domain still reaches the hypervisor only through hypercalls (arguments and results cross
// as JSON) and its own pages; what it cannot have here is a separate JS realm.
import { EventEmitter } from 'node:events';
import type { Domain } from './domain.ts';
import { InlineHypercallClient } from './hypercall-channel.ts';
import type { Hypercalls } from './hypercall.ts';
import { Kernel, type StartInfo, VcpuControl } from '../domains/kernel/kernel.ts';
import type { DomainProgram } from '../domains/kernel/worker.ts';

/** The side of a control channel a program or the simulator holds (a MessagePort's shape). */
/* eslint-disable @typescript-eslint/no-explicit-any -- listeners take whatever the program posts */
export interface ControlPort {
  postMessage(m: unknown): void;
  on(ev: 'message' | 'error', fn: (m: any) => void): unknown;
  once(ev: 'message' | 'error', fn: (m: any) => void): unknown;
  off(ev: 'message' | 'error', fn: (m: any) => void): unknown;
}
/* eslint-enable @typescript-eslint/no-explicit-any */

/**
 * One end of an in-thread message channel. Messages are structured-cloned like a MessagePort's;
 * the simulator's end receives at once, the domain's end only while its vCPU runs.
 */
export class LocalPort extends EventEmitter implements ControlPort {
  private peer: LocalPort | undefined;
  private readonly inbox: unknown[] = [];
  private closed = false;

  private constructor(private readonly deferred: boolean) {
    super();
  }

  /** [simulator end, domain end]. */
  static pair(): [LocalPort, LocalPort] {
    const host = new LocalPort(false);
    const dom = new LocalPort(true);
    host.peer = dom;
    dom.peer = host;
    return [host, dom];
  }

  postMessage(m: unknown): void {
    if (this.closed || !this.peer || this.peer.closed) return;
    this.peer.receive(structuredClone(m));
  }

  private receive(m: unknown): void {
    if (this.deferred) this.inbox.push(m);
    else this.emit('message', m);
  }

  /** Delivers what arrived for the domain; returns whether there was anything. */
  deliver(): boolean {
    if (this.inbox.length === 0) return false;
    for (const m of this.inbox.splice(0)) this.emit('message', m);
    return true;
  }

  get pending(): boolean {
    return this.inbox.length > 0;
  }

  close(): void {
    this.closed = true;
    this.inbox.length = 0;
  }
}

export class InlineVcpu {
  /** The simulator's end of the domain's control channel (a Worker's place). */
  readonly worker: LocalPort;
  private readonly port: LocalPort;
  readonly control: SharedArrayBuffer;
  private readonly ctl64: BigInt64Array;
  readonly kernel: Kernel;
  private started = false;
  private dead = false;
  /** Set when the program threw: the domain crashed (a worker would have died). */
  failure: unknown;

  constructor(d: Domain, hypercalls: Hypercalls, startInfo: StartInfo, private readonly program: DomainProgram, tracing = false) {
    [this.worker, this.port] = LocalPort.pair();
    this.control = new SharedArrayBuffer(VcpuControl.BYTES);
    this.ctl64 = new BigInt64Array(this.control);
    Atomics.store(this.ctl64, VcpuControl.DEADLINE, -1n);
    const pages = d.p2m.flatMap((f, gfn) => (f ? [{ gfn, sab: f.sab }] : []));
    const domid = d.domid;
    this.kernel = new Kernel({
      domid, sharedInfo: d.sharedInfo!.sab, pages, startInfo, mode: 'lockstep', vcpuControl: this.control, tracing,
    }, new InlineHypercallClient((_claimed, op, args) => hypercalls.call(domid, op, args)));
    this.kernel.traceSink = (ev) => this.port.postMessage({ cmd: 'trace', ev });
  }

  /** Runs at virtual time `now` until blocked; resolves with the next timer deadline (or -1). */
  async run(now: number): Promise<number> {
    if (this.dead) return -1;
    Atomics.store(this.ctl64, VcpuControl.NOW, BigInt(now));
    try {
      if (!this.started) {
        this.started = true;
        this.kernel.startInline();
        const mod = (await import(this.program.module)) as Record<string, (k: Kernel, a: unknown, c: LocalPort) => unknown>;
        const entry = mod[this.program.entry ?? 'main'];
        if (typeof entry !== 'function') throw new Error(`${this.program.module} has no ${this.program.entry ?? 'main'}()`);
        // The program runs until its first wait; its later steps run in the slices below.
        Promise.resolve(entry(this.kernel, this.program.args, this.port)).catch((e: unknown) => this.crash(e));
      }
      return await this.kernel.runSlice(() => this.port.deliver());
    } catch (e) {
      this.crash(e);
      return -1;
    }
  }

  /** Messages from the simulator wait for the vCPU's next run. */
  get hasMail(): boolean {
    return this.port.pending;
  }

  private crash(e: unknown): void {
    if (this.dead) return;
    this.failure = e;
    this.dead = true;
    this.kernel.stop();
    // As a dying worker's 'error': whoever watches the domain hears of it; nobody need.
    if (this.worker.listenerCount('error') > 0) this.worker.emit('error', e);
  }

  release(): void {}

  async halt(): Promise<void> {
    this.dead = true;
    this.kernel.stop();
    this.port.close();
    this.worker.close();
  }
}
