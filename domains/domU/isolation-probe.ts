// A guest program for the isolation acceptance test. Two guests run it: the *target* (B) owns a
// page with a known pattern, a few grant entries, event channel ports and private xenstore nodes;
// the *prober* (A) then attempts everything Xen forbids a guest to do to another guest and records
// the exact answer Xen gives (GNTST_* status, -errno, xenstore error name) for each attempt.
//
// The two coordinate only through xenstore, as real guests would: B publishes what it set up in
// a node only A may read; A says (in a node only B may read) when its watches are in place and
// when it is finished. Nothing here sleeps on the host's clock, so it also runs in lockstep.
import type { MessagePort } from 'node:worker_threads';
import { XsError, type XsHandle } from '../libs/store/xs.ts';
import type { HypercallClient } from '../../hypervisor/public/hypercall_page.ts';
import { Domctl } from '../../hypervisor/public/domctl.ts';
import { EvtchnOp, EvtchnStat } from '../../hypervisor/public/event_channel.ts';
import {
  GNTCOPY_dest_gref, GNTCOPY_source_gref, GnttabOp, GntSt, GRANT_ENTRIES_PER_PAGE_V1,
} from '../../hypervisor/public/grant_table.ts';
import { SchedOp, ShutdownReason } from '../../hypervisor/public/sched.ts';
import { DOMID_SELF, Errno, Hypercall } from '../../hypervisor/public/xen.ts';
import type { Kernel } from '../kernel/kernel.ts';
import { xenbusInit } from '../kernel/xenbus.ts';

export interface IsolationProbeArgs {
  readonly role: 'target' | 'prober';
  /** The other guest's domid. */
  readonly peer: number;
  /** A domid no domain has (for the bad_domain / -ESRCH rows). */
  readonly nonexistent: number;
}

/** What B publishes for A in /local/domain/<B>/data/offer. */
export interface Offer {
  /** B's page holding the pattern. */
  readonly gfn: number;
  /** Granted read-only to A (the pattern page). */
  readonly refRoToPeer: number;
  /** Granted read-write to dom0 (not to A). */
  readonly refToDom0: number;
  /** Never granted (GTF_invalid). */
  readonly refNeverGranted: number;
  /** Granted read-write to A (a control: the path itself works). */
  readonly refRwToPeer: number;
  /** B's grant table size in entries (the first ref past it is out of range). */
  readonly nrEntries: number;
  /** An unbound port of B's waiting for dom0. */
  readonly portForDom0: number;
  /** An unbound port of B's waiting for A (a control). */
  readonly portForPeer: number;
  /** B's xenstore event channel (interdomain with dom0). */
  readonly storePort: number;
}

/** The bytes B writes at the start of its private page (NUL-terminated). */
export function pattern(domid: number): string {
  return `xensim isolation: dom${domid}'s private page`;
}

/** The result of each probe: a GNTST_* name, '-E...' (or 'OK'), or a xenstore error name. */
export type ProbeResults = Record<string, string>;

export interface TargetReport {
  readonly cmd: 'done';
  readonly role: 'target';
  readonly domid: number;
  readonly offer: Offer;
  /** B's own view at the end: EVTCHNOP_status of portForDom0, and whether its page is intact. */
  readonly portForDom0After: string;
  readonly patternIntact: boolean;
  readonly secretAfter: string;
  /** gnttab_end_foreign_access_ref of each ref B granted: true = nobody maps it any more. */
  readonly endAccess: Record<number, boolean>;
  /** Events B took on portForPeer (A's legitimate notifications). */
  readonly eventsFromPeer: number;
}

export interface ProberReport {
  readonly cmd: 'done';
  readonly role: 'prober';
  readonly domid: number;
  readonly results: ProbeResults;
}

const gnt = (s: number): string => GntSt[s] ?? `GNTST_${s}`;

/** A hypercall's return as Xen names it: '-EPERM', or 'OK' for 0 and OUT records. */
function errno(r: unknown): string {
  if (typeof r === 'number' && r < 0) return `-${Errno[-r] ?? -r}`;
  return 'OK';
}

function xsErr(e: unknown): string {
  if (e instanceof XsError) return e.code;
  throw e;
}

