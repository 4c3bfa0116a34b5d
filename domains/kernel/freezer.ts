// Linux's freezer (kernel/freezer.c, kernel/power/process.c) for user space: a suspend first
// freezes every user process; a process stops at its next point where it may sleep or return to
// user mode (try_to_freeze, the "refrigerator") and stays there until thaw_processes. Kernel work
// a process started before (a request it already wrote, its reply being queued) goes on.
export class Freezer {
  private frozen = false;
  private readonly refrigerator: (() => void)[] = [];

  get freezing(): boolean {
    return this.frozen;
  }

  /** Processes parked now (each stays until thaw). */
  get parked(): number {
    return this.refrigerator.length;
  }

  /** freeze_processes: from now on a user process stops at its next tryToFreeze. */
  freeze(): void {
    if (this.frozen) throw new Error('freeze_processes: user space is already frozen');
    this.frozen = true;
  }

  /** thaw_processes: every parked process goes on, in the order it stopped. */
  thaw(): void {
    if (!this.frozen) throw new Error('thaw_processes: user space is not frozen');
    this.frozen = false;
    for (const go of this.refrigerator.splice(0)) go();
  }

  /** try_to_freeze: parks the calling process while user space is frozen (undefined: not frozen). */
  tryToFreeze(): Promise<void> | undefined {
    if (!this.frozen) return undefined;
    return new Promise<void>((r) => this.refrigerator.push(r));
  }
}

/**
 * A user process's preemption point: the kernel's (Kernel.point, lockstep) and the freezer's.
 * A process picked to run while user space is frozen goes (back) into the refrigerator, and
 * after thaw it waits to be picked again.
 */
export function userPoint(point: ((task: string) => Promise<void>) | undefined, freezer: Freezer): (task: string) => Promise<void> {
  return async (task) => {
    for (;;) {
      await freezer.tryToFreeze();
      if (point) await point(task);
      if (!freezer.freezing) return;
    }
  };
}
