// A domain's vCPU on the hypervisor's own thread: the inline lockstep engine. Lockstep already
// runs one vCPU at a time; running them all on one thread keeps exactly that semantics without
// a thread hand-off per run, so thousands of seeded runs fit in a minute (the scenario swarm).
// The domain still reaches the hypervisor only through hypercalls (arguments and results cross
// as JSON) and its own pages; what it cannot have here is a separate JS realm.
import { EventEmitter } from 'node:events';
import { bootPages, type Domain } from './domain.ts';
import { InlineHypercallClient } from './hypercall-channel.ts';
import type { Hypercalls } from './hypercall.ts';
import { type ControlPort, type DomainProgram, VcpuControl, vcpuReadyTasks } from './public/vcpu.ts';
import type { StartInfo } from './public/xen.ts';
import type { InlineKernel, KernelImage, VcpuRunner } from './vcpu-runner.ts';

/**
 * One end of an in-thread message channel. Messages are structured-cloned like a MessagePort's;
 * the simulator's end receives at once, the domain's end only while its vCPU runs.
 */
export class LocalPort extends EventEmitter implements ControlPort {
  private peer: LocalPort | undefined;
  private readonly inbox: unknown[] = [];
  private closed = false;
  /** Messages posted from this end (the simulator counts the mail it sends a domain). */
  sent = 0;

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
    this.sent++;
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

export class InlineVcpu implements VcpuRunner {
  readonly domid: number;
  readonly lockstep = true;
  /** The simulator's end of the domain's control channel (a Worker's place). */
  readonly control: LocalPort;
  private readonly port: LocalPort;
  readonly vcpuControl: SharedArrayBuffer;
  private readonly ctl64: BigInt64Array;
  private readonly ctl: Int32Array;
  private readonly kernel: InlineKernel;
  private dead = false;
  /** Set when the program threw: the domain crashed (a worker would have died). */
  failure: unknown;

  constructor(d: Domain, hypercalls: Hypercalls, startInfo: StartInfo, program: DomainProgram, image: KernelImage, tracing = false) {
    this.domid = d.domid;
    [this.control, this.port] = LocalPort.pair();
    this.vcpuControl = new SharedArrayBuffer(VcpuControl.BYTES);
    this.ctl64 = new BigInt64Array(this.vcpuControl);
    this.ctl = new Int32Array(this.vcpuControl);
    Atomics.store(this.ctl64, VcpuControl.DEADLINE, -1n);
    const pages = bootPages(d);
    const domid = d.domid;
    this.kernel = image.inline(
      { domid, sharedInfo: d.sharedInfo!.sab, pages, startInfo, vcpus: d.maxVcpus, program, mode: 'lockstep', vcpuControl: this.vcpuControl, tracing },
      new InlineHypercallClient((_claimed, op, args) => hypercalls.call(domid, op, args)),
      this.port,
      (e) => this.crash(e),
    );
  }

  /** Runs at virtual time `now` until blocked; resolves with the next timer deadline (or -1). */
  async run(now: number, task = 0): Promise<number> {
    if (this.dead) return -1;
    Atomics.store(this.ctl64, VcpuControl.NOW, BigInt(now));
    Atomics.store(this.ctl, VcpuControl.CHOICE, task);
    try {
      return await this.kernel.run(() => this.port.deliver());
    } catch (e) {
      this.crash(e);
      return -1;
    }
  }

  readyTasks(): readonly number[] {
    return this.dead ? [] : vcpuReadyTasks(this.ctl);
  }

  /** Messages from the simulator wait for the vCPU's next run. */
  get hasMail(): boolean {
    return this.port.pending;
  }

  /** The program's own failure, reported by the kernel (its entry rejected). */
  crash(e: unknown): void {
    if (this.dead) return;
    this.failure = e;
    this.dead = true;
    this.kernel.stop();
    // As a dying worker's 'error': whoever watches the domain hears of it; nobody need.
    if (this.control.listenerCount('error') > 0) this.control.emit('error', e);
  }

  // Lockstep: a paused domain is simply not granted a run by the scheduler, and nothing runs
  // between runs on this thread, so it is stopped as soon as it is paused.
  pause(): void {}
  unpause(): void {}
  async stopped(): Promise<void> {}

  stats(): undefined {
    return undefined;
  }

  async destroy(): Promise<void> {
    this.dead = true;
    this.kernel.stop();
    this.port.close();
    this.control.close();
  }
}