async function xsTry(f: () => Promise<unknown>): Promise<string> {
  try {
    await f();
    return 'OK';
  } catch (e) {
    return xsErr(e);
  }
}

/**
 * Watches `path` until reading it gives a value `ok` accepts (read errors - not there yet, not
 * readable yet - just mean "wait for the next event"). The watch fires once at registration.
 */
function waitForNode(xs: XsHandle, path: string, token: string, ok: (v: string) => boolean = () => true): Promise<string> {
  return new Promise((resolve, reject) => {
    let busy = false;
    let again = false;
    let finished = false;
    const check = async (): Promise<void> => {
      if (busy) {
        again = true;
        return;
      }
      busy = true;
      try {
        do {
          again = false;
          let v: string | undefined;
          try {
            v = (await xs.read(path)).toString('latin1');
          } catch (e) {
            xsErr(e);
          }
          if (v !== undefined && ok(v) && !finished) {
            finished = true;
            xs.off('watch', onEvent);
            await xs.unwatch(path, token);
            resolve(v);
            return;
          }
        } while (again);
      } catch (e) {
        reject(e as Error);
      } finally {
        busy = false;
      }
    };
    const onEvent = (_p: string, t: string): void => {
      if (t === token && !finished) void check();
    };
    xs.on('watch', onEvent);
    xs.watch(path, token).catch(reject);
  });
}

export async function main(k: Kernel, args: IsolationProbeArgs, control: MessagePort): Promise<void> {
  const xs = xenbusInit(k);
  try {
    if (args.role === 'target') await target(k, xs, args, control);
    else await prober(k, xs, args, control);
  } catch (e) {
    control.postMessage({ cmd: 'error', domid: k.domid, error: String((e as Error).stack ?? e) });
  }
}

// ------------------------------------------------------------------------------------ B

async function target(k: Kernel, xs: XsHandle, args: IsolationProbeArgs, control: MessagePort): Promise<void> {
  const a = args.peer;
  const home = `/local/domain/${k.domid}`;
  const peerHome = `/local/domain/${a}`;

  // A page of ours with a pattern (gfn 1: not the xenstore ring, which the builder put last).
  const gfn = 1;
  const text = Buffer.from(`${pattern(k.domid)}\0`, 'latin1');
  k.page(gfn).set(text, 0);
  k.page(2).fill(0x5a);
  k.page(3).fill(0xa5);

  k.setupGrantTable(1);
  const qs = k.hypercall(Hypercall.__HYPERVISOR_grant_table_op, {
    cmd: GnttabOp.GNTTABOP_query_size, ops: [{ dom: DOMID_SELF }],
  }) as { results: { nr_frames: number }[] };
  const offer: Offer = {
    gfn,
    refRoToPeer: 10,
    refToDom0: 11,
    refNeverGranted: 12,
    refRwToPeer: 13,
    nrEntries: qs.results[0].nr_frames * GRANT_ENTRIES_PER_PAGE_V1,
    portForDom0: k.allocUnbound(0),
    portForPeer: k.allocUnbound(a),
    storePort: k.startInfo.store_evtchn,
  };
  k.grantAccess(offer.refRoToPeer, a, gfn, true);
  k.grantAccess(offer.refToDom0, 0, 2, false);
  k.grantAccess(offer.refRwToPeer, a, 3, false);
  let eventsFromPeer = 0;
  k.on(offer.portForPeer, () => {
    eventsFromPeer++;
  });

  // Private nodes (data/ is ours alone: n<B>), and the offer (and a done flag) A may read.
  await xs.write('data/secret', 'B-only');
  for (const node of ['offer', 'done']) {
    await xs.write(`data/${node}`, node === 'offer' ? JSON.stringify(offer) : '0');
    await xs.setPerms(`data/${node}`, [`n${k.domid}`, `r${a}`]);
  }

  // Once A's watches on our nodes are in place, change our private nodes in every way, then say
  // so: any event A got for those changes reaches it before the one for `done`.
  await waitForNode(xs, `${peerHome}/data/watching`, 'watching');
  await xs.write('data/secret', 'B-only, changed');
  await xs.write('data/secret', 'B-only, changed again');
  await xs.write('data/secret/child', 'new');
  await xs.rm('data/secret/child');
  await xs.setPerms('data/secret', [`n${k.domid}`]);
  await xs.write(`${home}/data/done`, '1');

  // When A is finished: is everything of ours as we left it?
  await waitForNode(xs, `${peerHome}/data/finished`, 'finished');
  const st = k.hypercall(Hypercall.__HYPERVISOR_event_channel_op, {
    cmd: EvtchnOp.EVTCHNOP_status, arg: { dom: DOMID_SELF, port: offer.portForDom0 },
  }) as number | { status: EvtchnStat; u: { unbound?: { dom: number } } };
  const portForDom0After = typeof st === 'number' ? errno(st) : `${EvtchnStat[st.status]}:${st.u.unbound?.dom}`;
  const report: TargetReport = {
    cmd: 'done',
    role: 'target',
    domid: k.domid,
    offer,
    portForDom0After,
    patternIntact: Buffer.from(k.page(gfn).subarray(0, text.length)).equals(text),
    secretAfter: (await xs.read('data/secret')).toString('latin1'),
    endAccess: Object.fromEntries([offer.refRoToPeer, offer.refToDom0, offer.refRwToPeer].map((r) => [r, k.endAccess(r)])),
    eventsFromPeer,
  };
  control.postMessage(report);
}

