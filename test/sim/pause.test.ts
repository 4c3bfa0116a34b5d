// Pausing a domain stops its vCPU in every runner (a thread of its own, packed on a pool thread,
// inline lockstep, lockstep on a thread), whichever way the pause comes: XEN_DOMCTL_pausedomain
// by hypercall, `xl pause`, or a fault injected mid-run. "Stopped" is read from the guest's own
// page (its timer ticks and the events it took), never from how long something took: a paused
// domain must show no change however long it is left, and the change after unpause is waited
// for, not timed.
import assert from 'node:assert/strict';
import { type ProbeReady, ProbeWord, type PauseProbeArgs } from '../../domains/domU/pause-probe.ts';
import { Domctl } from '../../hypervisor/public/domctl.ts';
import { Hypercall } from '../../hypervisor/public/xen.ts';
import { type HostOptions, HostRuntime } from '../../sim/host-runtime.ts';
import { Xl } from '../../sim/xl.ts';

const PROBE = new URL('../../domains/domU/pause-probe.ts', import.meta.url).href;
const MS = 1_000_000;

const RUNNERS: Record<string, HostOptions> = {
  'thread per vCPU': { mode: 'free' },
  // An idle vCPU that polls its upcall word before it sleeps must notice the pause while polling.
  'thread per vCPU, polling before it sleeps': { mode: 'free', spin: 200 },
  'packed on a pool thread': { mode: 'free', pool: 1 },
  // The same run loop polls a pool thread's doorbell: a pause rings it, and the poll sees that.
  'packed on a pool thread, polling before it sleeps': { mode: 'free', pool: 1, spin: 200 },
  'inline lockstep': { mode: 'lockstep', inline: true },
  'lockstep on a thread': { mode: 'lockstep' },
};

type Path = 'hypercall' | 'xl' | 'fault';

interface Probe {
  readonly domid: number;
  readonly ticks: () => number;
  readonly events: () => number;
  /** Messages from the simulator the probe's program took. */
  readonly mail: () => number;
  /** dom0 notifies the probe's port (EVTCHNOP_send on dom0's end). */
  readonly notify: () => void;
}

async function startProbe(rt: HostRuntime, args: PauseProbeArgs): Promise<Probe> {
  const d = await rt.createGuest({ paused: true, introduce: false, program: { module: PROBE, args } });
  const ready = rt.message<ProbeReady>(d.domid, (m) => m.cmd === 'probe');
  await rt.unpause(d.domid);
  const r = await ready;
  const page = new Int32Array(d.frame(r.gfn)!.sab);
  const dom0 = rt.host.domains.get(0)!;
  const bound = rt.evtchn.bindInterdomain(dom0, { remote_dom: r.domid, remote_port: r.port } as never);
  assert.equal(typeof bound, 'object', `dom0 binds the probe's port: ${JSON.stringify(bound)}`);
  const local = (bound as { local_port: number }).local_port;
  return {
    domid: d.domid,
    ticks: () => Atomics.load(page, ProbeWord.ticks),
    events: () => Atomics.load(page, ProbeWord.events),
    mail: () => Atomics.load(page, ProbeWord.mail),
    notify: () => assert.equal(rt.evtchn.send(dom0, { port: local } as never), 0),
  };
}

/** XEN_DOMCTL_pausedomain / unpausedomain as dom0 makes them (its trap lands here). */
function domctl(rt: HostRuntime, cmd: Domctl, domid: number): void {
  const r = rt.hypercalls.call(0, Hypercall.__HYPERVISOR_domctl, { cmd, domain: domid });
  assert.equal(r.ret, 0, `domctl ${Domctl[cmd]}`);
}

/** Pauses by `path`; resolves once the vCPU runs nothing (what each path's caller waits for). */
async function pause(rt: HostRuntime, xl: Xl, path: Path, domid: number): Promise<void> {
  if (path === 'xl') return xl.pause(domid);
  if (path === 'hypercall') domctl(rt, Domctl.XEN_DOMCTL_pausedomain, domid);
  else rt.faultPause(domid);
  await rt.vcpu(domid)!.stopped();
}

