// The xenstore domain's program (Xen's xenstore-stubdom: xenstored on Mini-OS, started by
// init-xenstore-domain): xenstored, alone in a domain of its own, serving every domain over its
// ring - dom0 included. It learns dom0's event channel from its command line (--event, the port
// dom0's kernel allocated for it) and maps dom0's ring from dom0's GNTTAB_RESERVED_XENSTORE grant
// (dom0_init()); guests are introduced by dom0's toolstack as always, and Xen sends it
// VIRQ_DOM_EXC (init-xenstore-domain made it the handler). Dom0 may crash: the store stays.
import type { MessagePort } from 'node:worker_threads';
import type { Kernel } from '../kernel/kernel.ts';
import type { XenstoredCrashCommand } from '../dom0/dom0.ts';
import type { Profile, XenstoredFaults } from '../dom0/xenstored/core.ts';
import { XenstoredDaemon } from '../dom0/xenstored/daemon.ts';
import { DomainRings, domainExists, traceDaemon } from '../dom0/xenstored/domain-rings.ts';
import { connectLocal } from '../dom0/xenstored/local-connection.ts';
import type { XsHandle } from '../libs/store/xs.ts';
import { xenstoreLs } from '../libs/store/ls.ts';

export interface XenstoreStubdomArgs {
  /** --event: dom0's store event channel, which dom0's kernel allocated for this domain. */
  readonly event: number;
  readonly profile?: Profile;
  /** Send every xenstore message to the simulator's trace. */
  readonly trace?: boolean;
  /** Faults and buggy variants of xenstored (the scenario engine's knobs). */
  readonly xenstored?: XenstoredFaults;
}

export async function main(k: Kernel, args: XenstoreStubdomArgs, control: MessagePort): Promise<void> {
  if (!Number.isInteger(args.event) || args.event <= 0) throw new Error(`xenstored: --event ${String(args.event)} is no port`);
  const daemon = new XenstoredDaemon({
    profile: args.profile ?? 'c', faults: args.xenstored, dom0Ring: true,
    // xc_domain_getinfo, which XSM allows the xenstore domain.
    domainExists: (domid) => domainExists(k, domid),
    clock: () => Math.floor(k.now() / 1e9),
    clockMs: () => Math.floor(k.now() / 1e6),
    timer: (fn, ms) => void k.setTimer(ms * 1e6, fn),
  });
  if (args.trace) traceDaemon(k, daemon);
  const rings = new DomainRings(k, daemon, args.trace ?? false);
  rings.start();
  rings.bindDomExc();
  // dom0_init(): dom0's ring is mapped and bound like any introduced domain's, then dom0 is
  // notified - its kernel takes that first event as xenstored_ready.
  daemon.xs.introduceDom0(args.event);
  rings.sync();
  rings.notify(0);
  daemon.flush();

  // xenstored dies (a fault) and, when asked, starts again from its last state after a while:
  // every ring its state names, dom0's included, is mapped again.
  let restartAfterNs: number | undefined;
  daemon.onCrash = () => {
    k.trace({ kind: 'fault', fault: 'xenstored-crash' });
    if (restartAfterNs !== undefined) k.setTimer(restartAfterNs, () => rings.restart());
  };
  // The simulator's own look at the tree (never part of the story): an untraced connection here.
  let inspector: XsHandle | undefined;
  control.on('message', (m: { cmd: 'dump'; id?: number; path?: string } | XenstoredCrashCommand) => {
    if (m.cmd === 'xenstored-crash') {
      restartAfterNs = m.restartAfterNs;
      daemon.crash({ whileHandlingRequestFrom: m.whileHandlingRequestFrom });
      control.postMessage({ cmd: 'xenstored-crashd', domid: k.domid });
      return;
    }
    if (m.cmd !== 'dump') return;
    inspector ??= connectLocal(daemon, 'inspect', { untraced: true });
    xenstoreLs(inspector, m.path ?? '/').then(
      (result) => control.postMessage({ cmd: 'dumpd', id: m.id, result }),
      (e: unknown) => control.postMessage({ cmd: 'dumpd', id: m.id, error: e instanceof Error ? e.message : String(e) }),
    );
  });
  control.postMessage({ cmd: 'ready' });
}
