// What every live-migration scenario checks: the destination holds the guest's memory as it was at
// the final suspend, each device of the guest Connected on both ends (and so its drivers see them),
// and the source host has no trace of the domain left - not the domain, nor a node of it.
import type { MigrateOutcome, ScenarioHost, ScenarioRun } from '../sim/scenario/run.ts';
import { ScenarioFailure } from '../sim/scenario/scenario.ts';

export const DISK = 'vbd/51712';
export const VIF = 'vif/0';
/** The devices a migration scenario's guest has (xvda and one NIC). */
export const DEVICES = [DISK, VIF] as const;

/** The kernel's view of its devices (the guest's `devices` command). */
export interface GuestDevices {
  devices: { name: string; stateName: string }[];
  recovered: { device: string; op: number; sector: number; sectors: number; status?: number }[];
  resumes: number;
  errors: string[];
}

/** Every device of the role's domain Connected in xenstore on both ends and in the guest's drivers. */
export async function everyDeviceConnected(s: ScenarioRun, role: string, devices: readonly string[] = DEVICES): Promise<GuestDevices> {
  const h = s.hostOf(role);
  const id = s.domid(role);
  for (const d of devices) s.expect(await h.waitFor(`/local/domain/${id}/device/${d}/state`, '4', 5e9), `host ${h.name} domain ${id}: ${d} frontend Connected`);
  for (const d of await h.deviceStates(id)) {
    s.expect(d.frontend === '4' && d.backend === '4', `host ${h.name} domain ${id}: ${d.kind}/${d.devid} frontend ${d.frontend}, backend ${d.backend}`);
  }
  const seen = await s.guest<GuestDevices>(role, { cmd: 'devices' });
  s.expect(seen.devices.length === devices.length && seen.devices.every((d) => d.stateName === 'XenbusStateConnected'),
    `the guest's drivers see ${seen.devices.map((d) => `${d.name}=${d.stateName}`).join(', ')}`);
  return seen;
}

/** The host has no domain `domid` and no node of it (its own dir, its backends, libxl's). */
export async function expectDomainGone(s: ScenarioRun, h: ScenarioHost, domid: number): Promise<void> {
  s.expect(!h.rt.host.domains.has(domid) && !h.xl.domains.has(domid), `host ${h.name}: domain ${domid} still exists`);
  const mine = new RegExp(`^(/local/domain/${domid}|/local/domain/0/backend/[a-z]+/${domid}|/libxl/${domid})(/|$)`);
  const left = (await h.xl.dump('/')).filter((n) => mine.test(n.path));
  s.expect(left.length === 0, `host ${h.name}: nodes of domain ${domid} left: ${left.map((n) => n.path).join(', ')}`);
}

/** A migration that succeeded: a new domain at the destination with the suspended memory; the source's gone. */
export async function expectMigrated(s: ScenarioRun, out: MigrateOutcome): Promise<{ downtimeNs: number; rounds: readonly number[] }> {
  if (out.send.status === 'rejected' || out.receive.status === 'rejected') {
    const why = [out.send, out.receive].map((r) => (r.status === 'rejected' ? String(r.reason instanceof Error ? r.reason.message : r.reason) : 'ok'));
    throw new ScenarioFailure(`xl migrate failed: sender ${why[0]}; receiver ${why[1]}`);
  }
  const sent = out.send.value;
  const got = out.receive.value;
  s.expect(got.hash !== undefined && got.hash === sent.hash, `memory at the destination ${got.hash?.slice(0, 12)} != at the final suspend ${sent.hash?.slice(0, 12)}`);
  s.expect(sent.log.at(-1) === 'Migration successful.', `xl migrate: ${sent.log.join(' / ')}`);
  await expectDomainGone(s, s.hosts.get(out.from.host)!, out.from.domid);
  return { downtimeNs: sent.downtimeNs, rounds: sent.rounds };
}
