// Bench sections for the toolstack and the scenario engine:
// - `devices`: boot-to-Connected time and memory for 1, 10 and 100 guests (each with a disk and
//   a NIC), free-running (a worker thread per vCPU, or packed on 2 threads for 100) and, for
//   reference, in inline lockstep.
// - `swarm`: seeds per minute of boot-and-shutdown on 2 jobs (target >= 600), and how many seeds
//   the swarm needs to find each planted race.
import { readFileSync } from 'node:fs';
import { RACES } from '../../scenarios/races.ts';
import { HostRuntime, type HostOptions } from '../host-runtime.ts';
import { swarm } from '../scenario/swarm.ts';
import { Xl } from '../xl.ts';
import { type BenchSection, table } from './common.ts';

function rssMb(): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Creates `n` guests (xvda + vif) and waits until every device is Connected on both ends. */
async function bootToConnected(n: number, host: HostOptions): Promise<{ ms: number; perGuestMs: number; rss: number }> {
  const rt = new HostRuntime({ seed: 1, ...host });
  try {
    await rt.bootDom0();
    const xl = new Xl(rt);
    const rss0 = rssMb();
    const t0 = performance.now();
    const ids: number[] = [];
    for (let i = 0; i < n; i++) {
      ids.push(await xl.create({ name: `g${i}`, disks: [{ vdev: 'xvda', target: `g${i}`, sizeMiB: 4 }], vifs: [{}] }));
    }
    for (const id of ids) {
      for (const [fe, be] of [[`/local/domain/${id}/device/vbd/51712/state`, `/local/domain/0/backend/vbd/${id}/51712/state`],
        [`/local/domain/${id}/device/vif/0/state`, `/local/domain/0/backend/vif/${id}/0/state`]]) {
        for (const path of [fe, be]) {
          const r = await rt.toolstack<{ ok: boolean }>('wait', { path, value: '4', timeoutNs: 60e9 });
          if (!r.ok) throw new Error(`${path} did not reach Connected`);
        }
      }
    }
    const ms = performance.now() - t0;
    return { ms, perGuestMs: ms / n, rss: rssMb() - rss0 };
  } finally {
    await rt.shutdown();
  }
}

export const devicesSection: BenchSection = {
  name: 'devices',
  title: 'Boot to Connected: guests with a disk and a NIC, both ends of every device Connected',
  parts: ['boot'],
  async run(opts, _parts, out) {
    const rows: string[][] = [];
    const cases: { n: number; label: string; host: HostOptions }[] = [
      { n: 1, label: 'free, a thread per vCPU', host: { mode: 'free' } },
      { n: 10, label: 'free, a thread per vCPU', host: { mode: 'free' } },
      { n: 100, label: 'free, packed on 2 threads', host: { mode: 'free', pool: 2 } },
      { n: 1, label: 'lockstep inline', host: { mode: 'lockstep', inline: true } },
      { n: 10, label: 'lockstep inline', host: { mode: 'lockstep', inline: true } },
      { n: 100, label: 'lockstep inline', host: { mode: 'lockstep', inline: true } },
    ];
    for (const c of opts.quick ? cases.filter((x) => x.n <= 10) : cases) {
      try {
        const r = await bootToConnected(c.n, c.host);
        rows.push([String(c.n), c.label, (r.ms / 1000).toFixed(2), r.perGuestMs.toFixed(0), r.rss.toFixed(0)]);
      } catch (e) {
        rows.push([String(c.n), c.label, `failed: ${(e as Error).message.split('\n')[0]}`, '', '']);
      }
    }
    out(table(['guests', 'mode', 'boot to Connected (s)', 'per guest (ms)', 'RSS growth (MB)'], rows));
  },
};

export const swarmSection: BenchSection = {
  name: 'swarm',
  title: 'Scenario swarm: throughput, and seeds needed to find each planted race',
  parts: ['throughput', 'races'],
  async run(opts, parts, out) {
    if (parts.has('throughput')) {
      const seeds = opts.quick ? 200 : 1000;
      const r = await swarm({ scenarios: [{ name: 'boot-and-shutdown', variants: ['fixed'] }], seeds, jobs: 2 });
      const perMin = r.runs / (r.wallMs / 60000);
      const failing = r.summaries[0].failures.length;
      out(table(['scenario', 'seeds', 'jobs', 'wall (s)', 'seeds/min', 'failing', 'target'], [[
        'boot-and-shutdown', String(r.runs), '2', (r.wallMs / 1000).toFixed(1), perMin.toFixed(0), String(failing),
        `>= 600/min: ${perMin >= 600 ? 'met' : 'MISS'}`,
      ]]));
    }
    if (parts.has('races')) {
      const budget = opts.quick ? 200 : 1000;
      const scenarios = RACES.map((d) => ({ name: d.name, variants: Object.keys(d.variants ?? { fixed: {} }) }));
      const r = await swarm({ scenarios, seeds: budget, jobs: 2, stopAtFirstFailure: true });
      const rows = r.summaries.map((s) => {
        const def = RACES.find((d) => d.name === s.scenario)!;
        const expected = def.expect?.[s.variant] ?? 'pass';
        const found = s.firstFailingSeed;
        const verdict = expected === 'fail' ? (found !== undefined ? 'found' : 'NOT FOUND') : (found !== undefined ? 'FAILS' : `passes ${s.runs} seeds`);
        return [def.race?.id ?? '', s.scenario, s.variant, found !== undefined ? String(found) : `> ${s.runs}`, verdict];
      });
      out(table(['race', 'scenario', 'variant', 'seeds to first failure', `result (budget ${budget} seeds)`], rows));
    }
  },
};
