// Which faults a run has, apart from its schedule: the selection (`--faults none|default|all|LIST`,
// optionally in swarm mode), the seed's draw of each selected kind, and what the draw sets in the
// components. The same seed and selection always draw the same faults, so a run replays with them.
// The kinds themselves are declared by the components that own them (see fault-registry.ts).
import type { Dom0Args } from '../../domains/dom0/dom0.ts';
import type { GuestArgs } from '../../domains/domU/guest.ts';
import { Prng } from '../../domains/kernel/kernel.ts';
import { type FaultHost, type FaultKind, faultKind, faultKinds, FaultRng, type Faults, type FaultSpace } from './fault-registry.ts';
// The components' declarations, in the order seeds draw them (kept as it was before the registry,
// so a seed draws what it drew then).
import '../../domains/kernel/faults.ts';
import '../../domains/dom0/xenstored/faults.ts';
import '../../domains/dom0/toolstack/faults.ts';
import '../../domains/kernel/xenbus-faults.ts';
import '../../domains/domU/faults.ts';
import './hypervisor-faults.ts';

export type { Faults, FaultSpace } from './fault-registry.ts';

/**
 * The `--faults` argument: comma-separated `none`, `default` (the scenario's own fault space),
 * `all` (every kind real Xen can show), kind names to add, `-kind` to take one away; read left to
 * right. `swarm` (Groce et al., "Swarm testing", ISSTA 2012): each seed keeps a random subset of
 * the selected kinds, since one fault can hide a race another exposes.
 */
export interface FaultSelection {
  readonly spec: string;
  readonly swarm?: boolean;
}

export const DEFAULT_FAULTS: FaultSelection = { spec: 'default' };

/** The kinds a selection turns on for a scenario, each with its range (the scenario's, or the kind's own). */
export function selectFaults(space: FaultSpace | undefined, sel: FaultSelection = DEFAULT_FAULTS): Map<FaultKind, unknown> {
  const on = new Set<string>();
  for (const raw of sel.spec.split(',')) {
    const tok = raw.trim();
    if (tok === '' || tok === 'none') {
      if (tok === 'none') on.clear();
      continue;
    }
    if (tok === 'default') {
      for (const k of Object.keys(space ?? {})) on.add(k);
    } else if (tok === 'all') {
      for (const k of faultKinds()) if (!k.outsideXen) on.add(k.name);
    } else {
      const off = tok.startsWith('-');
      const name = off ? tok.slice(1) : tok;
      if (!faultKind(name)) throw new FaultSelectionError(`no fault kind "${name}" (known: ${faultKinds().map((k) => k.name).join(', ')})`);
      if (off) on.delete(name);
      else on.add(name);
    }
  }
  const out = new Map<FaultKind, unknown>();
  // Registry order, so the draw does not depend on how the list was written.
  for (const k of faultKinds()) {
    if (!on.has(k.name)) continue;
    const range = (space as Record<string, unknown> | undefined)?.[k.name];
    out.set(k, range === undefined ? k.defaultRange : range);
  }
  for (const k of Object.keys(space ?? {})) {
    if (!faultKind(k)) throw new FaultSelectionError(`the scenario's faults name an undeclared kind "${k}"`);
  }
  return out;
}

export class FaultSelectionError extends Error {}

const FAULT_SALT = 0xfa017;
const SWARM_SALT = 0x5a4b1;

/** The seed's faults: every selected kind drawn in registry order; in swarm mode, a subset kept. */
export function sampleFaults(space: FaultSpace | undefined, seed: number, sel: FaultSelection = DEFAULT_FAULTS): Faults {
  const selected = selectFaults(space, sel);
  const rng = new FaultRng(new Prng((seed ^ FAULT_SALT) >>> 0));
  // The subset comes from its own stream: the values drawn are those of the full selection.
  const keep = new Prng((seed ^ SWARM_SALT) >>> 0);
  const out: Record<string, unknown> = {};
  for (const [kind, range] of selected) {
    const v = kind.draw(range, rng);
    if (sel.swarm && keep.below(2) === 0) continue;
    out[kind.name] = v;
  }
  return out;
}

/** One line for the start of a run: `jitter p=0.31 max=2ms, spurious EAGAIN 0.05`. */
export function describeFaults(f: Faults): string {
  const parts: string[] = [];
  for (const [name, v] of Object.entries(f)) {
    const k = faultKind(name);
    parts.push(k ? k.describe(v) : `${name}=${JSON.stringify(v)}`);
  }
  return parts.length ? parts.join(', ') : 'none';
}

/** The `--faults ...` arguments that select `sel` again (nothing for the default). */
export function faultArgs(sel: FaultSelection | undefined): string {
  if (!sel) return '';
  return `${sel.spec === 'default' ? '' : ` --faults ${sel.spec}`}${sel.swarm ? ' --fault-swarm' : ''}`;
}

/** What the drawn faults set: dom0's options, every guest's, and hooks in the host. */
export function applyFaults(f: Faults, host: FaultHost): { dom0: Dom0Args[]; guest: GuestArgs[] } {
  const dom0: Dom0Args[] = [];
  const guest: GuestArgs[] = [];
  const hooks = new Set<(host: FaultHost, faults: Faults) => void>();
  for (const [name, v] of Object.entries(f)) {
    const k = faultKind(name);
    if (!k) throw new FaultSelectionError(`no fault kind "${name}"`);
    if (k.dom0) dom0.push(k.dom0(v, host));
    if (k.guest) guest.push(k.guest(v));
    if (k.host) hooks.add(k.host);
  }
  for (const h of hooks) h(host, f);
  return { dom0, guest };
}
