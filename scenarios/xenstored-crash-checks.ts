// What the xenstored crash, restart and failover scenarios share: a guest with a disk and a NIC
// whose devices connect, and the check that the devices' own rings - which never go through
// xenstore - keep working whatever happened to xenstored.
import { XsdSockmsgType } from '../hypervisor/public/io/xs_wire.ts';
import type { ScenarioRun } from '../sim/scenario/run.ts';
import { guestConfig } from '../sim/scenario/scenario.ts';

export const XVDA = 'vbd/51712';
const DEVICES = [XVDA, 'vif/0'] as const;

/** Frontend and backend of each device read Connected in xenstore (waiting for them). */
export async function devicesConnected(s: ScenarioRun, id: number): Promise<void> {
  for (const d of DEVICES) {
    s.expect(await s.waitFor(`/local/domain/${id}/device/${d}/state`, '4'), `${d} frontend Connected`);
    s.expect(await s.waitFor(`/local/domain/0/backend/${d.replace('/', `/${id}/`)}/state`, '4'), `${d} backend Connected`);
  }
}

/** `xl create` of the role `guest` named `name` with xvda and vif 0, then every device connects. */
export async function createGuestWithDevices(s: ScenarioRun, name: string): Promise<number> {
  const id = await s.step('xl create guest (xvda, vif 0)', () =>
    s.create('guest', guestConfig(name, { disks: [{ vdev: 'xvda', target: `${name}-root`, sizeMiB: 8 }], vifs: [{}] })));
  await s.step('every device connects', () => devicesConnected(s, id));
  return id;
}

/** The guest's drivers see both devices Connected, and 4 KiB of `fill` written at `sector` read back. */
export async function blockIoCompletes(s: ScenarioRun, fill: number, sector: number): Promise<void> {
  const seen = await s.guest<{ devices: { name: string; stateName: string }[] }>('guest', { cmd: 'devices' });
  s.expect(seen.devices.length === DEVICES.length && seen.devices.every((d) => d.stateName === 'XenbusStateConnected'),
    `the guest's drivers see ${seen.devices.map((d) => `${d.name}=${d.stateName}`).join(', ')}`);
  const data = new Uint8Array(4096).fill(fill);
  const w = await s.guest<{ status?: number; error?: string }>('guest', { cmd: 'blk', device: XVDA, op: 'write', sector, sectors: 8, data });
  s.expect(w.status === 0, `write through the ring: ${w.error ?? w.status}`);
  const r = await s.guest<{ status?: number; data?: Uint8Array }>('guest', { cmd: 'blk', device: XVDA, op: 'read', sector, sectors: 8 });
  s.expect(r.status === 0 && r.data?.every((b) => b === fill), 'the data read back is the data written');
}

/** The guest writes data/before = committed (answered). */
export async function guestWritesBefore(s: ScenarioRun): Promise<void> {
  await s.step('the guest writes data/before', async () => {
    const r = await s.guest<{ error?: string }>('guest', { cmd: 'xs', type: XsdSockmsgType.XS_WRITE, payload: 'data/before\0committed', timeoutNs: 1e9 });
    s.expect(r.error === undefined && !('timedOut' in r), `write data/before: ${JSON.stringify(r)}`);
  });
}
