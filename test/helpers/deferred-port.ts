// An event channel stand-in for ring tests: notify() runs the handler later (setImmediate), once per
// batch of notifies, as an upcall coalesces pending events.
export interface DeferredPort {
  notify: () => void;
  handler?: () => void;
}

export function deferredPort(): DeferredPort {
  let pending = false;
  const p: DeferredPort = {
    notify: () => {
      if (pending) return;
      pending = true;
      setImmediate(() => {
        pending = false;
        p.handler?.();
      });
    },
  };
  return p;
}
