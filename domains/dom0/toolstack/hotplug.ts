// The hotplug scripts libxl runs in dom0 once a backend waits in InitWait: `block` (opens the
// image and reports physical-device, then hotplug-status) and `vif-bridge` (plugs the vif into
// its bridge, then hotplug-status). Their xenstore writes are the scripts' own; the work behind
// them is the simulator's (images in memory, a software bridge).
import type { XsHandle } from '../../libs/store/xs.ts';
import type { Kernel } from '../../kernel/kernel.ts';
import { backendPath, type DeviceRef, type HotplugRunner } from './libxl.ts';
import type { DiskImages } from '../backends/disk-image.ts';

export interface HotplugOptions {
  /**
   * R19(d) (before xen 006b46b2d0): `xenstore-read` prints each value as it reads it inside its
   * transaction, so a commit that fails with EAGAIN and is run again prints everything twice.
   */
  readonly xenstoreReadPrintsInBody?: boolean;
  /** Fault: the script takes this long (ns of dom0's clock) before it writes anything. */
  readonly delayNs?: number;
  /** Bridge membership: called as the vif script plugs or unplugs a vif. */
  readonly bridge?: { plug(dev: DeviceRef, bridge: string): void; unplug(dev: DeviceRef): void };
}

/** Loop-style device numbers for images: major 7 (loop), minor by image. */
const LOOP_MAJOR = 7;

export function hotplugScripts(xs: XsHandle, k: Kernel, images: DiskImages, opts: HotplugOptions = {}): HotplugRunner {
  const minors = new Map<string, number>();
  const sleep = (ns: number): Promise<void> => new Promise((r) => void k.setTimer(ns, r));
  /**
   * One command of a script: the shell forks it and waits for it. Three places where Linux may
   * run anyone else in dom0 (netback, xenstored, the toolstack): after fork (parent or child may
   * go first), when the exec'd child gets the CPU, and when the shell wakes from waitpid. `work`
   * is what the command does here, if anything (the simulator has no ip or iptables; a bridge
   * command's effect is `work`'s).
   */
  const proc = async <T = void>(command: string, work?: () => T | Promise<T>): Promise<T | undefined> => {
    if (k.point) await k.point('hotplug');
    if (k.point) await k.point('hotplug');
    const r = await work?.();
    if (k.point) await k.point('hotplug');
    return r;
  };
  const read = async (p: string): Promise<string | undefined> => {
    try {
      return (await xs.read(p)).toString('latin1');
    } catch {
      return undefined;
    }
  };
  /**
   * `$(xenstore-read key...)`: xenstore_client.c reads the keys in one transaction and starts over
   * on EAGAIN; what it printed is the script's value (one line per key, the last newline cut by
   * the shell). Fixed, the output is kept back until the commit succeeds; the old client had
   * printed it already. A missing key fails the command (undefined).
   */
  const xenstoreRead = async (...paths: string[]): Promise<string | undefined> => {
    let out: string[] = [];
    for (;;) {
      if (!opts.xenstoreReadPrintsInBody) out = [];
      const tx = await xs.transactionStart();
      try {
        for (const p of paths) out.push((await xs.read(p, tx)).toString('latin1'));
      } catch {
        await xs.transactionEnd(tx, false).catch(() => undefined);
        return undefined;
      }
      if (await xs.transactionEnd(tx, true)) return out.join('\n');
    }
  };
  return async (dev: DeviceRef, action: 'add' | 'remove'): Promise<void> => {
    if (opts.delayNs) await sleep(opts.delayNs);
    const be = backendPath(dev);
    if (dev.kind === 'vbd') {
      if (action === 'remove') return;
      // block: t=$(xenstore_read_default type), p=$(xenstore_read params), mode=$(xenstore_read mode).
      const type = (await xenstoreRead(`${be}/type`)) ?? 'MISSING';
      const params = await xenstoreRead(`${be}/params`);
      // mode feeds the script's sharing check, which images held in memory do not need.
      await xenstoreRead(`${be}/mode`);
      if (type !== 'phy' && type !== 'file') {
        await xs.write(`${be}/hotplug-error`, `unknown type ${type}`).catch(() => undefined);
        await xs.write(`${be}/hotplug-status`, 'error').catch(() => undefined);
        return;
      }
      if (!params || !images.get(params)) {
        await xs.write(`${be}/hotplug-error`, `${params ?? '(none)'} does not exist`).catch(() => undefined);
        await xs.write(`${be}/hotplug-status`, 'error').catch(() => undefined);
        return;
      }
      if (!minors.has(params)) minors.set(params, minors.size);
      const minor = minors.get(params)!;
      await xs.write(`${be}/physical-device`, `${LOOP_MAJOR.toString(16)}:${minor.toString(16)}`);
      await xs.write(`${be}/physical-device-path`, `/dev/loop${minor}`);
      await xs.write(`${be}/hotplug-status`, 'connected');
    } else if (dev.kind === 'vif') {
      if (action === 'remove') {
        opts.bridge?.unplug(dev);
        return;
      }
      // vif-bridge online as Linux runs it (vif-common.sh, xen-hotplug-common.sh,
      // xen-network-common.sh, logging.sh, locking.sh): every command is a process of its own,
      // so dom0 may run netback, xenstored or anyone else between any two of them.
      await proc('vif-bridge online');
      for (let i = 0; i < 3; i++) await proc('dirname "$0"');
      await proc('grep ^LC_');
      await proc('cut -d= -f1');
      await proc('logger (log debug XENBUS_PATH=...)');
      await proc('which ifup');
      await proc('xenstore-read vifname', () => read(`${be}/vifname`));
      await proc('xenstore-read ip', () => read(`${be}/ip`));
      const bridge = (await proc('xenstore-read bridge', () => read(`${be}/bridge`))) ?? 'xenbr0';
      await proc('ip link show <bridge>');
      // setup_virtual_bridge_port.
      await proc('ip link set dev <vif> down');
      await proc('ip link set dev <vif> address fe:ff:ff:ff:ff:ff');
      await proc('ip address flush dev <vif>');
      // add_to_bridge.
      await proc('which brctl');
      try {
        await proc('brctl addif <bridge> <vif>', () => opts.bridge?.plug(dev, bridge));
      } catch (e) {
        // As the real script does on failure: say why in xenstore.
        await xs.write(`${be}/hotplug-error`, e instanceof Error ? e.message : String(e)).catch(() => undefined);
        await xs.write(`${be}/hotplug-status`, 'error').catch(() => undefined);
        return;
      }
      await proc('ip link set dev <vif> up');
      // handle_iptable, under the iptables lock.
      await proc('iptables -L -n');
      await proc('flock -x (claim_lock iptables)');
      await proc('iptables -I FORWARD -m physdev --physdev-in <vif> -j ACCEPT');
      await proc('iptables -I FORWARD -m state --state RELATED,ESTABLISHED -m physdev --physdev-out <vif> -j ACCEPT');
      await proc('logger (log debug Successful vif-bridge online)');
      // success.
      await proc('logger (log debug Writing hotplug-status)');
      await proc('xenstore-write hotplug-status connected', () => xs.write(`${be}/hotplug-status`, 'connected'));
    }
  };
}
