// Partial-order reduction in exhaustive exploration: a step's footprint says what other domains
// can see of it; schedules that only reorder commuting steps run once; and what the search finds
// - which schedules fail, how, and what every domain did - is the same with the reduction as
// without it, in fewer runs.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import r01 from '../../../scenarios/race-r01-watch-first-event-lost.ts';
import { type RunResult, runScenario } from '../../../sim/scenario/run.ts';
import { explore } from '../../../sim/scenario/explore.ts';
import { failureSignature } from '../../../sim/scenario/swarm-report.ts';
import { conflicts, domObject, type Footprint, frameObject } from '../../../sim/scheduler/footprint.ts';

const NONE = { spec: 'none' };

const fp = (domid: number, more: { reads?: string[]; writes?: string[]; global?: boolean } = {}): Footprint => ({
  global: more.global ?? false,
  reads: new Set([domObject(domid), ...(more.reads ?? [])]),
  writes: new Set([domObject(domid), ...(more.writes ?? [])]),
});

/**
 * How a run ended, and what each domain did in order (its own trace events): two schedules that
 * differ only in the order of commuting steps of different domains end alike.
 */
function outcome(r: RunResult): string {
  const per = new Map<string, string[]>();
  for (const e of r.trace) {
    if (e.kind === 'preempt') continue;
    const k = `${String(e.host ?? '')}/${e.domid ?? '-'}`;
    if (!per.has(k)) per.set(k, []);
    per.get(k)!.push(JSON.stringify(e));
  }
  const h = createHash('sha256');
  for (const k of [...per.keys()].sort()) h.update(`${k}\n${per.get(k)!.join('\n')}\n`);
  return `${failureSignature(r)} ${h.digest('hex')}`;
}

describe('exhaustive exploration: partial-order reduction', function () {
  it('footprints: steps of one domain always conflict; of two, only through what both touch; an unknown effect conflicts with all', () => {
    assert.ok(conflicts(fp(0), fp(0)), 'one domain');
    assert.ok(!conflicts(fp(0), fp(1)), 'two domains, nothing shared');
    assert.ok(conflicts(fp(0, { writes: [domObject(1)] }), fp(1)), 'an event sent to domain 1 conflicts with its steps');
    assert.ok(conflicts(fp(0, { reads: [frameObject(7)] }), fp(1, { writes: [frameObject(7)] })), 'a ring page written by one, read by the other');
    assert.ok(!conflicts(fp(0, { reads: [frameObject(7)] }), fp(1, { reads: [frameObject(7)] })), 'both only read it');
    assert.ok(conflicts(fp(0, { global: true }), fp(1)), 'unknown');
  });

  it('a run records every step: what could run, what ran, and a footprint; an xl command\'s answer to the simulator is an unknown effect', async () => {
    const r = await runScenario(r01, { seed: 1, variant: 'buggy', faults: NONE, schedule: 'replay:-', recordFootprints: true });
    const log = r.stepLog!;
    assert.equal(log.length, r.steps);
    for (const s of log) assert.ok(s.fp.reads.has(domObject(s.ids[s.chosen].domid)) && s.fp.writes.has(domObject(s.ids[s.chosen].domid)));
    assert.ok(log.some((s) => s.fp.global && /message 'toolstackd'/.test(s.fp.why ?? '')), 'the toolstack answering the scenario');
    // The guest's xenstore ring page: the guest writes requests into it, dom0's xenstored answers in it.
    const ring = log.filter((s) => !s.fp.global && [...s.fp.writes].some((w) => w.startsWith('mfn:')));
    assert.ok(ring.some((s) => s.ids[s.chosen].domid === 0) && ring.some((s) => s.ids[s.chosen].domid === 1), 'both sides write the shared ring page');
    assert.ok(log.some((s, i) => i > 0 && s.ids[s.chosen].domid !== log[i - 1].ids[log[i - 1].chosen].domid && !conflicts(s.fp, log[i - 1].fp)), 'some consecutive steps of dom0 and the guest commute');
  });

  it('R01 buggy, two preemptions around its window: the same failures and the same outcomes as without reduction, in fewer runs', async () => {
    const window = { from: 545, to: 556 };
    const seen = { on: new Set<string>(), off: new Set<string>() };
    const off = await explore(r01, { variant: 'buggy', bound: 2, window, por: false, onRun: (r) => void seen.off.add(outcome(r)) });
    const on = await explore(r01, { variant: 'buggy', bound: 2, window, onRun: (r) => void seen.on.add(outcome(r)) });
    assert.ok(off.complete && on.complete);
    assert.ok(off.failing > 0, 'the window holds the race');
    assert.ok(on.failing > 0, 'found with the reduction too');
    assert.deepEqual([...on.signatures.keys()].sort(), [...off.signatures.keys()].sort());
    assert.deepEqual([...seen.on].sort(), [...seen.off].sort(), 'every outcome without reduction is reached with it');
    assert.ok(on.runs < off.runs, `${on.runs} runs with reduction, ${off.runs} without`);
    assert.equal(on.runs + on.prunedAlternatives, off.runs, 'each pruned alternative is one schedule with two preemptions');
  });

  it('counting the last level instead of running it gives the same number of schedules', async () => {
    const window = { from: 545, to: 556 };
    const counted = await explore(r01, { variant: 'buggy', bound: 2, window, countLeaves: true });
    const run = await explore(r01, { variant: 'buggy', bound: 2, window, por: false, countLeaves: true });
    assert.equal(counted.runs, run.runs, 'no pruning below the first preemption');
    assert.equal(counted.leaves + counted.prunedAlternatives, run.leaves);
  });
});
