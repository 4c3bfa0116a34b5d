// A guest's configuration, in xl.cfg's terms (name, memory, vcpus, type, disk, vif, on_*).

export type DomainType = 'pv' | 'hvm';

/** xl.cfg's on_poweroff / on_reboot / on_crash / on_watchdog actions that xensim carries out. */
export type ShutdownAction = 'destroy' | 'restart' | 'preserve';

export interface DiskConfig {
  /** Guest device name: xvda, xvdb, sda, hda ... */
  readonly vdev: string;
  /** The disk image in dom0 (`params`): a name; images live in dom0's memory. */
  readonly target: string;
  /** Size of a new image in MiB (ignored when the image exists). */
  readonly sizeMiB?: number;
  readonly mode?: 'w' | 'r';
  readonly devtype?: 'disk' | 'cdrom';
}

export interface VifConfig {
  readonly mac?: string;
  readonly bridge?: string;
  /** `handle` / devid; defaults to the vif's index. */
  readonly devid?: number;
  /**
   * xl.cfg's backend=: the domain whose netback serves this vif (a driver domain), by domid
   * here (xl also takes a name and looks it up); default dom0.
   */
  readonly backend?: number;
}

export interface DomainConfig {
  readonly name: string;
  readonly uuid?: string;
  /** MiB. */
  readonly memory?: number;
  readonly vcpus?: number;
  readonly type?: DomainType;
  readonly domid?: number;
  readonly disks?: readonly DiskConfig[];
  readonly vifs?: readonly VifConfig[];
  /** xl.cfg's driver_domain: the guest gets ~/libxl and ~/device-model dirs of its own. */
  readonly driver_domain?: boolean;
  readonly on_poweroff?: ShutdownAction;
  readonly on_reboot?: ShutdownAction;
  readonly on_crash?: ShutdownAction;
  readonly on_watchdog?: ShutdownAction;
}

/** A deterministic uuid from the name and domid (xl draws one at random; replays need the same). */
export function configUuid(cfg: DomainConfig, domid: number): string {
  if (cfg.uuid) return cfg.uuid;
  let h = 0x811c9dc5;
  for (const c of `${cfg.name}/${domid}`) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
  const hex = (h.toString(16).padStart(8, '0').repeat(4)).slice(0, 32);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** xl's default MAC: the Xen OUI 00:16:3e and three bytes from the domain and vif. */
export function defaultMac(domid: number, index: number): string {
  const b = [0x00, 0x16, 0x3e, (domid >> 8) & 0x7f, domid & 0xff, index & 0xff];
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
}
