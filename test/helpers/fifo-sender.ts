// A thread that sends events into a FIFO domain the way a fast-path sender does (evtchn_fast_path:
// linking under the hypervisor's lock, in its own thread): `sends` sends to ports drawn from
// `ports` by a seeded generator, each counted in `sent[port]` before the send.
import { parentPort, workerData } from 'node:worker_threads';
import type { FifoShare } from '../../hypervisor/public/event_fifo.ts';
import { PeerSharedInfo, setPendingFast } from '../../hypervisor/public/evtchn_fast_path.ts';

const d = workerData as { sharedInfo: SharedArrayBuffer; share: FifoShare; ports: number[]; sends: number; seed: number; sent: SharedArrayBuffer };
const peer = new PeerSharedInfo(d.sharedInfo, undefined, d.share);
const sent = new Int32Array(d.sent);
let seed = d.seed;
const rand = (n: number): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
for (let i = 0; i < d.sends; i++) {
  const p = d.ports[rand(d.ports.length)];
  Atomics.add(sent, p, 1);
  if (setPendingFast(peer, p) === undefined) throw new Error(`port ${p}: the sender lacks a page it was handed`);
}
parentPort!.postMessage('done');
