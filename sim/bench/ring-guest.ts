// The guest program of the `ring` benchmark (sim/bench/ring.ts): a DomU kernel that, on command
// from the simulator, times xenstore operations over its ring page (its xenbus, as a Linux guest's
// xenbus users would issue them) or single hypercalls. Time comes only from kernel.now().
//
// Commands arrive on the control port; each run answers with one RingGuestResult whose per-op
// latencies (ns) travel as a transferred Float64Array.
import type { MessagePort } from 'node:worker_threads';
import type { Kernel } from '../../domains/kernel/kernel.ts';
import { xenbusInit } from '../../domains/kernel/xenbus.ts';
import { Hypercall } from '../../hypervisor/public/xen.ts';

/** The key every operation reads or writes, relative to the guest's home (/local/domain/N/). */
export const RING_KEY = 'data/bench';
export const RING_VALUE = 'value-0123456789';

export type RingGuestOp =
  /** XS_READ of RING_KEY. */
  | 'read'
  /** XS_WRITE of RING_KEY (same small value each time). */
  | 'write'
  /** A hypercall that does nothing (console_io with count 0): the bare trap round trip. */
  | 'null-hypercall'
  /** EVTCHNOP_send on the store event channel (xenstored wakes and finds nothing to do). */
  | 'evtchn-send';

export interface RingGuestRun {
  readonly cmd: 'run';
  readonly id: number;
  readonly op: RingGuestOp;
  /** Timed operations. */
  readonly n: number;
  /** Untimed operations first (warm-up). */
  readonly warmup: number;
  /** Requests in flight (xenstore ops only; hypercalls are synchronous). */
  readonly inflight: number;
  /** Also time every EVTCHNOP_send the xenbus ring makes (adds two clock reads per send). */
  readonly profile: boolean;
}

export interface RingGuestResult {
  readonly cmd: 'result';
  readonly id: number;
  readonly domid: number;
  /** Per-op latency, ns, in completion order. */
  readonly lat: Float64Array<ArrayBuffer>;
  /** Wall time of the timed part on the guest clock, ns. */
  readonly elapsedNs: number;
  /** EVTCHNOP_send hypercalls the xenbus ring made during the timed part. */
  readonly sends: number;
  /** Time spent in them, ns (profile runs only, else 0). */
  readonly sendNs: number;
  /** Set if an operation failed. */
  readonly error?: string;
}

export interface RingGuestReady {
  readonly cmd: 'ready';
  readonly domid: number;
}

export async function main(k: Kernel, _args: unknown, control: MessagePort): Promise<void> {
  // Count (and, when profiling, time) the ring's notifications: xenbusInit binds k.notify.
  let sends = 0;
  let sendNs = 0;
  let profiling = false;
  const notify = k.notify.bind(k);
  k.notify = (port: number): void => {
    sends++;
    if (!profiling) {
      notify(port);
      return;
    }
    const t = k.now();
    notify(port);
    sendNs += k.now() - t;
  };
  const xs = xenbusInit(k);
  await xs.write(RING_KEY, RING_VALUE);

  const storePort = k.startInfo.store_evtchn;
  const once = (op: RingGuestOp): Promise<unknown> | undefined => {
    switch (op) {
      case 'read': return xs.read(RING_KEY);
      case 'write': return xs.write(RING_KEY, RING_VALUE);
      case 'null-hypercall':
        k.hypercall(Hypercall.__HYPERVISOR_console_io, { cmd: 0, count: 0 });
        return undefined;
      case 'evtchn-send':
        notify(storePort);
        return undefined;
    }
  };

  /** n operations with up to `inflight` outstanding; per-op latency into lat. */
  const batch = async (op: RingGuestOp, n: number, inflight: number, lat: Float64Array | undefined): Promise<void> => {
    if (n <= 0) return;
    if (op === 'null-hypercall' || op === 'evtchn-send') {
      for (let i = 0; i < n; i++) {
        const t = k.now();
        void once(op);
        if (lat) lat[i] = k.now() - t;
      }
      return;
    }
    if (inflight <= 1) {
      for (let i = 0; i < n; i++) {
        const t = k.now();
        await once(op);
        if (lat) lat[i] = k.now() - t;
      }
      return;
    }
    await new Promise<void>((resolve, reject) => {
      let issued = 0;
      let done = 0;
      const issue = (): void => {
        const t = k.now();
        issued++;
        void once(op)!.then(() => {
          if (lat) lat[done] = k.now() - t;
          done++;
          if (issued < n) issue();
          else if (done === n) resolve();
        }, reject);
      };
      for (let j = 0; j < Math.min(inflight, n); j++) issue();
    });
  };

  const run = async (m: RingGuestRun): Promise<RingGuestResult> => {
    const lat = new Float64Array(m.n);
    try {
      await batch(m.op, m.warmup, m.inflight, undefined);
      sends = 0;
      sendNs = 0;
      profiling = m.profile;
      const t0 = k.now();
      await batch(m.op, m.n, m.inflight, lat);
      const elapsedNs = k.now() - t0;
      profiling = false;
      return { cmd: 'result', id: m.id, domid: k.domid, lat, elapsedNs, sends, sendNs };
    } catch (e) {
      profiling = false;
      return { cmd: 'result', id: m.id, domid: k.domid, lat, elapsedNs: 0, sends, sendNs, error: String(e) };
    }
  };

  control.on('message', (m: { cmd: string }) => {
    if (m.cmd !== 'run') return;
    void run(m as RingGuestRun).then((r) => control.postMessage(r, [r.lat.buffer]));
  });
  control.postMessage({ cmd: 'ready', domid: k.domid } satisfies RingGuestReady);
}
