// Bench section `packing`: many guests on a fixed pool of vCPU threads. Each guest is built,
// INTRODUCEd to dom0's xenstored and does 10 xenstore operations through its own ring.
// Target (issue): 1000 packed guests in <= 30 s within 4 GB.
import { readFileSync } from 'node:fs';
import type { WorkloadArgs } from '../../domains/domU/xenstore-workload.ts';
import { HostRuntime } from '../host-runtime.ts';
import { type BenchSection, table } from './common.ts';

const WORKLOAD = new URL('../../domains/domU/xenstore-workload.ts', import.meta.url).href;

function rssMb(): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function run(guests: number, pool: number): Promise<{ boot: number; total: number; rss: number }> {
  const t0 = performance.now();
  const rt = new HostRuntime({ pool, seed: 1 });
  try {
    await rt.bootDom0();
    const done: Promise<unknown>[] = [];
    const args: WorkloadArgs = { ops: [['writes', 'data/k', 9], ['read', 'data/k']] };
    for (let id = 1; id <= guests; id++) {
      await rt.createGuest({ domid: id, program: { module: WORKLOAD, args } });
      const c = rt.control(id);
      done.push(new Promise((resolve) => c.on('message', (m: { cmd: string }) => m.cmd === 'done' && resolve(m))));
    }
    const boot = performance.now() - t0;
    await Promise.all(done);
    return { boot, total: performance.now() - t0, rss: rssMb() };
  } finally {
    await rt.shutdown();
  }
}

export const packingSection: BenchSection = {
  name: 'packing',
  title: 'Packed guests: built, introduced and 10 xenstore ops each, on a pool of 2 vCPU threads',
  parts: ['guests'],
  async run(opts, _parts, out) {
    const sizes = opts.quick ? [100] : [100, 1000];
    const rows: string[][] = [];
    for (const n of sizes) {
      const r = await run(n, 2);
      const target = n === 1000 ? (r.total <= 30_000 && r.rss <= 4096 ? 'met' : 'MISS') : '';
      rows.push([String(n), (r.boot / 1000).toFixed(1), (r.total / 1000).toFixed(1), r.rss.toFixed(0), n === 1000 ? `<= 30 s, <= 4096 MB: ${target}` : '']);
    }
    out(table(['guests', 'built + introduced (s)', 'all done (s)', 'RSS (MB, whole process)', 'target'], rows));
  },
};
