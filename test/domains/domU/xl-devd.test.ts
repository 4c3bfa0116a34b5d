// `xl devd` (domains/domU/xl-devd.ts) against the real xenstored: it runs a backend's hotplug
// script when the backend waits in InitWait and is online, and the remove script when it is
// Closed and offline - also for a backend that got there before devd started (R13, xen
// 7d9fa19ec4), which the buggy variant misses. devd runs in dom0 here (it may run in any
// domain that holds backends); its scripts are recorded, not run.
import assert from 'node:assert/strict';
import { XenstoredDaemon } from '../../../domains/dom0/xenstored/daemon.ts';
import { connectLocal } from '../../../domains/dom0/xenstored/local-connection.ts';
import type { DeviceRef } from '../../../domains/dom0/toolstack/libxl.ts';
import type { XsHandle } from '../../../domains/libs/store/xs.ts';
import { type DevdEvent, type DevdQuirks, XlDevd } from '../../../domains/domU/xl-devd.ts';
import { XenbusState } from '../../../hypervisor/public/io/xenbus.ts';

const BE = '/local/domain/0/backend/vif/5/0';

/** Lets every queued reply and watch event be handled (event-loop turns, no clock). */
async function settle(): Promise<void> {
  for (let i = 0; i < 200; i++) await new Promise<void>((r) => setImmediate(r));
}

interface Harness {
  readonly xl: XsHandle;
  readonly scripts: { dev: DeviceRef; action: 'add' | 'remove' }[];
  readonly trace: (DevdEvent | { kind: 'oops'; error: string })[];
  start(): Promise<void>;
}

function harness(quirks: DevdQuirks = {}, addScript?: () => Promise<void>): Harness {
  const daemon = new XenstoredDaemon();
  const xl = connectLocal(daemon, 'xl');
  const scripts: Harness['scripts'] = [];
  const trace: Harness['trace'] = [];
  return {
    xl, scripts, trace,
    async start() {
      await xl.write('/local/domain/0/domid', '0');
      const devd = new XlDevd({ point: undefined, trace: (ev) => void trace.push(ev) }, connectLocal(daemon, 'devd'),
        async (dev, action) => {
          scripts.push({ dev, action });
          if (action === 'add') await addScript?.();
        }, quirks);
      await devd.start();
      await settle();
    },
  };
}

/** The backend dir as libxl writes it, then netback's state. */
async function backend(xl: XsHandle, state: XenbusState, online = '1'): Promise<void> {
  await xl.transaction(async (tx) => {
    await xl.write(`${BE}/frontend-id`, '5', tx);
    await xl.write(`${BE}/online`, online, tx);
    await xl.write(`${BE}/state`, String(state), tx);
  });
}

const VIF: DeviceRef = { kind: 'vif', devid: 0, frontend: 5, backend: 0 };

describe('xl devd (xl-devd.ts)', () => {
  it('runs the add script of a backend that reaches InitWait after devd started, once', async () => {
    const h = harness();
    await h.start();
    await backend(h.xl, XenbusState.XenbusStateInitialising);
    await settle();
    assert.deepEqual(h.scripts, [], 'nothing to do while the backend is Initialising');
    await h.xl.write(`${BE}/state`, String(XenbusState.XenbusStateInitWait));
    // More events for the same device (netback's and the script's own writes) add nothing.
    await h.xl.write(`${BE}/hotplug-status`, 'connected');
    await settle();
    await settle();
    assert.deepEqual(h.scripts, [{ dev: VIF, action: 'add' }]);
    assert.deepEqual(h.trace.map((e) => (e.kind === 'devd' ? e.event : e.kind)), ['add', 'add-done']);
  });

  it('runs the add script of a backend that was already in InitWait when devd started (xen 7d9fa19ec4)', async () => {
    const h = harness();
    await backend(h.xl, XenbusState.XenbusStateInitWait);
    await h.start();
    assert.deepEqual(h.scripts, [{ dev: VIF, action: 'add' }]);
  });

  it('buggy (onlyEventsAfterStart): never runs it - nothing under the device changes any more', async () => {
    const h = harness({ onlyEventsAfterStart: true });
    await backend(h.xl, XenbusState.XenbusStateInitWait);
    await h.start();
    assert.deepEqual(h.scripts, []);
  });

  it('leaves an offline backend in InitWait alone', async () => {
    const h = harness();
    await backend(h.xl, XenbusState.XenbusStateInitWait, '0');
    await h.start();
    assert.deepEqual(h.scripts, []);
  });

  it('runs the remove script of an added device once it is Closed and offline, then removes its backend dir', async () => {
    const h = harness();
    await h.start();
    await backend(h.xl, XenbusState.XenbusStateInitWait);
    await settle();
    await settle();
    await h.xl.transaction(async (tx) => {
      await h.xl.write(`${BE}/online`, '0', tx);
      await h.xl.write(`${BE}/state`, String(XenbusState.XenbusStateClosed), tx);
    });
    await settle();
    await settle();
    assert.deepEqual(h.scripts, [{ dev: VIF, action: 'add' }, { dev: VIF, action: 'remove' }]);
    await assert.rejects(h.xl.read(BE), 'the backend dir is gone');
  });

  it('ignores what is not a device of a kind it knows (the watched dir itself, console backends)', async () => {
    const h = harness();
    await h.start();
    await h.xl.write('/local/domain/0/backend/console/5/0/state', String(XenbusState.XenbusStateInitWait));
    await h.xl.write('/local/domain/0/backend/console/5/0/online', '1');
    await h.xl.write('/local/domain/0/backend/vif/5/state', String(XenbusState.XenbusStateInitWait));
    await settle();
    await settle();
    assert.deepEqual(h.scripts, []);
  });

  /** A device removed while its add script still runs: the add completes after the remove did. */
  async function removedDuringAdd(quirks: DevdQuirks): Promise<Harness> {
    let finishAdd!: () => void;
    const addRunning = new Promise<void>((r) => { finishAdd = r; });
    const h = harness(quirks, () => addRunning);
    await h.start();
    await backend(h.xl, XenbusState.XenbusStateInitWait);
    await settle();
    await h.xl.transaction(async (tx) => {
      await h.xl.write(`${BE}/online`, '0', tx);
      await h.xl.write(`${BE}/state`, String(XenbusState.XenbusStateClosed), tx);
    });
    await settle();
    assert.deepEqual(h.trace.map((e) => (e.kind === 'devd' ? e.event : e.kind)), ['add', 'remove', 'remove-done'], 'the remove completed first');
    finishAdd();
    await settle();
    return h;
  }

  it('an add that completes after its device\'s remove did works on a record of its own (xen fd519a5119)', async () => {
    const h = await removedDuringAdd({});
    assert.deepEqual(h.trace.map((e) => (e.kind === 'devd' ? e.event : e.kind)), ['add', 'remove', 'remove-done', 'add-done']);
  });

  it('buggy (addRemoveShareRecord): that add touches the record the remove freed', async () => {
    const h = await removedDuringAdd({ addRemoveShareRecord: true });
    const last = h.trace[h.trace.length - 1];
    assert.equal(last.kind, 'oops');
    assert.match(last.error ?? '', /use after free of the record of \/local\/domain\/0\/backend\/vif\/5\/0/);
  });
});
