// Bench section `bighost`: hosts with thousands of guests, each made by `xl create` (a store and
// a console channel in dom0 per guest) on a pool of 2 vCPU threads. dom0 runs the FIFO ABI, as a
// Linux dom0 does, so 4,000 guests (8,000+ dom0 ports) boot; with dom0 on the 2-level ABI the
// create that needs port 4096 fails with ENOSPC; a config of 40,000 guests fails at the first
// create Xen refuses (domain ids run out at 32,752, before dom0's 131,071 FIFO ports would). Each
// run reports the first failure as xl says it, and that the host still serves afterwards.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { XsHandle } from '../../domains/libs/store/xs.ts';
import { HostRuntime } from '../host-runtime.ts';
import type { DomainConfig } from '../../domains/dom0/toolstack/config.ts';
import { Xl } from '../xl.ts';
import { type BenchSection, table } from './common.ts';

function rssMb(): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

interface Run {
  readonly created: number;
  readonly failure: string | undefined;
  readonly seconds: number;
  readonly rssMb: number;
  readonly dom0Ports: number;
  readonly arrayPages: number;
  /** After the last create: a xenstore write and read through dom0's socket. */
  readonly serves: boolean;
  readonly stoppedBy?: string;
}

async function run(guests: number, abi: 'fifo' | '2l', rssCapMb: number, progress: (s: string) => void): Promise<Run> {
  const dir = mkdtempSync(path.join(tmpdir(), 'xensim-bighost-'));
  const sock = path.join(dir, 'xs.sock');
  const rt = new HostRuntime({ pool: 2, seed: 1 });
  const t0 = performance.now();
  try {
    await rt.bootDom0({ socketPath: sock, evtchn: abi });
    const xl = new Xl(rt);
    let created = 0;
    let failure: string | undefined;
    let stoppedBy: string | undefined;
    for (let i = 1; i <= guests; i++) {
      try {
        await xl.create({ name: `g${i}`, vcpus: 1, type: 'pv' } as DomainConfig);
        created++;
      } catch (e) {
        failure = (e instanceof Error ? e.message : String(e)).split('\n')[0];
        break;
      }
      if (i % 1000 === 0) {
        const rss = rssMb();
        progress(`bighost: ${abi} ${i} guests, ${((performance.now() - t0) / 1000).toFixed(0)} s, RSS ${rss.toFixed(0)} MB`);
        if (rss > rssCapMb) {
          stoppedBy = `stopped at ${i} guests: RSS ${rss.toFixed(0)} MB over the bench's cap of ${rssCapMb} MB`;
          break;
        }
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    const rss = rssMb();
    let serves = false;
    const xs = await XsHandle.open(sock);
    try {
      await xs.write('/bighost-probe', String(created));
      serves = (await xs.read('/bighost-probe')).toString() === String(created);
    } finally {
      await xs.close();
    }
    const u = rt.evtchn.usage(rt.host.domains.get(0)!);
    return { created, failure, seconds, rssMb: rss, dom0Ports: u.ports, arrayPages: u.arrayPages, serves, ...(stoppedBy ? { stoppedBy } : {}) };
  } finally {
    await rt.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
}

export const bighostSection: BenchSection = {
  name: 'bighost',
  title: 'Big hosts: thousands of xl-created guests (store + console ports in dom0 each), pool of 2 vCPU threads',
  parts: ['fifo4000', 'twolevel', 'guests40000'],
  async run(opts, parts, out) {
    const rssCap = Number(opts.values['bighost-rss-mb'] ?? 12_000);
    const cases: { part: string; label: string; guests: number; abi: 'fifo' | '2l' }[] = [
      { part: 'fifo4000', label: 'dom0 FIFO', guests: opts.quick ? 500 : 4000, abi: 'fifo' },
      { part: 'twolevel', label: 'dom0 2-level (fails at port 4096)', guests: opts.quick ? 500 : 4000, abi: '2l' },
      { part: 'guests40000', label: 'dom0 FIFO, 40,000 asked', guests: 40_000, abi: 'fifo' },
    ];
    const rows: string[][] = [];
    for (const c of cases) {
      if (!parts.has(c.part)) continue;
      if (opts.quick && c.part === 'guests40000') continue;
      const r = await run(c.guests, c.abi, rssCap, (s) => process.stderr.write(`${s}\n`));
      rows.push([
        c.label, String(c.guests), String(r.created), r.seconds.toFixed(1), (r.created ? (r.seconds * 1000) / r.created : 0).toFixed(1),
        r.rssMb.toFixed(0), `${r.dom0Ports} / ${r.arrayPages}`, r.stoppedBy ?? r.failure ?? '-', r.serves ? 'yes' : 'NO',
      ]);
    }
    out(table(['config', 'guests asked', 'created', 'time (s)', 'ms / guest', 'RSS (MB)', 'dom0 ports / FIFO pages', 'first failure', 'host serves after'], rows));
  },
};
