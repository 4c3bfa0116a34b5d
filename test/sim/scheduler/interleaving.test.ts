// Tasks inside each domain interleave in lockstep, and the schedule alone decides a race: R01's
// buggy xenbus fails on some schedules and passes on others with no fault injected; a run's own
// preemptions replay it exactly; exhaustive exploration runs every schedule within its bound;
// shrinking finds a failing schedule with few preemptions that replays.
import assert from 'node:assert/strict';
import r01 from '../../../scenarios/race-r01-watch-first-event-lost.ts';
import bootAndShutdown from '../../../scenarios/boot-and-shutdown.ts';
import { XtfResult } from '../../../sim/report/xtf.ts';
import { runScenario } from '../../../sim/scenario/run.ts';
import { explore } from '../../../sim/scenario/explore.ts';
import { shrink } from '../../../sim/scenario/shrink.ts';

const NONE = { spec: 'none' };

describe('scheduler: tasks interleave inside domains, and schedules alone decide a race', function () {
  it('dom0 runs xenbus, xenwatch, xl, xl watches and the hotplug scripts as tasks; the guest its xenbus, reader and xenwatch', async () => {
    const r = await runScenario(r01, { seed: 1, faults: NONE });
    const tasks = (domid: number): string[] => r.trace.filter((e) => e.kind === 'task' && e.domid === domid).map((e) => String(e.task));
    for (const t of ['xenbus', 'xenwatch', 'xl', 'xl watches', 'hotplug']) assert.ok(tasks(0).includes(t), `dom0 task ${t}: ${tasks(0).join(', ')}`);
    for (const t of ['xenbus', 'xenbus reader', 'xenwatch']) assert.ok(tasks(1).includes(t), `guest task ${t}: ${tasks(1).join(', ')}`);
    assert.ok(r.steps > 100, `${r.steps} scheduler steps`);
  });

  it('R01 buggy with --faults none fails on some seeds and passes on others; fixed passes them all', async () => {
    const outcomes: string[] = [];
    for (let seed = 1; seed <= 16; seed++) {
      const r = await runScenario(r01, { seed, variant: 'buggy', faults: NONE });
      assert.ok(r.result === XtfResult.SUCCESS || r.result === XtfResult.FAILURE, `seed ${seed}: ${r.result} ${r.message ?? ''}`);
      outcomes.push(r.result);
      const fixed = await runScenario(r01, { seed, faults: NONE });
      assert.equal(fixed.result, XtfResult.SUCCESS, `fixed, seed ${seed}: ${fixed.message ?? ''}`);
    }
    assert.ok(outcomes.includes(XtfResult.FAILURE) && outcomes.includes(XtfResult.SUCCESS), outcomes.join(' '));
  });

  it('pct:2 is seeded too: the same seed replays the same trace, and it also finds the race', async () => {
    const a = await runScenario(r01, { seed: 5, variant: 'buggy', faults: NONE, schedule: 'pct:2' });
    const b = await runScenario(r01, { seed: 5, variant: 'buggy', faults: NONE, schedule: 'pct:2' });
    assert.equal(a.hash, b.hash);
    let found = false;
    for (let seed = 1; seed <= 20 && !found; seed++) found = (await runScenario(r01, { seed, variant: 'buggy', faults: NONE, schedule: 'pct:2' })).result !== XtfResult.SUCCESS;
    assert.ok(found, 'pct:2 finds R01 within 20 seeds');
  });

  it('a run replays exactly from its own preemptions (replay:STEP.CHOICE,...), with faults on', async () => {
    const r = await runScenario(r01, { seed: 3, variant: 'buggy' });
    assert.ok(r.preemptions.length > 0);
    const schedule = `replay:${r.preemptions.map((p) => `${p.step}.${p.choice}`).join(',')}`;
    const again = await runScenario(r01, { seed: 3, variant: 'buggy', schedule });
    assert.equal(again.result, r.result);
    assert.equal(again.events, r.events);
    assert.deepEqual(again.preemptions, r.preemptions);
    // The trace differs only in nothing: same events, same order (the hash covers them all).
    assert.equal(again.hash, r.hash);
  });

  it('explore: bound 0 is the default schedule alone; bound 1 runs it plus each other item at each choice point, once', async () => {
    const zero = await explore(r01, { variant: 'buggy', bound: 0 });
    assert.equal(zero.runs, 1);
    assert.ok(zero.complete);
    // Without partial-order reduction (test/sim/scheduler/por.test.ts has it): every schedule runs.
    const one = await explore(r01, { variant: 'buggy', bound: 1, por: false });
    const base = await runScenario(r01, { seed: 1, variant: 'buggy', faults: NONE, schedule: 'replay:-', recordChoices: true });
    const expected = 1 + (base.choicePoints ?? []).reduce((n, c) => n + c.items.length - 1, 0);
    assert.ok(one.complete);
    assert.equal(one.runs, expected, 'every single preemption of the default schedule, each once');
    assert.deepEqual(one.byPreemptions, [1, expected - 1]);
    assert.ok(one.failing > 0 && one.failing < one.runs, `${one.failing} of ${one.runs} schedules fail`);
  });

  it('shrink: a failing random run with faults shrinks to at most 3 preemptions and faults, and that schedule replays the failure', async () => {
    let seed = 1;
    while ((await runScenario(r01, { seed, variant: 'buggy' })).result === XtfResult.SUCCESS) assert.ok(++seed <= 40, 'a failing seed with faults in 1..40');
    const res = await shrink(r01, { seed, variant: 'buggy', faults: { spec: 'default' }, schedule: 'random' });
    assert.ok(res.size <= 3, `${res.size}: ${res.schedule}`);
    assert.ok(res.story.length === res.shortest.preemptions.length && res.story.every((l) => /ran before|preempted/.test(l)), res.story.join('\n'));
    const again = await runScenario(r01, { seed, variant: 'buggy', faults: res.faults, schedule: res.schedule });
    assert.equal(again.result, XtfResult.FAILURE);
    assert.equal(again.hash, res.shortest.hash);
  });

  it('vcpuStall: a stalled domain makes no hypercall until its stall ends, and the run still completes', async () => {
    const r = await runScenario(bootAndShutdown, { seed: 2, faults: { spec: 'vcpuStall' } });
    assert.equal(r.result, XtfResult.SUCCESS, r.message);
    const stalls = r.trace.filter((e) => e.kind === 'fault' && e.fault === 'vcpu-stall');
    assert.ok(stalls.length > 0, 'seed 2 draws some stalls');
    for (const st of stalls) {
      const from = Number(st.t);
      const to = from + Number(st.ns);
      const during = r.trace.filter((e) => e.kind === 'hypercall' && e.domid === st.domid && Number(e.t) > from && Number(e.t) < to);
      assert.deepEqual(during.map((e) => e.t), [], `dom${String(st.domid)} ran during its stall [${from}, ${to})`);
    }
  });
});
