// Linux's events_base.c, as far as dispatching an upcall goes: each bound port has an irq_info
// (its handler, reached through evtchn_to_irq), the upcall hands every pending port to the
// handler its irq_info names, and unbind_from_irqhandler frees the irq_info (xen_free_irq).
//
// On a guest with one vCPU the upcall is an interrupt of the only CPU: nothing of the guest runs
// between finding a port's irq_info and calling its handler. With two vCPUs the upcall runs on
// vCPU0 (where Xen sends a port's events unless rebound) while a device's teardown runs on
// vCPU1 (xenwatch handling the backend's Closing), and the two really overlap. A lockstep kernel
// runs one task at a time, so the overlap is modelled as the upcall on vCPU0 becoming a task of
// its own, 'evtchn upcall/0', which finds a port's irq_info in the interrupt and then parks
// before the call: whatever the scheduler runs meanwhile (the teardown on "vCPU1") is what vCPU1
// did while vCPU0 went from the lookup to the call. Free-running, or with one vCPU, dispatch
// stays the single step it is.
//
// XSA-331 (CVE-2020-27675): before Linux 073d0552ead5 nothing kept xen_free_irq from freeing the
// irq_info the upcall on another vCPU had just found, which then called through freed memory
// (a crash or WARN splat on device removal under event load). The fix is evtchn_rwlock: the
// upcall holds it shared while it handles events, xen_free_irq takes it exclusive before it
// unhooks and frees the irq_info - so an unbind waits for the upcall in flight.

/** Guest kernel knobs of event dispatch (one race, one knob). */
export interface EventsQuirks {
  /**
   * R09 (XSA-331, before Linux 073d0552ead5): no evtchn_rwlock - unbind frees the irq_info at
   * once, even while the upcall on vCPU0 has found it and is about to call its handler.
   */
  readonly noEvtchnRwlock?: boolean;
}

/** Linux's irq_info for a port bound with bind_evtchn_to_irqhandler. */
export class IrqInfo {
  /** xen_free_irq ran: the record is released memory, nothing may touch it any more. */
  freed = false;

  constructor(readonly port: number, readonly handler: (port: number) => void) {}
}

/**
 * evtchn_rwlock: readers are upcalls in flight (one per vCPU at most, here vCPU0's), the writer
 * is xen_free_irq. A writer spins until no reader holds it; here it waits for the release.
 */
export class EvtchnRwlock {
  private readers = 0;
  private readonly writers: (() => void)[] = [];

  get held(): boolean {
    return this.readers > 0;
  }

  readLock(): void {
    this.readers++;
  }

  readUnlock(): void {
    if (this.readers <= 0) throw new Error('evtchn_rwlock: read_unlock without read_lock');
    if (--this.readers === 0) for (const w of this.writers.splice(0)) w();
  }

  /**
   * Resolves once no reader holds the lock. The writer's critical section (unhooking the
   * irq_info) is synchronous, so no second writer or reader can come between.
   */
  async writeLock(): Promise<void> {
    // A reader may have come back before the woken writer ran (an interrupt taking it again).
    while (this.readers > 0) await new Promise<void>((r) => this.writers.push(r));
  }
}

/** What the event dispatch needs of its kernel. */
export interface EventsKernel {
  readonly point: ((task: string) => Promise<void>) | undefined;
  trace(ev: { readonly kind: string; readonly [k: string]: unknown }): void;
}

/** The upcall on vCPU0 as a task of its own (lockstep, two vCPUs or more). */
export const UPCALL_TASK = 'evtchn upcall/0';

export class EventsBase {
  /** evtchn_to_irq and irq_info in one: the live binding of each port. */
  private readonly bound = new Map<number, IrqInfo>();
  private readonly lock = new EvtchnRwlock();
  private vcpus = 1;
  private quirks: EventsQuirks = {};
  /** Ports the upcall in flight on vCPU0 has yet to handle (undefined: no upcall in flight). */
  private upcall: number[] | undefined;

  constructor(private readonly k: EventsKernel) {}

