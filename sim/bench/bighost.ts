// Bench section `bighost`: hosts with thousands of guests, each made by `xl create` (a store and
// a console channel in dom0 per guest) on a pool of 2 vCPU threads. dom0 runs the FIFO ABI, as a
// Linux dom0 does, so 4,000 guests (8,000+ dom0 ports) boot; with dom0 on the 2-level ABI the
// create that needs port 4096 fails with ENOSPC. A config of 40,000 guests asks for more domids
// than Xen has (32,751 below DOMID_FIRST_RESERVED, before dom0's 131,071 FIFO ports would run
// out): `xensim up` refuses it before booting anything; and on a running host whose domids are
// all in use each further `xl create` fails with Xen's -ENOMEM while the host goes on serving.
// Each run reports the first failure as xl says it, and whether the host still serves afterwards.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { XsHandle } from '../../domains/libs/store/xs.ts';
import { HostRuntime } from '../host-runtime.ts';
import type { DomainConfig } from '../../domains/dom0/toolstack/config.ts';
import { Xl } from '../xl.ts';
import { Domctl } from '../../hypervisor/public/domctl.ts';
import { GUEST_DOMIDS } from '../../hypervisor/domain.ts';
import { Hypercall } from '../../hypervisor/public/xen.ts';
import { type BenchSection, fmtInt, REPO_ROOT, table } from './common.ts';

function rssMb(): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

interface Run {
  readonly created: number;
  /** Domids held by bare XEN_DOMCTL_createdomain domains (the run-time 40,000 case). */
  readonly bare: number;
  /** Creates refused after the first failure (runs that go on past it). */
  readonly refused: number;
  readonly failure: string | undefined;
  readonly seconds: number;
  /** Seconds of the xl creates that succeeded, and of the refused ones (run-time 40,000 case). */
  readonly xlSeconds: number;
  readonly refusedSeconds: number;
  readonly rssMb: number;
  readonly dom0Ports: number;
  readonly arrayPages: number;
  /** After the last create: a xenstore write and read through dom0's socket. */
  readonly serves: boolean;
  /** After the refusals: a guest destroyed, and the next create given its domid. */
  readonly reuse?: string;
  readonly stoppedBy?: string;
}

interface RunOptions {
  readonly guests: number;
  readonly abi: 'fifo' | '2l';
  readonly rssCapMb: number;
  /**
   * Create this many guests with xl, then have every other domid taken by a bare domain (made by
   * XEN_DOMCTL_createdomain in dom0's name: paused, no memory, nothing in xenstore) standing in
   * for the config's guests up to the last domid; then xl-create the config's guests past it,
   * each of which must be refused. Without it, the run stops at the first failed create.
   */
  readonly xlThenFill?: number;
}

