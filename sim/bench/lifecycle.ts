// Bench section `lifecycle`: `xl destroy` at random points of `xl create` on a free-running host
// (issue 14, acceptance 3; test/toolstack/destroy-during-create.test.ts runs the same trials in
// lockstep at seeded points). Here dom0 and the guests run on their own threads in real time, so
// where the destroy lands is the machine's timing: each trial waits a random part of an
// undisturbed create's time, then destroys the domain as another `xl destroy NAME` would (once
// xl lists it); attempts until N destroys were issued while their create was under way. Counted after each trial: nodes of the domain left in xenstore
// (orphans), the domain left in the hypervisor or mapped in dom0, and every failed create with
// what it said, explained when it is a step that found its domain going.
import { configUuid } from '../../domains/dom0/toolstack/config.ts';
import { domainNodes, LOST_TO_DESTROY, twoDisksOneNic } from '../../test/helpers/toolstack.ts';
import { tree, treeDiff } from '../../test/helpers/host.ts';
import { HostRuntime } from '../host-runtime.ts';
import { Xl } from '../xl.ts';
import { type BenchSection, median, sleep, table } from './common.ts';

/** The section's seeded generator (the delays; the host's timing is not seeded). */
function lcg(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 2 ** 32;
  };
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

interface Trial {
  readonly t: number;
  readonly delayMs: number;
  /** The destroy was issued while the create was still under way. */
  readonly during: boolean;
  readonly failure?: string;
  readonly destroyFailure?: string;
  readonly orphans: readonly string[];
  /** The domain still in the hypervisor, or mapped by dom0, 10 s after the trial. */
  readonly left?: string;
}

/** Waits (free-running: real time, at most `ms`) until `done()`; whether it came true. */
async function until(rt: HostRuntime, done: () => boolean, ms: number): Promise<boolean> {
  const start = performance.now();
  while (!done()) {
    if (performance.now() - start > ms) return false;
    await rt.quiesce();
    await sleep(2);
  }
  return true;
}

async function trials(n: number, seed: number, progress: (s: string) => void): Promise<{ rows: Trial[]; refMs: number; baseDiff: string }> {
  const rt = new HostRuntime({ seed, mode: 'free' });
  try {
    await rt.bootDom0();
    const xl = new Xl(rt);
    // Undisturbed creates (and destroys): how long a create takes here, the range of delays. One
    // more every 10 attempts, as the machine's load drifts (only undisturbed ones: the trials'
    // own creates that finished first are the fast ones).
    const undisturbed: number[] = [];
    let refs = 0;
    const calibrate = async (): Promise<void> => {
      const t0 = performance.now();
      const id = await xl.create(twoDisksOneNic(`ref${refs++}`), { paused: true });
      undisturbed.push(performance.now() - t0);
      await xl.destroy(id);
      await xl.settled();
      await until(rt, () => !rt.host.domains.has(id), 10_000);
    };
    for (let i = 0; i < 6; i++) await calibrate();
    // The first create warms the code up; it says little of the others.
    undisturbed.shift();
    const refMs = (): number => median(undisturbed.slice(-5));
    const base = await tree(xl);
    const next = lcg(seed);
    const rows: Trial[] = [];
    // A trial counts once its destroy was issued while the create was under way; those that found
    // the create finished are run again (up to 3n attempts in all) and reported apart.
    for (let t = 0; rows.filter((r) => r.during).length < n && t < 3 * n; t++) {
      if (t > 0 && t % 10 === 0) await calibrate();
      const cfg = twoDisksOneNic(`t${t}`);
      // Within an undisturbed create's time; a create faster this time is found finished (moot).
      const delayMs = next() * refMs();
      let settled = false;
      const creating = xl.create(cfg, { paused: true }).then(
        (id) => ({ id, failure: undefined }),
        (e: unknown) => ({ id: undefined, failure: message(e) }),
      ).finally(() => (settled = true));
      await sleep(delayMs);
      const mine = (): number | undefined => [...xl.domains.values()].find((x) => x.cfg.name === cfg.name)?.domid;
      // As `xl destroy NAME` would: once xl lists the domain (its domain-make under way), not while
      // the builder is still making it nameless.
      while (!settled && mine() === undefined) await new Promise((r) => setImmediate(r));
      const victim = mine();
      const during = !settled;
      const destroyed = victim === undefined ? Promise.resolve(undefined) : xl.destroy(victim).then(() => undefined, message);
      const { id: createdId, failure } = await creating;
      const destroyFailure = await destroyed;
      const id = createdId ?? victim;
      // The create finished before the destroy was issued: destroy it now (that trial is moot).
      // (After a destroy issued during the create, a domain still listed is a destroy that lost.)
      const listed = id !== undefined && xl.domains.has(id);
      if (listed) await xl.destroy(id);
      await xl.settled();
      let orphans: string[] = [];
      let left: string | undefined;
      if (id === undefined) {
        left = 'the create failed before it had a domain';
      } else {
        // Xen frees the domain once dom0 has unmapped its pages (on @releaseDomain).
        const dom0 = rt.host.domains.get(0)!;
        const freed = await until(rt, () => !rt.host.domains.has(id) && !rt.gnttab.mappings(dom0).some((m) => m.dom === id), 10_000);
        if (!freed) left = rt.host.domains.has(id) ? `domain ${id} still in the hypervisor (${rt.host.domains.get(id)!.runState})` : `domain ${id}'s pages still mapped in dom0`;
        orphans = domainNodes(await tree(xl), id, configUuid(cfg, id));
      }
      if (during && listed) left = `domain ${id} still listed by xl after its destroy`;
      rows.push({ t, delayMs, during, orphans, ...(failure ? { failure } : {}), ...(destroyFailure ? { destroyFailure } : {}), ...(left ? { left } : {}) });
      if ((t + 1) % 20 === 0) progress(`lifecycle: ${t + 1} attempts, ${rows.filter((r) => r.during).length} destroys during a create`);
    }
    const d = treeDiff(base, await tree(xl));
    const baseDiff = d.added.length + d.removed.length === 0 ? 'none' : `added ${d.added.join(' ') || '-'}; removed ${d.removed.join(' ') || '-'}`;
    return { rows, refMs: refMs(), baseDiff };
  } finally {
    await rt.shutdown();
  }
}

