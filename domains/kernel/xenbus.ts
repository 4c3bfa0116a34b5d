// The guest's xenbus: a xenstore client (the XsHandle API) over the ring page and event channel
// the domain builder handed over in start_info.
import { XsHandle } from '../libs/store/xs.ts';
import type { Kernel } from './kernel.ts';
import { XenbusRing } from './xenbus-comms.ts';

export interface XenbusInitOptions {
  readonly ignoreConnection?: boolean;
  /**
   * The ring's reconnection protocol (docs/misc/xenstore-ring.txt): when a request has had no
   * answer and nothing at all came from the server for this long (virtual ns), and the server
   * advertises XENSTORE_SERVER_FEATURE_RECONNECTION, ask for a ring reset, then send again what
   * was lost (XsHandle.reconnected). Unset: the guest waits for ever, as Linux's xenbus does.
   */
  readonly reconnectAfterNs?: number;
}

export function xenbusInit(k: Kernel, opts: XenbusInitOptions = {}): XsHandle {
  const port = k.startInfo.store_evtchn;
  const ring = new XenbusRing(k.page(k.startInfo.store_mfn), () => k.notify(port), { ignoreConnection: opts.ignoreConnection });
  k.on(port, () => ring.onEvent());
  const xs = XsHandle.fromStream(ring, 'xenbus');
  xs.sched = k.point;
  if (opts.reconnectAfterNs !== undefined) reconnectWatchdog(k, ring, xs, opts.reconnectAfterNs);
  return xs;
}

/**
 * Armed while requests are in flight: a period with requests unanswered and not one byte from
 * the server means the server lost them (it died, and may come back); the ring reset is asked
 * for once, and they go again when the server has done it. The timer runs only while something
 * waits and the server is not being waited for, so an idle or hung guest leaves no timer behind.
 */
function reconnectWatchdog(k: Kernel, ring: XenbusRing, xs: XsHandle, afterNs: number): void {
  xs.enableReconnection();
  let armed = false;
  let seen = 0;
  const arm = (): void => {
    if (armed) return;
    armed = true;
    seen = ring.received;
    k.setTimer(afterNs, () => {
      armed = false;
      if (xs.inFlight === 0 || xs.isClosed) return;
      if (ring.received !== seen) {
        arm();
        return;
      }
      // Once asked, the server's reset (or nothing, if it never comes back) decides: the resent
      // requests arm the timer again.
      const asked = ring.requestReconnect();
      k.trace({ kind: 'xenbus_comms', op: asked ? 'ring reconnect requested' : 'ring stalled, server offers no reconnection', inFlight: xs.inFlight });
    });
  };
  ring.onRequest = arm;
  ring.onReconnected = () => {
    k.trace({ kind: 'xenbus_comms', op: 'ring reconnected', resent: xs.inFlight });
    xs.reconnected();
  };
}
