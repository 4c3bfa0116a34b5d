// `npm run bench -- --only races`: how the scheduler finds the planted races with no fault
// injected (issue 10's table). Per race, buggy variant and strategy: the failure rate over the
// first seeds and the seeds needed to find it; the fixed variant over many seeds; and exhaustive
// exploration within a preemption bound (the vbd handshake completely, the races up to a cap),
// with runs per second.
import { RACES } from '../../scenarios/races.ts';
import vbdHandshake from '../../scenarios/vbd-handshake.ts';
import type { ScenarioDef } from '../scenario/scenario.ts';
import { explore } from '../scenario/explore.ts';
import { runScenario, withMeasuredSteps } from '../scenario/run.ts';
import { activeFaults, shrink } from '../scenario/shrink.ts';
import { swarm } from '../scenario/swarm.ts';
import { type BenchSection, table } from './common.ts';

const NONE = { spec: 'none' };
const STRATEGIES = ['random', 'pct:2', 'pct:3'] as const;

/** Races whose default run has at most this many choice points are the small ones, explored whole. */
const SMALL_CHOICE_POINTS = 150;

const buggyVariants = (d: ScenarioDef): string[] => Object.keys(d.variants ?? {}).filter((v) => d.expect?.[v] === 'fail');

export const racesSection: BenchSection = {
  name: 'races',
  title: 'Planted races with --faults none: failure rate and seeds to first failure per strategy; exhaustive exploration',
  parts: ['strategies', 'fixed', 'shrink', 'exhaustive'],
  async run(opts, parts, out) {
    const rateSeeds = opts.quick ? 50 : 200;
    const findBudget = opts.quick ? 200 : 1000;
    if (parts.has('strategies')) {
      const rows: string[][] = [];
      for (const d of RACES) {
        for (const variant of buggyVariants(d)) {
          for (const schedule of STRATEGIES) {
            const scenarios = [{ name: d.name, variants: [variant], expect: d.expect, schedule: await withMeasuredSteps(d, schedule, 1) }];
            const r = await swarm({ scenarios, seeds: rateSeeds, jobs: 2, faults: NONE, schedule });
            const s = r.summaries[0];
            let first = s.firstFailingSeed;
            if (first === undefined && findBudget > rateSeeds) {
              const more = await swarm({ scenarios, firstSeed: rateSeeds + 1, seeds: findBudget - rateSeeds, jobs: 2, faults: NONE, schedule, stopAtFirstFailure: true });
              first = more.summaries[0].firstFailingSeed;
            }
            const pct = (100 * s.failures.length) / s.runs;
            const race = pct > 0 && pct < 100 ? 'race' : pct === 0 ? 'NEVER FAILS' : 'FAILS ALWAYS';
            rows.push([d.race?.id ?? '', variant, schedule, first === undefined ? `> ${findBudget}` : String(first), `${pct.toFixed(1)} %`, race]);
          }
        }
      }
      out(table(['race', 'variant', 'schedule', 'seeds to first failure', `failure rate (${rateSeeds} seeds)`, 'verdict'], rows));
    }
    if (parts.has('fixed')) {
      const seeds = opts.quick ? 200 : 1000;
      const scenarios = RACES.map((d) => ({ name: d.name, variants: ['fixed'] }));
      const r = await swarm({ scenarios, seeds, jobs: 2, faults: NONE });
      out(table(['race', 'fixed variant: seeds', 'failing', 'seeds/min'], r.summaries.map((s) => [
        RACES.find((d) => d.name === s.scenario)?.race?.id ?? s.scenario, String(s.runs), String(s.failures.length),
        (r.runs / (r.wallMs / 60000)).toFixed(0),
      ])));
    }
    if (parts.has('shrink')) {
      // Each buggy variant's first failing seed (random schedule, default faults), shrunk; then the
      // shrunk schedule run again must fail the same way with the same trace.
      const rows: string[][] = [];
      for (const d of RACES) {
        for (const variant of buggyVariants(d)) {
          let seed: number | undefined;
          for (let s = 1; s <= findBudget && seed === undefined; s++) if ((await runScenario(d, { seed: s, variant })).result !== 'SUCCESS') seed = s;
          if (seed === undefined) {
            rows.push([d.race?.id ?? '', variant, `none in ${findBudget}`, '', '', '', '']);
            continue;
          }
          const t0 = performance.now();
          const res = await shrink(d, { seed, variant, faults: { spec: 'default' }, schedule: 'random' }, { maxTries: opts.quick ? 150 : 400 });
          const again = await runScenario(d, { seed, variant, faults: res.faults, schedule: res.schedule });
          const replays = again.hash === res.shortest.hash && again.result === res.shortest.result;
          rows.push([
            d.race?.id ?? '', variant, String(seed), `${res.original.preemptions.length} + ${activeFaults(res.original)}`,
            `${res.shortest.preemptions.length} (${res.shortest.switches}) + ${activeFaults(res.shortest)}${res.size <= 3 ? '' : ' (> 3)'}`, replays ? 'yes' : 'NO',
            `${res.tries} runs, ${((performance.now() - t0) / 1000).toFixed(1)} s`,
          ]);
        }
      }
      out(table(['race', 'variant', 'seed', 'steps off default + faults', 'shortest (CHESS preemptions) + faults', 'replays exactly', 'cost'], rows));
    }
    if (parts.has('exhaustive')) {
      const rows: string[][] = [];
      const cap = opts.quick ? 150 : 400;
      // Small scenarios (few choice points on the default run) are explored completely at bound
      // 1, fixed and buggy variants alike; the larger races only with --races-exhaustive all (at
      // 1-10 runs/s and up to ~1,500 schedules each, an hour or more on this machine).
      const all = opts.values['races-exhaustive'] === 'all';
      if (opts.values['races-exhaustive'] !== undefined && !['all', 'small'].includes(String(opts.values['races-exhaustive']))) {
        throw new Error(`--races-exhaustive: 'small' or 'all', not '${String(opts.values['races-exhaustive'])}'`);
      }
      const targets: { def: ScenarioDef; variants: string[] }[] = [
        { def: vbdHandshake, variants: Object.keys(vbdHandshake.variants ?? { fixed: {} }) },
        ...RACES.map((d) => ({ def: d, variants: ['fixed', ...buggyVariants(d)] })),
      ];
      for (const t of targets) {
        let small = true;
        for (const variant of t.variants) {
          if (!small) break;
          // Bound 1 with partial-order reduction, complete; then bound 2 with its last level
          // counted, not run - its schedules with <= 1 preemption all run (sleep sets are empty
          // along the default schedule and those branches are not the last level), which is bound
          // 1 without reduction, and the sleep sets decide which schedules with 2 would run.
          const probe = await explore(t.def, { variant, bound: 0 });
          if (!all && t.def !== vbdHandshake && probe.defaultChoicePoints > SMALL_CHOICE_POINTS) {
            small = false;
            rows.push([t.def.race?.id ?? t.def.name, t.variants.join(', '), String(probe.defaultChoicePoints),
              `not explored: > ${SMALL_CHOICE_POINTS} choice points (--races-exhaustive all)`, '', '', '', '', '', '']);
            break;
          }
          const one = await explore(t.def, { variant, bound: 1 });
          const two = await explore(t.def, { variant, bound: 2, countLeaves: true, maxRuns: cap });
          const capped = (r: typeof one): string => (r.complete ? '' : ' (capped)');
          rows.push([
            t.def.race?.id ?? t.def.name, variant, String(one.defaultChoicePoints),
            `${two.runs}${capped(two)}`, `${one.runs} (${one.prunedAlternatives} pruned)${capped(one)}`,
            `${two.failing} / ${one.failing}`, (one.runs / (one.wallMs / 1000)).toFixed(1),
            `${two.runs + two.leaves + two.prunedAlternatives}${two.complete ? '' : '+'}`, `${two.runs + two.leaves} (${two.prunedAlternatives} pruned)`,
            `${((100 * one.unknownSteps) / Math.max(1, one.footprintSteps)).toFixed(1)} %`,
          ]);
        }
      }
      out(table(['scenario', 'variant', 'choice points (default run)', '<= 1 preemption: schedules', 'run with partial-order reduction',
        'failing without / with reduction', 'runs/s (1 core)', '<= 2 preemptions: schedules', 'left by partial-order reduction', 'steps with unknown footprint'], rows));
    }
  },
};