export const lifecycleSection: BenchSection = {
  name: 'lifecycle',
  title: 'xl destroy at random points of xl create (two disks, one NIC, paused), free-running host: orphans and failures',
  parts: ['destroy-during-create'],
  async run(opts, parts, out) {
    if (!parts.has('destroy-during-create')) return;
    const n = Number(opts.values['lifecycle-trials'] ?? (opts.quick ? 20 : 100));
    if (!Number.isInteger(n) || n <= 0) throw new Error('--lifecycle-trials must be a positive integer');
    const seed = Number(opts.values['lifecycle-seed'] ?? 14);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const { rows, refMs, baseDiff } = await trials(n, seed, (s) => process.stderr.write(`${s}\n`));
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const failed = rows.filter((r) => r.failure !== undefined);
    const unexplained = failed.filter((r) => !LOST_TO_DESTROY.test(r.failure!));
    const orphaned = rows.filter((r) => r.orphans.length > 0);
    const left = rows.filter((r) => r.left !== undefined);
    const destroyFailed = rows.filter((r) => r.destroyFailure !== undefined);
    out(table(
      ['trials asked', 'seed', 'undisturbed create (ms, median of latest 5)', 'attempts', 'destroy during create', 'creates failed', 'unexplained', 'orphaned nodes', 'domains left', 'destroys failed', 'tree vs boot', 'wall (s)', 'main-thread CPU (s)'],
      [[
        String(n), String(seed), refMs.toFixed(0), String(rows.length), String(rows.filter((r) => r.during).length), String(failed.length), String(unexplained.length),
        `${orphaned.reduce((a, r) => a + r.orphans.length, 0)} (in ${orphaned.length} trials)`, String(left.length), String(destroyFailed.length), baseDiff,
        seconds.toFixed(1), ((cpu.user + cpu.system) / 1e6).toFixed(1),
      ]],
    ));
    const survived = rows.filter((r) => r.during && r.failure === undefined).length;
    out(`Destroys issued during a create whose create still succeeded (its last step ran before the destroy reached the domain, which the destroy then removed): ${survived}.`);
    out(`Attempts whose create had finished before the destroy was issued were destroyed afterwards and checked alike (${rows.filter((r) => !r.during).length}); counted in every column but "destroy during create".`);
    const steps = new Map<string, number>();
    for (const r of failed) {
      const step = /^xl create: domain \d+: (.+?): domain \d+ /.exec(r.failure!)?.[1] ?? 'other';
      steps.set(step, (steps.get(step) ?? 0) + 1);
    }
    out(`Failed creates by the step that failed: ${[...steps].map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}.`);
    out('Every failed create, with what it said (explained = a step found its domain being destroyed or gone):');
    for (const r of failed) out(`- trial ${r.t} (destroy after ${r.delayMs.toFixed(1)} ms): ${LOST_TO_DESTROY.test(r.failure!) ? 'explained' : 'UNEXPLAINED'}: ${r.failure}`);
    for (const r of destroyFailed) out(`- trial ${r.t}: xl destroy failed: ${r.destroyFailure}`);
    for (const r of orphaned) out(`- trial ${r.t} (${r.failure ?? 'created'}): ${r.orphans.length} orphaned nodes, e.g. ${r.orphans[0]}`);
    for (const r of left) out(`- trial ${r.t}: ${r.left}`);
  },
};
