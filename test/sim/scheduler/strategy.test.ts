// The scheduler's strategies as tables: what each picks, and how a schedule is written down.
import assert from 'node:assert/strict';
import {
  decodeChoices, defaultChoice, encodeChoices, parseSchedule, PctStrategy, PriorityStrategy, RandomStrategy, ReplayStrategy, type SchedItem, ScheduleRecord,
} from '../../../sim/scheduler/strategy.ts';

const items = (...xs: [number, number][]): SchedItem[] => xs.map(([domid, task]) => ({ domid, task }));

describe('scheduler strategies', () => {
  describe('the default choice (a run of defaults preempts nobody)', () => {
    const cases: { name: string; ready: SchedItem[]; last?: SchedItem; want: number }[] = [
      { name: 'the task that ran last goes on', ready: items([0, 0], [1, 2], [1, 3]), last: { domid: 1, task: 3 }, want: 2 },
      { name: 'else the first ready item', ready: items([0, 0], [1, 2]), last: { domid: 1, task: 5 }, want: 0 },
      { name: 'first step: the first ready item', ready: items([0, 1], [1, 1]), want: 0 },
    ];
    for (const c of cases) it(c.name, () => assert.equal(defaultChoice(c.ready, c.last), c.want));
  });

  it('a record counts as preemptions exactly the steps that did not take the default', () => {
    const rec = new ScheduleRecord();
    rec.note(items([0, 0], [1, 1]), 0); // default (first)
    rec.note(items([0, 0], [1, 1]), 1); // preempts dom0's interrupts
    rec.note(items([1, 1], [1, 2]), 0); // dom1 task 1 goes on: default
    rec.note(items([1, 2]), 0); // no choice
    rec.note(items([0, 3], [1, 2]), 0); // dom1 task 2 ran last and is ready: taking dom0 task 3 preempts it
    assert.deepEqual(rec.preemptions, [1, 4]);
    assert.deepEqual(rec.widths, [2, 2, 2, 1, 2]);
  });

  it('random is a seeded walk: the same seed picks the same, another seed differs somewhere', () => {
    const ready = items([0, 0], [0, 1], [1, 0], [1, 1]);
    const walk = (seed: number): number[] => {
      const s = new RandomStrategy(seed);
      return Array.from({ length: 64 }, () => s.pick(ready));
    };
    assert.deepEqual(walk(7), walk(7));
    assert.notDeepEqual(walk(7), walk(8));
    assert.ok(walk(7).every((i) => i >= 0 && i < ready.length));
  });

  it('pct: the highest-priority task runs until a change point drops it below every other', () => {
    const ready = items([0, 1], [1, 1], [2, 1]);
    // depth 2 over 10 steps: exactly one change point in 1..10.
    const s = new PctStrategy(3, 2, 10);
    const picks = Array.from({ length: 10 }, () => s.pick(ready));
    const switches = picks.filter((p, i) => i > 0 && p !== picks[i - 1]).length;
    assert.ok(switches <= 1, `at most one switch with one change point: ${picks.join(',')}`);
    // Depth 1 never changes its mind.
    const one = new PctStrategy(9, 1, 10);
    const first = one.pick(ready);
    for (let i = 0; i < 20; i++) assert.equal(one.pick(ready), first);
    assert.equal(s.spec, 'pct:2:10');
  });

  it('replay forces the given steps and takes the default elsewhere; an impossible choice falls back and says so', () => {
    const r = new ReplayStrategy(new Map([[1, 1], [2, 5]]));
    const ready = items([0, 0], [1, 1]);
    assert.equal(r.pick(ready), 0);
    assert.equal(r.pick(ready), 1);
    assert.equal(r.pick(ready), 1, 'step 2 asks for item 5 of 2: the default (dom1 task 1 goes on)');
    assert.equal(r.diverged, true);
  });

  it('raise: from its step on, the raised task runs whenever it is ready; before it, and while it waits, the default', () => {
    const s = new PriorityStrategy('raise', [{ step: 2, domid: 1, task: 4 }]);
    const ready = items([0, 0], [0, 2], [1, 4]);
    assert.equal(s.pick(ready), 0, 'step 0: default (first)');
    assert.equal(s.pick(ready), 0, 'step 1: dom0 interrupts go on');
    assert.equal(s.pick(ready), 2, 'step 2: raised dom1 task 4 preempts them');
    assert.equal(s.pick(items([0, 0], [0, 2])), 0, 'step 3: it waits; the first item runs');
    assert.equal(s.pick(items([0, 2], [1, 4])), 1, 'step 4: ready again, it runs at once');
    assert.equal(s.spec, 'raise:2.1:4');
  });

  it('lower: from its step on, the lowered task runs only when nothing else can', () => {
    const s = new PriorityStrategy('lower', [{ step: 1, domid: 0, task: 2 }]);
    assert.equal(s.pick(items([0, 2], [1, 1])), 0, 'step 0: not lowered yet: default');
    assert.equal(s.pick(items([0, 2], [1, 1])), 1, 'step 1: dom0 task 2 would go on, but it is held');
    assert.equal(s.pick(items([0, 0], [0, 2], [1, 1])), 2, 'step 2: dom1 task 1 goes on');
    assert.equal(s.pick(items([0, 2])), 0, 'step 3: alone, it runs');
    assert.equal(parseSchedule('lower:1.0:2', 1).spec, 'lower:1.0:2');
  });

  const specs: { text: string; ok: boolean }[] = [
    { text: 'random', ok: true }, { text: 'pct:3', ok: true }, { text: 'pct:2:500', ok: true }, { text: 'replay:-', ok: true },
    { text: 'replay:14.1,233.0', ok: true }, { text: 'pct:0', ok: false }, { text: 'pct:x', ok: false }, { text: 'replay:14', ok: true },
    { text: 'replay:1.2.3', ok: false }, { text: 'raise:431.0:6', ok: true }, { text: 'lower:2.1:3,9.0:1', ok: true }, { text: 'lower:2.1', ok: false }, { text: 'exhaustive', ok: false }, { text: '', ok: false },
  ];
  for (const c of specs) {
    it(`--schedule ${JSON.stringify(c.text)} ${c.ok ? 'parses' : 'is refused with a message'}`, () => {
      if (c.ok) assert.doesNotThrow(() => parseSchedule(c.text, 1));
      else assert.throws(() => parseSchedule(c.text, 1), /schedule|pct|STEP/);
    });
  }

  it('a schedule written as text reads back the same', () => {
    const m = new Map([[3, 1], [10, 0], [77, 4]]);
    assert.equal(encodeChoices(m), '3.1,10.0,77.4');
    assert.deepEqual(decodeChoices(encodeChoices(m)), m);
    assert.deepEqual(decodeChoices('-'), new Map());
  });
});