async function unpause(rt: HostRuntime, xl: Xl, path: Path, domid: number): Promise<void> {
  if (path === 'xl') return xl.unpause(domid);
  if (path === 'hypercall') domctl(rt, Domctl.XEN_DOMCTL_unpausedomain, domid);
  else rt.faultUnpause(domid);
}

/** Waits (without a time bound of its own) until `cond` holds, letting the host run meanwhile. */
async function until(rt: HostRuntime, cond: () => boolean): Promise<void> {
  while (!cond()) await rt.idle(MS);
}

describe('pause: a paused domain runs nothing, in every runner, by every path', function () {

  for (const [runner, opts] of Object.entries(RUNNERS)) {
    describe(runner, () => {
      let rt: HostRuntime;
      let xl: Xl;

      beforeEach(async () => {
        rt = new HostRuntime({ seed: 3, ...opts });
        await rt.bootDom0({ devices: false });
        xl = new Xl(rt);
      });

      afterEach(async () => {
        await rt.shutdown();
      });

      for (const path of ['hypercall', 'xl', 'fault'] as const) {
        it(`${path}: no event or message is taken while paused; the held ones are taken after unpause`, async () => {
          const p = await startProbe(rt, { tickNs: MS, ticks: 3 });
          await until(rt, () => p.ticks() === 3);
          await pause(rt, xl, path, p.domid);
          const before = p.events();
          const mailBefore = p.mail();
          p.notify();
          p.notify();
          rt.send(p.domid, { cmd: 'hello' });
          // Many hypervisor steps (lockstep: 50 ms of virtual time; free: 50 ms of real time).
          await rt.idle(50 * MS);
          assert.equal(p.events(), before, 'a paused vCPU takes no upcall');
          assert.equal(p.mail(), mailBefore, 'nor a message from the simulator');
          await unpause(rt, xl, path, p.domid);
          // Both notifications found the port already pending: one event.
          await until(rt, () => p.events() === before + 1 && p.mail() === mailBefore + 1);
          await rt.idle(10 * MS);
          assert.equal(p.events(), before + 1);
          assert.equal(p.mail(), mailBefore + 1);
        });

        if (opts.mode === 'free') {
          it(`${path}: a free-running guest's timers stop while paused and tick again after unpause`, async () => {
            const p = await startProbe(rt, { tickNs: MS });
            await until(rt, () => p.ticks() >= 3);
            await pause(rt, xl, path, p.domid);
            const held = p.ticks();
            await rt.idle(50 * MS);
            assert.equal(p.ticks(), held, 'no timer fires while paused');
            await unpause(rt, xl, path, p.domid);
            await until(rt, () => p.ticks() >= held + 3);
          });
        } else if (path !== 'xl') {
          // xl waits for the host to go quiet, when every timer due has fired; a hypercall or a
          // fault lands mid-run, at a hypervisor step on virtual time.
          it(`${path}: mid-run, the guest's timers stop for as long as it is paused`, async () => {
            const p = await startProbe(rt, { tickNs: MS, ticks: 100 });
            let atPause = -1;
            let atUnpause = -1;
            rt.deferOnHost(10.5 * MS, () => {
              atPause = p.ticks();
              if (path === 'hypercall') domctl(rt, Domctl.XEN_DOMCTL_pausedomain, p.domid);
              else rt.faultPause(p.domid);
            });
            rt.deferOnHost(30 * MS, () => {
              atUnpause = p.ticks();
              if (path === 'hypercall') domctl(rt, Domctl.XEN_DOMCTL_unpausedomain, p.domid);
              else rt.faultUnpause(p.domid);
            });
            await until(rt, () => p.ticks() === 100);
            assert.ok(atPause > 0 && atPause < 100, `paused while ticking (${atPause})`);
            assert.equal(atUnpause, atPause, 'no tick while paused');
          });
        }
      }
    });
  }
});
