// The kernel's task scheduler for lockstep runs: where Linux would let another process or kernel
// thread take the CPU (before a xenstore request goes out, when its reply wakes the caller,
// between two messages of one ring read, before a watch callback), a task parks here instead of
// going on. The simulator's scheduler sees every domain's ready tasks on the vCPU control page
// and picks the next task to run from all of them, so the interleavings that real Xen allows are
// the ones a seed, a PCT draw or an exhaustive search can choose. Free-running, nothing parks:
// the threads and the event loop interleave by themselves.
import { VcpuControl } from '../../hypervisor/public/vcpu.ts';

interface Parked {
  readonly resume: () => void;
}

export class TaskScheduler {
  /** Task names by id (ids from 1, in the order tasks first parked: a seed replays them). */
  private readonly names: string[] = [''];
  private readonly ids = new Map<string, number>();
  /** Per task id, what is parked (FIFO: a task that parks twice goes on in order). */
  private readonly parked = new Map<number, Parked[]>();
  /** Task ids with something parked, in the order they became ready. */
  private readonly order: number[] = [];
  /** Parks so far (the kernel's settling watches it for progress). */
  parks = 0;

  constructor(
    private readonly ctl: Int32Array,
    private readonly onNewTask?: (id: number, name: string) => void,
  ) {}

  /** The task's id (allocated the first time it is named). */
  idOf(task: string): number {
    let id = this.ids.get(task);
    if (id === undefined) {
      id = this.names.length;
      this.names.push(task);
      this.ids.set(task, id);
      this.onNewTask?.(id, task);
    }
    return id;
  }

  nameOf(id: number): string {
    return this.names[id] ?? `task${id}`;
  }

  /** A preemption point: resolves when the scheduler next chooses `task`. */
  point(task: string): Promise<void> {
    const id = this.idOf(task);
    this.parks++;
    return new Promise<void>((resume) => {
      let q = this.parked.get(id);
      if (!q) this.parked.set(id, (q = []));
      if (q.length === 0) this.order.push(id);
      q.push({ resume });
    });
  }

  /** Resumes the oldest parked continuation of task `id` (the scheduler's CHOICE). */
  resume(id: number): void {
    const q = this.parked.get(id);
    if (!q || q.length === 0) throw new Error(`scheduler chose task ${id} (${this.nameOf(id)}), which is not ready`);
    const p = q.shift()!;
    if (q.length === 0) this.order.splice(this.order.indexOf(id), 1);
    p.resume();
  }

  /** Takes the scheduler's CHOICE from the control page (0 = none) and clears it. */
  takeChoice(): number {
    return Atomics.exchange(this.ctl, VcpuControl.CHOICE, 0);
  }

  /** Writes the ready tasks to the control page for the simulator's scheduler. */
  publish(): void {
    const n = Math.min(this.order.length, VcpuControl.READY_MAX);
    for (let i = 0; i < n; i++) Atomics.store(this.ctl, VcpuControl.READY + i, this.order[i]);
    Atomics.store(this.ctl, VcpuControl.READY_N, n);
  }

  /** The domain stops for good: nothing parked will ever run. */
  clear(): void {
    this.parked.clear();
    this.order.length = 0;
    Atomics.store(this.ctl, VcpuControl.READY_N, 0);
  }
}
