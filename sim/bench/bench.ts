// `npm run bench [-- options]`: xensim's benchmarks, printed as markdown-like tables.
// A benchmark, not a test: it asserts nothing about timings; targets are printed next to the numbers.
//
// Sections are listed in SECTIONS below; add a module to sim/bench/ and list it there.
// Progress goes to stderr, results to stdout, so `npm run bench > results.md` keeps just the tables.
import { execFileSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import {
  type BenchOptions, type BenchSection, REPO_ROOT, installExitHandlers, runAllCleanups,
} from './common.ts';
import { lockstepSection } from './lockstep.ts';
import { packingSection } from './packing.ts';
import { ringSection } from './ring.ts';
import { xenstoredSection } from './xenstored.ts';
import { devicesSection, swarmSection } from './scenarios.ts';
import { racesSection } from './races.ts';
import { startupSection } from './startup.ts';
import { migrationSection } from './migration.ts';
import { resilienceSection } from './resilience.ts';
import { uiSection } from './ui.ts';
import { bighostSection } from './bighost.ts';
import { soakSection } from './soak.ts';
import { lifecycleSection } from './lifecycle.ts';

const SECTIONS: readonly BenchSection[] = [
  xenstoredSection, ringSection, lockstepSection, packingSection, bighostSection, lifecycleSection, devicesSection, swarmSection, racesSection, startupSection, migrationSection,
  resilienceSection, soakSection, uiSection,
];

const HELP = `usage: npm run bench -- [options]

  --quick               fewer operations and nodes (a smoke run)
  --only LIST           sections or section.part, comma separated, e.g. xenstored or xenstored.mem
                        (${SECTIONS.map((s) => `${s.name}: ${s.parts.join(', ')}`).join('; ')})
  --rounds N            alternating rounds per measurement, medians taken (default 3, quick 1)

xenstored section:
  --subject KIND        column under test: xensim (default), oracle-c, oracle-ocaml (stand-ins)
  --profile P           xensim behaviour profile: c (default) or ocaml
  --ref KIND            reference column: oracle-c (default), oracle-ocaml
  --n N                 xs-bench operations per phase, 1 client (default 10000, quick 2000)
  --clients N           concurrent clients (default 8)
  --n8 N                xs-bench operations per phase and client, concurrent (default 2000, quick 500)
  --nodes N             nodes held in the memory test (default 1000000, quick 100000)
  --mem-seconds S       time cap for loading an oracle server (default 45, quick 10); the rest is
                        extrapolated, since C xenstored 4.17 slows down as its store grows

bighost section:
  --bighost-rss-mb MB   stop a run whose RSS passes MB (default 12000)
  --bighost-xl-guests N the run-time 40,000-guest case: guests xl-created before bare domains take
                        every other domid (default 500, quick 50)

lifecycle section:
  --lifecycle-trials N  xl destroy during xl create, free-running (default 100, quick 20)
  --lifecycle-seed N    seed of the destroys' delays (default 14; the host's timing is not seeded)

races section:
  --races-exhaustive K  small (default: races whose default run has <= 150 choice points, explored
                        whole at bound 1) or all (every race whole: an hour or more)

soak section:
  --soak-seconds S      length of the idle and of the hostile phase, per profile (default 120, quick 20)
  --soak-kinds LIST     hostile guests among replies, events, txns (default all)
  --soak-profiles LIST  c, ocaml (default both)
  --soak-churn-seconds S  length of part churn's mixed churn, guests coming and going, per profile
                        (default 600, quick 60)

Needs the Debian packages xen-utils-4.17 xenstore-utils libxen-dev gcc, and ../shared/oracle.
`;

function gitHead(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
  } catch {
    return '?';
  }
}

/** Parses `--only`: section name → selected parts. */
function selection(only: string | undefined): Map<BenchSection, Set<string>> {
  const chosen = new Map<BenchSection, Set<string>>();
  if (!only) {
    for (const s of SECTIONS) chosen.set(s, new Set(s.parts));
    return chosen;
  }
  for (const item of only.split(',').map((x) => x.trim()).filter(Boolean)) {
    const [name, part] = item.split('.', 2);
    const sec = SECTIONS.find((s) => s.name === name);
    if (!sec) throw new Error(`--only: unknown section '${name}' (sections: ${SECTIONS.map((s) => s.name).join(', ')})`);
    if (part !== undefined && !sec.parts.includes(part)) {
      throw new Error(`--only: section ${name} has no part '${part}' (parts: ${sec.parts.join(', ')})`);
    }
    const set = chosen.get(sec) ?? new Set<string>();
    for (const p of part === undefined ? sec.parts : [part]) set.add(p);
    chosen.set(sec, set);
  }
  // Keep the SECTIONS order.
  return new Map(SECTIONS.filter((s) => chosen.has(s)).map((s) => [s, chosen.get(s)!]));
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      help: { type: 'boolean', short: 'h' },
      quick: { type: 'boolean' },
      only: { type: 'string' },
      rounds: { type: 'string' },
      subject: { type: 'string' },
      profile: { type: 'string' },
      ref: { type: 'string' },
      n: { type: 'string' },
      n8: { type: 'string' },
      clients: { type: 'string' },
      nodes: { type: 'string' },
      'mem-seconds': { type: 'string' },
      'bighost-rss-mb': { type: 'string' },
      'bighost-xl-guests': { type: 'string' },
      'lifecycle-trials': { type: 'string' },
      'lifecycle-seed': { type: 'string' },
      'races-exhaustive': { type: 'string' },
      'soak-seconds': { type: 'string' },
      'soak-kinds': { type: 'string' },
      'soak-profiles': { type: 'string' },
      'soak-churn-seconds': { type: 'string' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const quick = values.quick ?? false;
  const rounds = values.rounds === undefined ? (quick ? 1 : 3) : Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds <= 0) throw new Error(`--rounds must be a positive integer`);
  const opts: BenchOptions = { quick, rounds, values };
  const chosen = selection(values.only);

  installExitHandlers();
  const out = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  const t0 = Date.now();
  out(`# xensim benchmarks${quick ? ' (--quick)' : ''}`);
  out('');
  out(`commit ${gitHead()}, ${new Date().toISOString()}, node ${process.version}, ${cpus().length} cores ` +
    `(${cpus()[0]?.model ?? '?'}), load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  out('');
  let failed = 0;
  for (const [section, parts] of chosen) {
    out(`## ${section.title}`);
    out('');
    const ts = Date.now();
    try {
      await section.run(opts, parts, out);
      out(`(${section.name}: ${((Date.now() - ts) / 1000).toFixed(0)} s)`);
    } catch (e) {
      failed++;
      out(`**${section.name} failed:** ${(e as Error).message.split('\n')[0]}`);
      process.stderr.write(`bench: section ${section.name} failed:\n${(e as Error).message}\n`);
    } finally {
      runAllCleanups();
    }
    out('');
  }
  out(`Total: ${((Date.now() - t0) / 1000).toFixed(0)} s.`);
  return failed > 0 ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    runAllCleanups();
    process.exitCode = code;
  },
  (e: unknown) => {
    runAllCleanups();
    process.stderr.write(`bench: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 2;
  },
);
