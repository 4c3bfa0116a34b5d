// A booted host for device and toolstack specs: inline lockstep (seeded, replayable), dom0 with
// xenstored, backends and the toolstack, and `xl` to drive it.
import type { Dom0Args } from '../../domains/dom0/dom0.ts';
import type { NodeDump } from '../../domains/dom0/toolstack/toolstack.ts';
import { HostRuntime, type TraceEvent } from '../../sim/host-runtime.ts';
import { Xl } from '../../sim/xl.ts';

export interface TestHost {
  readonly rt: HostRuntime;
  readonly xl: Xl;
  readonly trace: TraceEvent[];
}

/** The seeds every device/toolstack spec runs under. */
export const SEEDS = [1, 2, 3] as const;

export async function bootHost(seed: number, dom0: Dom0Args = {}, onTrace?: (e: TraceEvent) => void): Promise<TestHost> {
  const trace: TraceEvent[] = [];
  const rt = new HostRuntime({
    seed, mode: 'lockstep', inline: true,
    trace: (e) => {
      trace.push(e);
      onTrace?.(e);
    },
  });
  await rt.bootDom0(dom0);
  return { rt, xl: new Xl(rt), trace };
}

/** path -> "value|perms" for every node under `path`. */
export async function tree(xl: Xl, path = '/'): Promise<Map<string, string>> {
  const nodes: NodeDump[] = await xl.dump(path);
  return new Map(nodes.map((n) => [n.path, `${n.value}|${n.perms.join(',')}`]));
}

/** Paths in `after` that `before` lacks, and the other way round. */
export function treeDiff(before: Map<string, string>, after: Map<string, string>): { added: string[]; removed: string[] } {
  return {
    added: [...after.keys()].filter((p) => !before.has(p)).sort(),
    removed: [...before.keys()].filter((p) => !after.has(p)).sort(),
  };
}
