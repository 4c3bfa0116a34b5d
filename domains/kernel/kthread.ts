// Linux kernel threads, as far as drivers here need them. kthread_run creates a thread and wakes
// it, but the thread first runs when the scheduler picks it: in lockstep it is a task of its own,
// so its creator may go on (and finish other work) before it ever ran. kthread_stop asks it to
// stop and waits for it to exit; a thread stopped before it ran exits without running its
// function at all (kthread() tests KTHREAD_SHOULD_STOP first), so nothing the function would do on
// its way out happens. After kthread_stop the task is gone: stopping it again is a use after free,
// which Linux would not notice until it crashed, and which is a BUG here.
import type { Kernel } from './kernel.ts';

/** What a thread runs: `start` when it first gets the CPU, `exit` on its way out after a stop. */
export interface KthreadFn {
  start(): void;
  exit(): void;
}

export class KthreadError extends Error {}

export class Kthread {
  /** Its function started (it got the CPU before anyone stopped it). */
  ran = false;
  /** kthread_stop was called: it will not run (again). */
  shouldStop = false;
  /** kthread_stop returned: the task is freed. */
  freed = false;

  constructor(readonly name: string, private readonly fn: KthreadFn) {}

  /** Running its function now (started, not stopped). */
  get running(): boolean {
    return this.ran && !this.shouldStop;
  }

  /** The thread gets the CPU for the first time. */
  schedule(): void {
    if (this.shouldStop) return;
    this.ran = true;
    this.fn.start();
  }

  /** kthread_stop: the thread leaves through its exit path if it ran, and the task is freed. */
  stop(): void {
    if (this.freed) throw new KthreadError(`BUG: kthread_stop of ${this.name}, a task already stopped and freed (use after free)`);
    this.shouldStop = true;
    if (this.ran) this.fn.exit();
    this.freed = true;
  }
}

/** kthread_run: the thread is created now and starts when its task is next scheduled. */
export function kthreadRun(k: Pick<Kernel, 'point'>, name: string, fn: KthreadFn): Kthread {
  const t = new Kthread(name, fn);
  const first = k.point ? k.point(name) : Promise.resolve();
  void first.then(() => t.schedule());
  return t;
}
