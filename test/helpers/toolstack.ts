// Shared checks for the toolstack specs (and the bench's free-running destroy-during-create): a
// guest's devices Connected on both ends, the nodes that belong to one domain, how a create lost
// to a destroy says so, and "the tree is back to the baseline".
import assert from 'node:assert/strict';
import { vdevFromName } from '../../hypervisor/public/io/blkif.ts';
import { XenbusState } from '../../hypervisor/public/io/xenbus.ts';
import type { HostRuntime } from '../../sim/host-runtime.ts';
import type { Xl } from '../../sim/xl.ts';
import { tree, treeDiff } from './host.ts';

export const XVDA = vdevFromName('xvda')!;
export const XVDB = vdevFromName('xvdb')!;

/** The devices of the specs' standard guest: two disks and one NIC. */
export const DEVICES: readonly (readonly ['vbd' | 'vif', number])[] = [['vbd', XVDA], ['vbd', XVDB], ['vif', 0]];

export const twoDisksOneNic = (name: string) => ({
  name,
  disks: [{ vdev: 'xvda', target: `${name}-root`, sizeMiB: 8 }, { vdev: 'xvdb', target: `${name}-data`, sizeMiB: 4 }],
  vifs: [{}],
});

export interface DevInfo { name: string; state: number }

/** The value part of tree()'s "value|perms". */
export const value = (t: Map<string, string>, path: string): string | undefined => t.get(path)?.split('|')[0];

/** Both ends of every device Connected: as the guest's drivers see it, and in xenstore. */
export async function assertConnected(xl: Xl, domid: number, devices = DEVICES): Promise<void> {
  const r = await xl.guest<{ devices: DevInfo[] }>(domid, { cmd: 'devices' });
  assert.deepEqual(
    r.devices.map((d) => [d.name, d.state]).sort(),
    devices.map(([kind, devid]) => [`${kind}/${devid}`, XenbusState.XenbusStateConnected]).sort(),
  );
  const t = await tree(xl);
  for (const [kind, devid] of devices) {
    assert.equal(value(t, `/local/domain/${domid}/device/${kind}/${devid}/state`), '4', `${kind} ${devid} frontend`);
    assert.equal(value(t, `/local/domain/0/backend/${kind}/${domid}/${devid}/state`), '4', `${kind} ${devid} backend`);
  }
}

/**
 * How a create that lost to an `xl destroy` of its domain fails: the step that found the domain
 * going (dom0's toolstack, or xl's own last step), and that it went. Any other failure of a create
 * raced by a destroy is unexplained.
 */
export const LOST_TO_DESTROY = /^xl create: domain \d+: [a-z-]+( \S+)?: domain \d+ (is being destroyed|no longer exists)$/;

/** Every node that belongs to domain `domid` (with /vm/<uuid>): its home, backends, libxl's copy. */
export function domainNodes(t: Map<string, string>, domid: number, uuid: string): string[] {
  const mine = [
    `/local/domain/${domid}`, `/local/domain/0/backend/vbd/${domid}`, `/local/domain/0/backend/vif/${domid}`,
    `/local/domain/0/backend/console/${domid}`, `/libxl/${domid}`, `/vm/${uuid}`,
  ];
  return [...t.keys()].filter((p) => mine.some((m) => p === m || p.startsWith(`${m}/`))).sort();
}

/**
 * The tree is the one dom0 booted with, plus only the empty /vm and /libxl that libxl leaves
 * behind once its last domain is gone: every other node, value and ACL as before.
 */
export function assertBaseline(base: Map<string, string>, t: Map<string, string>): void {
  assert.deepEqual(treeDiff(base, t), { added: ['/libxl', '/vm'], removed: [] });
  for (const [p, v] of base) assert.equal(t.get(p), v, p);
  assert.equal(t.get('/libxl'), '|n0');
  assert.equal(t.get('/vm'), '|n0');
}

/** The domain is gone from the hypervisor (not even a zombie) and from `xl list`. */
export function assertGone(rt: HostRuntime, xl: Xl, domid: number): void {
  assert.equal(rt.host.domains.has(domid), false, `domain ${domid} still in the hypervisor`);
  assert.ok(!xl.list().some((r) => r.id === domid), `domain ${domid} still in xl list`);
  // Nothing of it stays mapped in dom0 (rings, console, xenstore page).
  assert.deepEqual(rt.gnttab.mappings(rt.host.domains.get(0)!).filter((m) => m.dom === domid), []);
}
