// Bench section `lockstep`: the price of replayability. The same guest workload (N xenstore
// writes each) on 1 and 10 guests, free-running and in lockstep (one vCPU at a time, seeded),
// as wall-clock operations per second.
import type { WorkloadArgs } from '../../domains/domU/xenstore-workload.ts';
import { HostRuntime } from '../host-runtime.ts';
import { type BenchSection, table } from './common.ts';

const WORKLOAD = new URL('../../domains/domU/xenstore-workload.ts', import.meta.url).href;

async function opsPerSecond(mode: 'free' | 'lockstep', guests: number, writes: number): Promise<number> {
  const rt = new HostRuntime({ mode, seed: 1 });
  try {
    await rt.bootDom0();
    const done: Promise<unknown>[] = [];
    const args: WorkloadArgs = { ops: [['writes', 'data/k', writes]] };
    for (let id = 1; id <= guests; id++) {
      await rt.createGuest({ domid: id, paused: true, program: { module: WORKLOAD, args } });
      const c = rt.control(id);
      done.push(new Promise((resolve) => c.on('message', (m: { cmd: string }) => m.cmd === 'done' && resolve(m))));
    }
    const t0 = performance.now();
    await rt.unpause(...Array.from({ length: guests }, (_, i) => i + 1));
    await Promise.all(done);
    return (guests * writes) / ((performance.now() - t0) / 1000);
  } finally {
    await rt.shutdown();
  }
}

export const lockstepSection: BenchSection = {
  name: 'lockstep',
  title: 'Guest xenstore writes over the ring: free-running vs lockstep (wall-clock ops/s)',
  parts: ['compare'],
  async run(opts, _parts, out) {
    // Wall time includes starting the vCPU threads (~0.2 s), hence enough writes to drown it.
    const writes = opts.quick ? 1000 : 4000;
    const rows: string[][] = [];
    for (const guests of [1, 10]) {
      const free = await opsPerSecond('free', guests, writes);
      const lock = await opsPerSecond('lockstep', guests, writes);
      rows.push([String(guests), String(writes), free.toFixed(0), lock.toFixed(0), (lock / free).toFixed(2)]);
    }
    out(table(['guests', 'writes each', 'free-running ops/s', 'lockstep ops/s', 'lockstep/free'], rows));
  },
};
