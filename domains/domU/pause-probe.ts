// A guest that shows whether its vCPU runs: it counts its timer ticks and the events it takes
// into one of its own pages, which whoever watches the domain reads without asking it anything
// (asking would need the very vCPU under test).
import type { ControlPort } from '../../hypervisor/public/vcpu.ts';
import type { Kernel } from '../kernel/kernel.ts';

export interface PauseProbeArgs {
  /** One tick every this many ns of the domain's clock. */
  readonly tickNs: number;
  /** Stop after this many ticks (lockstep needs an end to reach quiescence); default: never. */
  readonly ticks?: number;
}

/** i32 words of the probe's page. */
export const ProbeWord = { ticks: 0, events: 1, mail: 2 } as const;

export interface ProbeReady {
  readonly cmd: 'probe';
  readonly domid: number;
  /** The page holding the counters (ProbeWord). */
  readonly gfn: number;
  /** A port allocated for dom0 to bind and notify; each upcall for it counts one event. */
  readonly port: number;
}

export function main(k: Kernel, args: PauseProbeArgs, control: ControlPort): void {
  const { gfn, bytes } = k.allocPage();
  const words = new Int32Array(bytes.buffer, bytes.byteOffset, 3);
  // Each message from the simulator counts one.
  control.on('message', () => void Atomics.add(words, ProbeWord.mail, 1));
  const port = k.allocUnbound(0);
  k.on(port, () => void Atomics.add(words, ProbeWord.events, 1));
  const limit = args.ticks ?? Infinity;
  let n = 0;
  const tick = (): void => {
    Atomics.add(words, ProbeWord.ticks, 1);
    if (++n < limit) k.setTimer(args.tickNs, tick);
  };
  k.setTimer(args.tickNs, tick);
  control.postMessage({ cmd: 'probe', domid: k.domid, gfn, port } satisfies ProbeReady);
}
