// The hotplug scripts libxl runs in dom0 once a backend waits in InitWait: `block` (opens the
// image and reports physical-device, then hotplug-status) and `vif-bridge` (plugs the vif into
// its bridge, then hotplug-status). Their xenstore writes are the scripts' own; the work behind
// them is the simulator's (images in memory, a software bridge).
import type { XsHandle } from '../../libs/store/xs.ts';
import type { Kernel } from '../../kernel/kernel.ts';
import { backendPath, type DeviceRef, type HotplugRunner } from './libxl.ts';
import type { DiskImages } from '../backends/disk-image.ts';

export interface HotplugOptions {
  /** Fault: the script takes this long (ns of dom0's clock) before it writes anything. */
  readonly delayNs?: number;
  /** Bridge membership: called as the vif script plugs or unplugs a vif. */
  readonly bridge?: { plug(dev: DeviceRef, bridge: string, mac: string): void; unplug(dev: DeviceRef): void };
}

/** Loop-style device numbers for images: major 7 (loop), minor by image. */
const LOOP_MAJOR = 7;

export function hotplugScripts(xs: XsHandle, k: Kernel, images: DiskImages, opts: HotplugOptions = {}): HotplugRunner {
  const minors = new Map<string, number>();
  const sleep = (ns: number): Promise<void> => new Promise((r) => void k.setTimer(ns, r));
  const read = async (p: string): Promise<string | undefined> => {
    try {
      return (await xs.read(p)).toString('latin1');
    } catch {
      return undefined;
    }
  };
  return async (dev: DeviceRef, action: 'add' | 'remove'): Promise<void> => {
    if (opts.delayNs) await sleep(opts.delayNs);
    const be = backendPath(dev);
    if (dev.kind === 'vbd') {
      if (action === 'remove') return;
      const params = await read(`${be}/params`);
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
      const bridge = (await read(`${be}/bridge`)) ?? 'xenbr0';
      const mac = (await read(`${be}/mac`)) ?? '';
      try {
        opts.bridge?.plug(dev, bridge, mac);
      } catch (e) {
        // As the real script does on failure: say why in xenstore.
        await xs.write(`${be}/hotplug-error`, e instanceof Error ? e.message : String(e)).catch(() => undefined);
        await xs.write(`${be}/hotplug-status`, 'error').catch(() => undefined);
        return;
      }
      await xs.write(`${be}/hotplug-status`, 'connected');
    }
  };
}
