// Linux's xenwatch: watch callbacks run one at a time, in arrival order, each to completion
// (an async callback is awaited) before the next. A handler therefore reads the node's value when
// it runs, not when the event was queued: two writes before it runs look like one.
import type { XsHandle } from '../libs/store/xs.ts';

export type WatchCallback = (path: string, token: string) => void | Promise<void>;

export interface XenbusWatch {
  readonly path: string;
  readonly token: string;
  unregister(): Promise<void>;
}

export class Xenwatch {
  private readonly callbacks = new Map<string, WatchCallback>();
  private readonly queue: { path: string; token: string }[] = [];
  private running = false;
  private nextToken = 1;
  /** Errors a callback threw (a kernel would oops; the simulator reports them). */
  readonly errors: unknown[] = [];
  /** A callback threw: the kernel's oops (the simulator reports the run as crashed). */
  onError: ((e: unknown) => void) | undefined;
  /** Seen before each callback runs (the scenario engine's place to delay or reorder). */
  beforeDispatch: ((path: string, token: string) => Promise<void> | void) | undefined;
  /** Lockstep: the kernel's preemption point (Kernel.point); the thread may lose the CPU before each callback. */
  sched: ((task: string) => Promise<void>) | undefined;
  /** This thread's name as a task (Linux's kernel thread is "xenwatch"). */
  task = 'xenwatch';

  /**
   * R01's buggy variant (before xen 2fb80a5353): record the token only once XS_WATCH has been
   * answered, so the initial event, which follows the reply at once, finds no watch and is lost.
   */
  recordAfterReply = false;

  constructor(readonly xs: XsHandle, private readonly prefix = 'xw') {
    xs.on('watch', (path, token) => {
      if (!this.callbacks.has(token)) return;
      this.queue.push({ path, token });
      void this.drain();
    });
  }

  /** register_xenbus_watch: XS_WATCH with a fresh token; the initial firing is queued like any. */
  async register(path: string, cb: WatchCallback): Promise<XenbusWatch> {
    const token = `${this.prefix}${this.nextToken++}`;
    if (!this.recordAfterReply) this.callbacks.set(token, cb);
    try {
      await this.xs.watch(path, token);
    } catch (e) {
      this.callbacks.delete(token);
      throw e;
    }
    if (this.recordAfterReply) this.callbacks.set(token, cb);
    return {
      path, token,
      unregister: async () => {
        // Events already queued for it are dropped, as unregister_xenbus_watch flushes them.
        this.callbacks.delete(token);
        for (let i = this.queue.length - 1; i >= 0; i--) if (this.queue[i].token === token) this.queue.splice(i, 1);
        await this.xs.unwatch(path, token).catch(() => undefined);
      },
    };
  }

  private idleWaiters: (() => void)[] = [];

  /** Resolves once every event queued so far has been handled and the thread sleeps. */
  idle(): Promise<void> {
    if (!this.running && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private async drain(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (this.queue.length) {
        const ev = this.queue.shift()!;
        await this.beforeDispatch?.(ev.path, ev.token);
        if (this.sched) await this.sched(this.task);
        const cb = this.callbacks.get(ev.token);
        if (!cb) continue;
        try {
          await cb(ev.path, ev.token);
        } catch (e) {
          this.errors.push(e);
          this.onError?.(e);
        }
      }
    } finally {
      this.running = false;
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}