async function run(o: RunOptions, progress: (s: string) => void): Promise<Run> {
  const dir = mkdtempSync(path.join(tmpdir(), 'xensim-bighost-'));
  const sock = path.join(dir, 'xs.sock');
  const rt = new HostRuntime({ pool: 2, seed: 1 });
  const t0 = performance.now();
  try {
    await rt.bootDom0({ socketPath: sock, evtchn: o.abi });
    const xl = new Xl(rt);
    let created = 0;
    let bare = 0;
    let refused = 0;
    let failure: string | undefined;
    let stoppedBy: string | undefined;
    let xlMs = 0;
    let refusedMs = 0;
    for (let i = 1; i <= o.guests; i++) {
      if (o.xlThenFill !== undefined && i === o.xlThenFill + 1) {
        for (;;) {
          const r = rt.hypercalls.call(0, Hypercall.__HYPERVISOR_domctl, { cmd: Domctl.XEN_DOMCTL_createdomain });
          if (typeof r.ret === 'number') break;
          bare++;
        }
        progress(`bighost: ${bare} bare domains hold the other domids, ${((performance.now() - t0) / 1000).toFixed(0)} s, RSS ${rssMb().toFixed(0)} MB`);
        // The bare domains stand in for the config's guests up to the last domid.
        i = created + bare + 1;
      }
      const started = performance.now();
      try {
        await xl.create({ name: `g${i}`, vcpus: 1, type: 'pv' } as DomainConfig);
        created++;
        xlMs += performance.now() - started;
      } catch (e) {
        refusedMs += performance.now() - started;
        const said = (e instanceof Error ? e.message : String(e)).split('\n')[0];
        if (failure === undefined) failure = said;
        else refused++;
        if (o.xlThenFill === undefined) break;
        // Past the last domid every create must be refused the same way, and nothing else.
        if (!/domain creation fail: createdomain: -ENOMEM/.test(said)) throw new Error(`create ${i} failed otherwise: ${said}`);
      }
      if (i % 1000 === 0) {
        const rss = rssMb();
        progress(`bighost: ${o.abi} ${i} guests, ${((performance.now() - t0) / 1000).toFixed(0)} s, RSS ${rss.toFixed(0)} MB`);
        if (rss > o.rssCapMb) {
          stoppedBy = `stopped at ${i} guests: RSS ${rss.toFixed(0)} MB over the bench's cap of ${o.rssCapMb} MB`;
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
    let reuse: string | undefined;
    if (o.xlThenFill !== undefined && created > 0) {
      // A domid given back is a guest created: xl destroy one, and the next create gets its id.
      const gone = [...xl.domains.keys()][0];
      await xl.destroy(gone);
      // Its id is free once Xen frees the domain, after dom0 (xenstored, the console) has
      // unmapped its pages on @releaseDomain: until then it is a zombie holding the id, as in Xen.
      const destroyed = performance.now();
      while (rt.host.domains.has(gone) && performance.now() - destroyed < 10_000) {
        await rt.quiesce();
        await new Promise((r) => setTimeout(r, 5));
      }
      const again = await xl.create({ name: 'g-again', vcpus: 1, type: 'pv' } as DomainConfig).then((id) => `domid ${id}`, (e: Error) => `NO: ${e.message}`);
      reuse = `xl destroy ${gone} (freed by Xen after ${(performance.now() - destroyed).toFixed(0)} ms), then the next create: ${again}`;
    }
    const u = rt.evtchn.usage(rt.host.domains.get(0)!);
    return {
      created, bare, refused, failure, seconds, xlSeconds: xlMs / 1000, refusedSeconds: refusedMs / 1000, rssMb: rss, dom0Ports: u.ports, arrayPages: u.arrayPages, serves,
      ...(reuse ? { reuse } : {}), ...(stoppedBy ? { stoppedBy } : {}),
    };
  } finally {
    await rt.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * `xensim up CONFIG` on a config of `guests` guests, in a process of its own (under
 * /usr/bin/time for its peak RSS): what it prints, its exit status, and its time and memory.
 */
function upConfig(guests: number): { code: number | null; said: string; seconds: number; peakMb: number; configMb: number } {
  const dir = mkdtempSync(path.join(tmpdir(), 'xensim-bighost-up-'));
  try {
    const file = path.join(dir, `host-${guests}.yaml`);
    const text = `mode: free\nguests:\n${Array.from({ length: guests }, (_, i) => `  - name: g${i + 1}\n`).join('')}`;
    writeFileSync(file, text);
    const xensim = path.join(REPO_ROOT, 'sim/bin/xensim.mjs');
    // Run in its directory, so what it prints names the file as a user would.
    const p = spawnSync('/usr/bin/time', ['-f', 'bighost-time %e %M', process.execPath, xensim, 'up', path.basename(file), '--socket', 'xs.sock', '--control', 'xl.sock'], { cwd: dir, encoding: 'utf8', timeout: 120_000 });
    const r = { code: p.status, stderr: p.stderr ?? String(p.error ?? '') };
    const m = /bighost-time ([\d.]+) (\d+)/.exec(r.stderr);
    const said = r.stderr.split('\n').filter((l) => l && !l.startsWith('bighost-time') && !/exited with non-zero status/.test(l)).join(' / ');
    return { code: r.code, said, seconds: m ? Number(m[1]) : NaN, peakMb: m ? Number(m[2]) / 1024 : NaN, configMb: text.length / 2 ** 20 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const bighostSection: BenchSection = {
  name: 'bighost',
  title: 'Big hosts: thousands of xl-created guests (store + console ports in dom0 each), pool of 2 vCPU threads',
  parts: ['fifo4000', 'twolevel', 'guests40000'],
  async run(opts, parts, out) {
    const rssCap = Number(opts.values['bighost-rss-mb'] ?? 12_000);
    const xlFirst = Number(opts.values['bighost-xl-guests'] ?? (opts.quick ? 50 : 500));
    const cases: { part: string; label: string; run: RunOptions }[] = [
      { part: 'fifo4000', label: 'dom0 FIFO', run: { guests: opts.quick ? 500 : 4000, abi: 'fifo', rssCapMb: rssCap } },
      { part: 'twolevel', label: 'dom0 2-level (fails at port 4096)', run: { guests: opts.quick ? 500 : 4000, abi: '2l', rssCapMb: rssCap } },
      {
        part: 'guests40000', label: `dom0 FIFO, 40,000 asked at run time (${fmtInt(xlFirst)} by xl, then every domid held)`,
        run: { guests: 40_000, abi: 'fifo', rssCapMb: rssCap, xlThenFill: xlFirst },
      },
    ];
    const rows: string[][] = [];
    const notes: string[] = [];
    const upRow = (): void => {
      const up = upConfig(40_000);
      rows.push([
        '`xensim up` on a 40,000-guest config (checked before boot)', '40000', '0', up.seconds.toFixed(1), '-', `${up.peakMb.toFixed(0)} peak`,
        '-', `exit ${up.code}: ${up.said}`, 'not booted',
      ]);
      notes.push(`the up row: one process (node start and a ${up.configMb.toFixed(1)} MB YAML parsed included), peak RSS from /usr/bin/time.`);
    };
    for (const c of cases) {
      if (!parts.has(c.part)) continue;
      if (c.part === 'guests40000') upRow();
      const r = await run(c.run, (s) => process.stderr.write(`${s}\n`));
      const made = r.bare ? `${r.created} xl + ${r.bare} bare` : String(r.created);
      const refused = r.refused ? ` (and ${fmtInt(r.refused)} more creates refused alike)` : '';
      rows.push([
        c.label, String(c.run.guests), made, r.seconds.toFixed(1), (r.created ? (r.xlSeconds * 1000) / r.created : 0).toFixed(1),
        r.rssMb.toFixed(0), `${r.dom0Ports} / ${r.arrayPages}`, r.stoppedBy ?? (r.failure ? `${r.failure}${refused}` : '-'), r.serves ? 'yes' : 'NO',
      ]);
      if (r.reuse) notes.push(`${c.label}: afterwards ${r.reuse}.`);
      if (r.bare) {
        notes.push(`${c.label}: domids ${r.created + 1} to ${GUEST_DOMIDS} are held by bare domains (XEN_DOMCTL_createdomain in dom0's name: paused, no memory, `
          + 'nothing in xenstore), standing in for the config\'s guests up to the last domid (xl-creating 32,751 guests would take ~14 GB and hours here); '
          + `time and RSS include them. Of the ${r.seconds.toFixed(1)} s: ${r.xlSeconds.toFixed(1)} s in the ${r.created} xl creates (ms / guest is over these), `
          + `${r.refusedSeconds.toFixed(1)} s in the ${fmtInt(r.refused + 1)} refused ones (${((r.refusedSeconds * 1000) / (r.refused + 1)).toFixed(2)} ms each).`);
      }
    }
    out(table(['config', 'guests asked', 'created', 'time (s)', 'ms / guest', 'RSS (MB)', 'dom0 ports / FIFO pages', 'first failure', 'host serves after'], rows));
    for (const n of notes) out(`- ${n}`);
  },
};
