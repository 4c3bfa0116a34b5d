// The guest's xenbus bus (domains/kernel/xenbus-probe.ts) against the real xenstored, with the
// toolstack's part played by a dom0 connection: a device the toolstack removes and re-adds at the
// same path before the bus's watch callbacks run is a new device, and is probed as one.
import assert from 'node:assert/strict';
import { XenstoredDaemon } from '../../../domains/dom0/xenstored/daemon.ts';
import { connectLocal } from '../../../domains/dom0/xenstored/local-connection.ts';
import type { XsHandle } from '../../../domains/libs/store/xs.ts';
import { Kernel } from '../../../domains/kernel/kernel.ts';
import { XenbusBus, type XenbusDevice, type XenbusDriver } from '../../../domains/kernel/xenbus-probe.ts';
import { XenbusState } from '../../../hypervisor/public/io/xenbus.ts';

const GUEST = 1;
const FE = `/local/domain/${GUEST}/device/vbd/51712`;
const beDir = (backend: number): string => `/local/domain/${backend}/backend/vbd/${GUEST}/51712`;

/** A guest kernel with no hypervisor under it: the bus only talks to xenstore here. */
function guestKernel(): Kernel {
  const noHypervisor = { call: (): never => { throw new Error('no hypervisor in this spec'); } };
  return new Kernel({
    domid: GUEST, sharedInfo: new SharedArrayBuffer(4096), pages: [], vcpus: 1,
    startInfo: { domid: GUEST, nr_pages: 0, store_mfn: 0, store_evtchn: 0, seed: 1 },
  }, noHypervisor);
}

/** A frontend driver that says Initialised once probed, and records what the bus asked of it. */
class RecordingFrontend implements XenbusDriver {
  readonly type = 'vbd';
  readonly probed: XenbusDevice[] = [];
  readonly removed: XenbusDevice[] = [];
  async probe(dev: XenbusDevice): Promise<void> {
    this.probed.push(dev);
    await dev.switchState(XenbusState.XenbusStateInitialised);
  }
  async otherendChanged(dev: XenbusDevice, state: XenbusState): Promise<void> {
    // A backend that went away: the frontend heads for Closing, as blkfront does.
    if (state === XenbusState.XenbusStateUnknown || state === XenbusState.XenbusStateClosed) {
      await dev.switchState(XenbusState.XenbusStateClosing);
    }
  }
  async remove(dev: XenbusDevice): Promise<void> {
    this.removed.push(dev);
    await dev.switchState(XenbusState.XenbusStateClosed);
  }
}

/** libxl's device add: backend and frontend directories, both Initialising, in one transaction. */
async function addDevice(xl: XsHandle, backend: number): Promise<void> {
  await xl.transaction(async (tx) => {
    for (const [k, v] of [
      [`${beDir(backend)}/frontend`, FE], [`${beDir(backend)}/frontend-id`, String(GUEST)], [`${beDir(backend)}/state`, '1'],
      [`${FE}/backend`, beDir(backend)], [`${FE}/backend-id`, String(backend)], [`${FE}/state`, '1'],
    ]) await xl.write(k, v, tx);
  });
}

/** The forced removal libxl does when a backend domain died: both directories, no handshake. */
async function forceRemove(xl: XsHandle, backend: number): Promise<void> {
  await xl.transaction(async (tx) => {
    await xl.rm(FE, tx);
    await xl.rm(beDir(backend), tx);
  });
}

/** Lets every queued reply and watch callback run (a bounded number of event-loop turns, no clock). */
async function settle(): Promise<void> {
  for (let i = 0; i < 200; i++) await new Promise<void>((r) => setImmediate(r));
}

async function read(xs: XsHandle, path: string): Promise<string | undefined> {
  return (await xs.read(path).catch(() => undefined))?.toString('latin1');
}

describe('xenbus bus: a device removed and re-added before the bus looks (xenbus-probe.ts)', () => {
  for (const backend of [0, 7]) {
    it(`probes the new device and leaves its state alone (new backend domid ${backend})`, async () => {
      const daemon = new XenstoredDaemon();
      const xl = connectLocal(daemon, 'xl');
      const guestXs = connectLocal(daemon, 'guest');
      const driver = new RecordingFrontend();
      const bus = new XenbusBus(guestKernel(), guestXs, { role: 'frontend' });
      bus.register(driver);
      await addDevice(xl, 0);
      await bus.start();
      await settle();
      assert.equal(driver.probed.length, 1);
      assert.equal(await read(xl, `${FE}/state`), String(XenbusState.XenbusStateInitialised));

      // The guest's xenwatch is held while the toolstack removes the device and adds a new one.
      let release!: () => void;
      const held = new Promise<void>((r) => { release = r; });
      bus.watch.beforeDispatch = () => held;
      await forceRemove(xl, 0);
      await addDevice(xl, backend);
      bus.watch.beforeDispatch = undefined;
      release();
      await settle();

      assert.equal(driver.removed.length, 1, 'the old device is unregistered');
      assert.equal(driver.removed[0], driver.probed[0]);
      assert.equal(driver.probed.length, 2, 'the new device is probed');
      assert.equal(bus.devices.get('vbd/51712'), driver.probed[1]);
      assert.equal(driver.probed[1].otherendId, backend);
      // The old device's Closing/Closed never lands in the new device's state node.
      assert.equal(await read(xl, `${FE}/state`), String(XenbusState.XenbusStateInitialised));
      assert.deepEqual(bus.watch.errors, []);
    });
  }

  it('a device still there, its state moved on by the driver, is not probed again', async () => {
    const daemon = new XenstoredDaemon();
    const xl = connectLocal(daemon, 'xl');
    const driver = new RecordingFrontend();
    const bus = new XenbusBus(guestKernel(), connectLocal(daemon, 'guest'), { role: 'frontend' });
    bus.register(driver);
    await addDevice(xl, 0);
    await bus.start();
    await settle();
    // Any write under the device fires the bus's root watch again.
    await xl.write(`${FE}/some-key`, 'x');
    await xl.write(`${beDir(0)}/state`, String(XenbusState.XenbusStateInitWait));
    await settle();
    assert.equal(driver.probed.length, 1);
    assert.equal(driver.removed.length, 0);
    assert.equal(await read(xl, `${FE}/state`), String(XenbusState.XenbusStateInitialised));
  });
});
