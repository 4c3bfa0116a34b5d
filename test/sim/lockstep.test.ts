// Lockstep: one vCPU runs at a time, the next chosen by a seeded PRNG, virtual time advancing
// only when all are idle. The same seed replays the same run byte for byte; other seeds
// interleave differently.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { WorkloadArgs } from '../../domains/domU/xenstore-workload.ts';
import { HostRuntime } from '../../sim/host-runtime.ts';

const WORKLOAD = new URL('../../domains/domU/xenstore-workload.ts', import.meta.url).href;

interface Done { cmd: string; domid: number; results: unknown[]; retries: number }

/** Boots dom0 and three guests racing on a shared counter; returns the trace hash and results. */
async function runOnce(seed: number, inline = false): Promise<{ hash: string; events: number; retries: number; order: string }> {
  const rt = new HostRuntime({ seed, mode: 'lockstep', trace: true, inline });
  try {
    await rt.bootDom0();
    await rt.toolstackWrite('/shared', '0', ['b0']);
    const done: Promise<Done>[] = [];
    const args: WorkloadArgs = { ops: [['write', 'data/x', 'hello'], ['txIncrement', '/shared', 5], ['read', '/shared']] };
    for (const id of [1, 2, 3]) {
      await rt.createGuest({ domid: id, paused: true, program: { module: WORKLOAD, args } });
      const w = rt.control(id);
      done.push(new Promise((resolve) => w.on('message', (m: Done) => m.cmd === 'done' && resolve(m))));
    }
    // All three start together: the scheduler's seeded choices decide who races whom.
    await rt.unpause(1, 2, 3);
    const results = await Promise.all(done);
    await rt.quiesce();
    const lines = rt.trace.map((e) => JSON.stringify(e)).join('\n');
    // Who ran when: the sequence of callers of EVTCHNOP_send is the interleaving.
    const order = rt.trace.filter((e) => e.kind === 'hypercall').map((e) => e.domid).join('');
    return {
      hash: createHash('sha256').update(lines).digest('hex'),
      events: rt.trace.length,
      retries: results.reduce((n, r) => n + r.retries, 0),
      order,
    };
  } finally {
    await rt.shutdown();
  }
}

describe('lockstep: seeded, replayable runs', function () {

  it('the same seed gives a byte-identical trace', async () => {
    const a = await runOnce(42);
    const b = await runOnce(42);
    assert.ok(a.events > 100, `a real workload ran (${a.events} trace events)`);
    assert.equal(a.hash, b.hash);
    assert.equal(a.retries, b.retries);
  });

  it('different seeds interleave the domains differently', async () => {
    const runs = await Promise.all([1, 2, 3].map((s) => runOnce(s)));
    const orders = new Set(runs.map((r) => r.order));
    assert.ok(orders.size > 1, 'at least two of three seeds interleave differently');
    // Racing transactions really conflicted somewhere (EAGAIN, then retry).
    assert.ok(runs.some((r) => r.retries > 0), `retries: ${runs.map((r) => r.retries).join(',')}`);
  });
});

describe('lockstep inline: every vCPU on the hypervisor\'s thread', function () {

  it('runs the same schedule as one thread per vCPU: the traces are byte-identical', async () => {
    const threads = await runOnce(7);
    const inline = await runOnce(7, true);
    assert.ok(inline.events > 100, `a real workload ran (${inline.events} trace events)`);
    assert.equal(inline.hash, threads.hash);
  });

  it('replays a seed exactly and interleaves other seeds differently', async () => {
    const a = await runOnce(42, true);
    const b = await runOnce(42, true);
    assert.equal(a.hash, b.hash);
    const orders = new Set((await Promise.all([1, 2, 3, 4].map((s) => runOnce(s, true)))).map((r) => r.order));
    assert.ok(orders.size > 1, 'seeds interleave differently');
  });
});

describe('lockstep inline packs many guests on one thread', function () {

  async function hundred(seed: number): Promise<{ hash: string; counter: string; threads: number }> {
    const rt = new HostRuntime({ seed, mode: 'lockstep', trace: true, inline: true });
    try {
      await rt.bootDom0();
      await rt.toolstackWrite('/shared', '0', ['b0']);
      const done: Promise<Done>[] = [];
      const args: WorkloadArgs = { ops: [['write', 'data/x', 'hello'], ['txIncrement', '/shared', 1]] };
      for (let id = 1; id <= 100; id++) {
        await rt.createGuest({ domid: id, paused: true, program: { module: WORKLOAD, args } });
        const w = rt.control(id);
        done.push(new Promise((resolve) => w.on('message', (m: Done) => m.cmd === 'done' && resolve(m))));
      }
      await rt.unpause(...Array.from({ length: 100 }, (_, i) => i + 1));
      await Promise.all(done);
      await rt.quiesce();
      const { Worker } = await import('node:worker_threads');
      const threads = [...rt.vcpus.values()].filter((t) => t.control instanceof Worker).length;
      const lines = rt.trace.map((e) => JSON.stringify(e)).join('\n');
      const hash = createHash('sha256').update(lines).digest('hex');
      const counter = await rt.toolstack<string>('read', { path: '/shared' });
      return { hash, counter, threads };
    } finally {
      await rt.shutdown();
    }
  }

  it('100 guests, no thread of their own, racing increments: every one lands and the seed replays', async () => {
    const a = await hundred(11);
    const b = await hundred(11);
    assert.equal(a.threads, 0, 'no worker threads at all');
    assert.equal(a.counter, '100', 'every transactional increment landed once');
    assert.equal(a.hash, b.hash);
  });
});
