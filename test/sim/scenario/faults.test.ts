// Faults apart from schedules: which kinds a run may draw (`--faults`), what a seed draws, the
// swarm-testing subset, and the registry the components declare their kinds in.
import assert from 'node:assert/strict';
import { declareFault, faultKinds } from '../../../sim/scenario/fault-registry.ts';
import {
  applyFaults, describeFaults, faultArgs, FaultSelectionError, sampleFaults, selectFaults,
} from '../../../sim/scenario/faults.ts';
import type { FaultSpace } from '../../../sim/scenario/fault-registry.ts';
import { HostRuntime } from '../../../sim/host-runtime.ts';

const SPACE: FaultSpace = { jitter: { p: [0, 0.3], maxNs: 2e6 }, hotplugDelayNs: [0, 5e6], ringStart: true };
const names = (space: FaultSpace | undefined, spec: string): string[] => [...selectFaults(space, { spec }).keys()].map((k) => k.name);

describe('faults: kinds declared by their components, selected apart from the schedule', () => {
  it('every component\'s kinds are declared, each with an owner, a description and a default range', () => {
    const byName = new Map(faultKinds().map((k) => [k.name, k]));
    for (const [name, owner] of [['jitter', 'kernel'], ['ringStart', 'kernel'], ['spuriousEagain', 'xenstored'],
      ['hotplugDelayNs', 'toolstack'], ['suspendAckDelayNs', 'guest'], ['notifyHold', 'hypervisor'], ['notifyDrop', 'hypervisor']] as const) {
      const k = byName.get(name);
      assert.ok(k, name);
      assert.match(k.owner, new RegExp(owner));
      assert.ok(k.description.length > 0 && k.defaultRange !== undefined, name);
    }
  });

  it('a kind declared twice under one name is refused', () => {
    const jitter = faultKinds().find((k) => k.name === 'jitter')!;
    assert.throws(() => declareFault({ ...jitter, owner: 'someone else' }), /declared twice/);
    assert.doesNotThrow(() => declareFault(jitter), 'the same declaration again (a module loaded twice) is fine');
  });

  it('none, default, all, a list, and -kind select what they say, in the registry\'s order', () => {
    assert.deepEqual(names(SPACE, 'none'), []);
    assert.deepEqual(names(SPACE, 'default'), ['jitter', 'hotplugDelayNs', 'ringStart']);
    assert.deepEqual(names(SPACE, 'ringStart,jitter'), ['jitter', 'ringStart']);
    assert.deepEqual(names(SPACE, 'default,-jitter'), ['hotplugDelayNs', 'ringStart']);
    assert.deepEqual(names(SPACE, 'default,none,spuriousEagain'), ['spuriousEagain']);
    const all = names(SPACE, 'all');
    assert.ok(all.includes('spuriousEagain') && all.includes('notifyHold') && all.includes('jitter'), all.join());
    assert.ok(!all.includes('notifyDrop'), 'a fault real Xen never shows is on only when named');
    assert.ok(names(undefined, 'all,notifyDrop').includes('notifyDrop'));
    assert.deepEqual(names(undefined, 'default'), [], 'a scenario without faults has no default ones');
  });

  it('a kind the scenario gives no range to uses the range its component declared', () => {
    const sel = selectFaults(SPACE, { spec: 'jitter,spuriousEagain' });
    const range = new Map([...sel].map(([k, r]) => [k.name, r]));
    assert.deepEqual(range.get('jitter'), SPACE.jitter, 'the scenario\'s own range');
    assert.deepEqual(range.get('spuriousEagain'), faultKinds().find((k) => k.name === 'spuriousEagain')!.defaultRange);
  });

  it('an unknown kind is an error that names the known ones', () => {
    assert.throws(() => selectFaults(SPACE, { spec: 'jiter' }), (e: unknown) => e instanceof FaultSelectionError && /jitter/.test(e.message));
    assert.throws(() => sampleFaults({ nosuch: [0, 1] } as FaultSpace, 1), /undeclared kind "nosuch"/);
  });

  it('a seed draws the same faults every time, and --faults none draws nothing', () => {
    for (const seed of [1, 2, 77]) assert.deepEqual(sampleFaults(SPACE, seed), sampleFaults(SPACE, seed));
    assert.notDeepEqual(sampleFaults(SPACE, 1), sampleFaults(SPACE, 2));
    assert.deepEqual(sampleFaults(SPACE, 1, { spec: 'none' }), {});
    assert.equal(describeFaults({}), 'none');
    assert.match(describeFaults(sampleFaults(SPACE, 3)), /^jitter p=[\d.]+ max=2ms, hotplug delay [\d.]+ms, ring start 0xffffff[0-9a-f]{2}$/);
  });

  it('swarm mode keeps a seed-chosen subset whose values are those the full selection draws', () => {
    const subsets = new Set<string>();
    for (let seed = 1; seed <= 64; seed++) {
      const full = sampleFaults(SPACE, seed, { spec: 'all' });
      const some = sampleFaults(SPACE, seed, { spec: 'all', swarm: true });
      assert.deepEqual(some, sampleFaults(SPACE, seed, { spec: 'all', swarm: true }), 'the subset replays');
      for (const [k, v] of Object.entries(some)) assert.deepEqual(v, full[k], `seed ${seed} ${k}`);
      subsets.add(Object.keys(some).sort().join());
    }
    // Six kinds, each kept with probability 1/2: 64 seeds show many different subsets, the empty one too.
    assert.ok(subsets.size > 20, `${subsets.size} subsets`);
    assert.ok(subsets.has(''), 'some seed runs with no fault at all');
  });

  it('the replay arguments say the selection (nothing for the default)', () => {
    assert.equal(faultArgs({ spec: 'default' }), '');
    assert.equal(faultArgs({ spec: 'none' }), ' --faults none');
    assert.equal(faultArgs({ spec: 'all', swarm: true }), ' --faults all --fault-swarm');
  });

  it('what a draw sets: dom0\'s and the guests\' options, and the hypervisor\'s notification hook once', () => {
    const rt = new HostRuntime({ seed: 5, mode: 'lockstep', inline: true });
    const f = sampleFaults(undefined, 5, { spec: 'jitter,spuriousEagain,hotplugDelayNs,suspendAckDelayNs,ringStart,notifyHold,notifyDrop' });
    assert.equal(rt.evtchn.notifyFault, undefined);
    const { dom0, guest } = applyFaults(f, { evtchn: rt.evtchn, seed: 5 });
    assert.deepEqual(dom0, [
      { jitter: f.jitter }, { xenstored: { seed: 5, spuriousEagain: f.spuriousEagain } }, { quirks: { toolstack: { hotplugDelayNs: f.hotplugDelayNs } } },
    ]);
    assert.deepEqual(guest, [
      { jitter: f.jitter }, { quirks: { xenbus: { ringStart: f.ringStart } } }, { quirks: { manage: { suspendAckDelayNs: f.suspendAckDelayNs } } },
    ]);
    assert.equal(typeof rt.evtchn.notifyFault, 'function');
  });
});