// ------------------------------------------------------------------------------------ A

async function prober(k: Kernel, xs: XsHandle, args: IsolationProbeArgs, control: MessagePort): Promise<void> {
  const b = args.peer;
  const nobody = args.nonexistent;
  const bHome = `/local/domain/${b}`;
  const results: ProbeResults = {};
  const evtchn = (cmd: EvtchnOp, arg: Record<string, number>): unknown =>
    k.hypercall(Hypercall.__HYPERVISOR_event_channel_op, { cmd, arg });
  const gntOp = (cmd: GnttabOp, op: Record<string, unknown>): number => {
    const r = k.hypercall(Hypercall.__HYPERVISOR_grant_table_op, { cmd, ops: [op] }) as
      number | { rc: number; results: { status: number }[] };
    if (typeof r === 'number') return r;
    return r.rc !== 0 ? r.rc : r.results[0].status;
  };
  const copy = (source: Record<string, unknown>, dest: Record<string, unknown>, flags: number): string =>
    gnt(gntOp(GnttabOp.GNTTABOP_copy, { source, dest, len: 64, flags }));

  const offer = JSON.parse(await waitForNode(xs, `${bHome}/data/offer`, 'offer')) as Offer;

  // ---- grant tables: maps of B's grant entries that are not ours to map
  const map = (dom: number, ref: number, readonly: boolean): string => gnt(k.mapGrant(dom, ref, readonly).status);
  results['map.never-granted'] = map(b, offer.refNeverGranted, true);
  results['map.granted-to-dom0'] = map(b, offer.refToDom0, true);
  results['map.granted-to-dom0.rw'] = map(b, offer.refToDom0, false);
  results['map.xenstore-ring'] = map(b, 1, false);
  results['map.ref-past-table'] = map(b, offer.nrEntries, true);
  results['map.ref-huge'] = map(b, 0xffffffff, true);
  results['map.unknown-domain'] = map(nobody, offer.refRoToPeer, true);
  results['map.domid-self'] = map(DOMID_SELF, offer.refRoToPeer, true);
  results['map.ro-grant-writable'] = map(b, offer.refRoToPeer, false);
  const ro = k.mapGrant(b, offer.refRoToPeer, true);
  results['map.ro-grant-readonly'] = gnt(ro.status);
  if (ro.page) {
    const nul = ro.page.indexOf(0);
    results['map.ro-grant-readonly.bytes'] = Buffer.from(ro.page.subarray(0, nul < 0 ? 64 : nul)).toString('latin1');
    // The kernel hands a read-only mapping out only behind a reading accessor, never the bytes.
    results['map.ro-grant-no-write'] = (ro.page as unknown) instanceof Uint8Array ? 'writable' : 'read-only';
  }
  // Upgrading to a writable map while our read-only one pins the entry re-checks GTF_readonly.
  results['map.ro-grant-writable-while-pinned'] = map(b, offer.refRoToPeer, false);
  results['unmap.ro-grant'] = gnt(k.unmapGrant(ro.handle));
  const rw = k.mapGrant(b, offer.refRwToPeer, false);
  results['map.rw-grant-control'] = gnt(rw.status);
  if (rw.page) results['map.rw-grant-control.byte'] = String(rw.page[0]);
  if (rw.status === GntSt.GNTST_okay) results['unmap.rw-grant'] = gnt(k.unmapGrant(rw.handle));
  results['setup_table.foreign'] = gnt(gntOp(GnttabOp.GNTTABOP_setup_table, { dom: b, nr_frames: 1 }));
  results['query_size.foreign'] = gnt(gntOp(GnttabOp.GNTTABOP_query_size, { dom: b }));
  // GNTTABOP_copy into our own page 1 (by frame, as DOMID_SELF), from / to B's side.
  const mine = { u: { gmfn: 1 }, domid: DOMID_SELF, offset: 0 };
  results['copy.foreign-frame'] = copy({ u: { gmfn: offer.gfn }, domid: b, offset: 0 }, mine, 0);
  results['copy.from-dom0-grant'] = copy({ u: { ref: offer.refToDom0 }, domid: b, offset: 0 }, mine, GNTCOPY_source_gref);
  results['copy.into-ro-grant'] = copy(mine, { u: { ref: offer.refRoToPeer }, domid: b, offset: 0 }, GNTCOPY_dest_gref);
  results['copy.from-ro-grant-control'] = copy({ u: { ref: offer.refRoToPeer }, domid: b, offset: 0 }, mine, GNTCOPY_source_gref);

  // ---- event channels: B's port numbers mean nothing in our table (first, before we bind any)
  const own = evtchn(EvtchnOp.EVTCHNOP_status, { dom: DOMID_SELF, port: offer.portForDom0 });
  results['evtchn.own-view-of-b-port'] = typeof own === 'number' ? errno(own) : EvtchnStat[(own as { status: EvtchnStat }).status];
  results['evtchn.send-b-port'] = errno(evtchn(EvtchnOp.EVTCHNOP_send, { port: offer.portForDom0 }));
  results['evtchn.close-b-port'] = errno(evtchn(EvtchnOp.EVTCHNOP_close, { port: offer.portForPeer }));
  results['evtchn.status-b-port'] = errno(evtchn(EvtchnOp.EVTCHNOP_status, { dom: b, port: offer.portForDom0 }));
  results['evtchn.status-b-store-port'] = errno(evtchn(EvtchnOp.EVTCHNOP_status, { dom: b, port: offer.storePort }));
  results['evtchn.bind-b-port-for-dom0'] = errno(evtchn(EvtchnOp.EVTCHNOP_bind_interdomain, { remote_dom: b, remote_port: offer.portForDom0 }));
  results['evtchn.bind-b-store-port'] = errno(evtchn(EvtchnOp.EVTCHNOP_bind_interdomain, { remote_dom: b, remote_port: offer.storePort }));
  results['evtchn.alloc-in-b'] = errno(evtchn(EvtchnOp.EVTCHNOP_alloc_unbound, { dom: b, remote_dom: k.domid }));
  results['evtchn.bind-unknown-domain'] = errno(evtchn(EvtchnOp.EVTCHNOP_bind_interdomain, { remote_dom: nobody, remote_port: 1 }));
  // The control: the port B allocated for us binds, and a send on it reaches B.
  const bound = evtchn(EvtchnOp.EVTCHNOP_bind_interdomain, { remote_dom: b, remote_port: offer.portForPeer });
  results['evtchn.bind-b-port-for-us-control'] = errno(bound);
  if (typeof bound === 'object' && bound !== null) {
    results['evtchn.send-bound-control'] = errno(evtchn(EvtchnOp.EVTCHNOP_send, { port: (bound as { local_port: number }).local_port }));
  }

  // ---- dom0-only operations
  const domctl = (cmd: Domctl, extra: Record<string, unknown> = {}): string =>
    errno(k.hypercall(Hypercall.__HYPERVISOR_domctl, { cmd, domain: b, ...extra }));
  results['domctl.pausedomain'] = domctl(Domctl.XEN_DOMCTL_pausedomain);
  results['domctl.unpausedomain'] = domctl(Domctl.XEN_DOMCTL_unpausedomain);
  results['domctl.destroydomain'] = domctl(Domctl.XEN_DOMCTL_destroydomain);
  results['domctl.getdomaininfo'] = domctl(Domctl.XEN_DOMCTL_getdomaininfo);
  results['domctl.max_mem'] = domctl(Domctl.XEN_DOMCTL_max_mem, { max_memkb: 4 });
  results['domctl.createdomain'] = domctl(Domctl.XEN_DOMCTL_createdomain);
  results['sched.remote_shutdown'] = errno(k.hypercall(Hypercall.__HYPERVISOR_sched_op, {
    cmd: SchedOp.SCHEDOP_remote_shutdown, domain_id: b, reason: ShutdownReason.SHUTDOWN_poweroff,
  }));
  // A hostile kernel writes another caller domid into its hypercall page: Xen knows who traps,
  // so this is still us (a harmless op, in case it is not).
  const hc = (k as unknown as { hc?: HypercallClient }).hc;
  results['forged-caller.getdomaininfo'] = typeof hc?.call !== 'function'
    ? 'no hypercall client to forge with (Kernel.hc renamed?)'
    : errno(hc.call(0, Hypercall.__HYPERVISOR_domctl, { cmd: Domctl.XEN_DOMCTL_getdomaininfo, domain: b }).ret);

  // ---- xenstore: B's nodes
  const secret = `${bHome}/data/secret`;
  results['xs.read'] = await xsTry(() => xs.read(secret));
  results['xs.read-home'] = await xsTry(() => xs.read(bHome));
  results['xs.directory'] = await xsTry(() => xs.directory(`${bHome}/data`));
  results['xs.get-perms'] = await xsTry(() => xs.getPerms(secret));
  results['xs.write'] = await xsTry(() => xs.write(secret, 'from A'));
  results['xs.create'] = await xsTry(() => xs.write(`${bHome}/data/planted`, 'from A'));
  results['xs.mkdir'] = await xsTry(() => xs.mkdir(`${bHome}/data/planted-dir`));
  results['xs.rm'] = await xsTry(() => xs.rm(secret));
  results['xs.set-perms'] = await xsTry(() => xs.setPerms(secret, [`b${k.domid}`]));
  results['xs.transaction-read'] = await xsTry(async () => {
    const tx = await xs.transactionStart();
    try {
      await xs.read(secret, tx);
    } finally {
      await xs.transactionEnd(tx, false);
    }
  });

  // Watches on B's nodes: Xen checks no ACL when a watch is set (it fires once, at once, as
  // always), but no event for a change of a node we cannot read is ever sent.
  const events: [string, string][] = [];
  xs.on('watch', (p: string, t: string) => {
    if (t === 'secret' || t === 'home') events.push([p, t]);
  });
  results['xs.watch'] = await xsTry(() => xs.watch(secret, 'secret'));
  results['xs.watch-home'] = await xsTry(() => xs.watch(bHome, 'home'));
  await xs.write('data/watching', '1');
  await xs.setPerms('data/watching', [`n${k.domid}`, `r${b}`]);
  await waitForNode(xs, `${bHome}/data/done`, 'done', (v) => v === '1');
  // The first 'secret' event is the one every watch fires when set; anything else about B's
  // private nodes (on either watch) is a leak.
  const initial = events.find(([, t]) => t === 'secret');
  results['xs.watch.initial-event'] = initial ? initial[0] : 'none';
  const leaked = events.filter((e) => e !== initial && e[0].startsWith(secret));
  results['xs.watch.events-for-b-changes'] = leaked.length ? leaked.map(([p, t]) => `${t}:${p}`).join(',') : 'none';

  await xs.write('data/finished', '1');
  await xs.setPerms('data/finished', [`n${k.domid}`, `r${b}`]);
  const report: ProberReport = { cmd: 'done', role: 'prober', domid: k.domid, results };
  control.postMessage(report);
}