  /** The domain's vCPU count and the kernel's knobs (set once at boot by the guest). */
  configure(vcpus: number, quirks: EventsQuirks = {}): void {
    this.vcpus = Math.max(1, Math.floor(vcpus));
    this.quirks = quirks;
  }

  /** Whether the upcall's lookup and call are two steps another vCPU's task can come between. */
  private get split(): boolean {
    return this.vcpus > 1 && this.k.point !== undefined;
  }

  /** bind_evtchn_to_irqhandler: `handler` runs for each event on `port`. */
  bind(port: number, handler: (port: number) => void): void {
    this.bound.set(port, new IrqInfo(port, handler));
  }

  /**
   * xen_free_irq's unhook and free, no lock taken: for callers that cannot race an upcall (one
   * vCPU, or a port whose events never come), and for unbind once it holds the lock.
   */
  free(port: number): void {
    const info = this.bound.get(port);
    if (!info) return;
    if (this.split && this.lock.held && !this.quirks.noEvtchnRwlock) {
      throw new Error(`BUG: irq_info of port ${port} freed while the upcall holds evtchn_rwlock (unbind must wait for it)`);
    }
    this.bound.delete(port);
    info.freed = true;
  }

  /**
   * unbind_from_irqhandler: xen_free_irq takes evtchn_rwlock exclusive, so it waits for an
   * upcall in flight to finish; then the irq_info is unhooked and freed. `close` (the
   * EVTCHNOP_close that follows) runs right after, under the same step.
   */
  async unbind(port: number, close: () => void): Promise<void> {
    if (!this.quirks.noEvtchnRwlock) await this.lock.writeLock();
    this.free(port);
    close();
  }

  /**
   * The upcall (in the interrupt): `take` runs the 2-level loop, handing each pending port to
   * the callback given. One step for a one-vCPU kernel; with more, ports queue for vCPU0's
   * upcall task (a new upcall while one is in flight joins it, as the upcall's do-while loop
   * goes round again for events that came meanwhile). Returns what `take` returned.
   */
  handle(take: (dispatch: (port: number) => void) => number): number {
    if (!this.split) return take(this.dispatchNow);
    const queue = this.upcall ?? [];
    const n = take((port) => void queue.push(port));
    if (!this.upcall && queue.length > 0) {
      this.upcall = queue;
      void this.upcallOnVcpu0(queue);
    }
    return n;
  }

  private readonly dispatchNow = (port: number): void => {
    const info = this.bound.get(port);
    if (info) this.call(info);
  };

  /**
   * __xen_evtchn_do_upcall on vCPU0: under evtchn_rwlock (read) unless the quirk drops it, for
   * each queued port find its irq_info, then - vCPU0 taking its time - call the handler.
   */
  private async upcallOnVcpu0(queue: number[]): Promise<void> {
    const locked = !this.quirks.noEvtchnRwlock;
    if (locked) this.lock.readLock();
    try {
      for (let port = queue.shift(); port !== undefined; port = queue.shift()) {
        const info = this.bound.get(port);
        if (!info) continue;
        await this.k.point!(UPCALL_TASK);
        try {
          this.call(info);
        } catch (e) {
          // A handler failing in the interrupt is the kernel's oops (the one-step path throws it on).
          this.k.trace({ kind: 'oops', where: UPCALL_TASK, error: e instanceof Error ? e.message : String(e) });
        }
      }
    } finally {
      this.upcall = undefined;
      if (locked) this.lock.readUnlock();
    }
  }

  /** The handler through its irq_info - which must still be live. */
  private call(info: IrqInfo): void {
    if (info.freed) {
      // Linux would follow a freed irq_info's pointers: a crash in the interrupt. Nothing of it
      // is touched here; the kernel reports the use after free and leaves the event unhandled.
      this.k.trace({
        kind: 'oops', where: UPCALL_TASK,
        error: `BUG: use after free: port ${info.port}'s irq_info was freed by unbind while the upcall on vCPU0 was dispatching its event`,
      });
      return;
    }
    info.handler(info.port);
  }
}
