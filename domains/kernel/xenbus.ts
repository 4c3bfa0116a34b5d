// The guest's xenbus: a xenstore client (the XsHandle API) over the ring page and event channel
// the domain builder handed over in start_info.
import { XsHandle } from '../libs/store/xs.ts';
import type { Kernel } from './kernel.ts';
import { XenbusRing } from './xenbus-comms.ts';

export function xenbusInit(k: Kernel, opts: { readonly ignoreConnection?: boolean } = {}): XsHandle {
  const port = k.startInfo.store_evtchn;
  const ring = new XenbusRing(k.page(k.startInfo.store_mfn), () => k.notify(port), { ignoreConnection: opts.ignoreConnection });
  k.on(port, () => ring.onEvent());
  const xs = XsHandle.fromStream(ring, 'xenbus');
  xs.sched = k.point;
  return xs;
}
