// Isolation acceptance, end to end: dom0 and two guests, each in its own vCPU thread. Guest A
// attempts what Xen forbids one guest to do to another - map B's pages, use B's event channel
// ports, call dom0-only hypercalls, read or watch B's xenstore nodes - through the real hypercall
// path and its own xenbus ring, and each attempt must get exactly the error Xen gives. Controls
// (what B did grant A) show the path itself works. Runs free-running, in lockstep and packed.
import assert from 'node:assert/strict';
import type { ProberReport, TargetReport } from '../../domains/domU/isolation-probe.ts';
import { type IsolationProbeArgs, pattern } from '../../domains/domU/isolation-probe.ts';
import { type Domain, DomDying } from '../../hypervisor/domain.ts';
import { EvtchnOp, EvtchnStat } from '../../hypervisor/public/event_channel.ts';
import { type HostOptions, HostRuntime } from '../../sim/host-runtime.ts';

const PROBE = new URL('../../domains/domU/isolation-probe.ts', import.meta.url).href;
const A = 1;
const B = 2;
const NOBODY = 77;

interface Row {
  /** Key in the prober's results. */
  readonly id: string;
  readonly attempt: string;
  /** What Xen answers: a GNTST_* status, -errno, or a xenstore error name (OK for controls). */
  readonly xen: string;
}

const GRANT_ROWS: Row[] = [
  { id: 'map.never-granted', attempt: 'map a ref of B that B never granted (GTF_invalid)', xen: 'GNTST_general_error' },
  { id: 'map.granted-to-dom0', attempt: 'map a ref B granted to dom0, read-only', xen: 'GNTST_general_error' },
  { id: 'map.granted-to-dom0.rw', attempt: 'map a ref B granted to dom0, writable', xen: 'GNTST_general_error' },
  { id: 'map.xenstore-ring', attempt: "map B's xenstore ring (ref 1, granted to and mapped by dom0)", xen: 'GNTST_general_error' },
  { id: 'map.ref-past-table', attempt: "map the first ref past B's grant table", xen: 'GNTST_bad_gntref' },
  { id: 'map.ref-huge', attempt: 'map ref 0xffffffff', xen: 'GNTST_bad_gntref' },
  { id: 'map.unknown-domain', attempt: 'map from a domid nobody has', xen: 'GNTST_bad_domain' },
  { id: 'map.domid-self', attempt: 'map with dom = DOMID_SELF', xen: 'GNTST_bad_domain' },
  { id: 'map.ro-grant-writable', attempt: 'writable map of a read-only grant to A', xen: 'GNTST_general_error' },
  { id: 'map.ro-grant-readonly', attempt: 'read-only map of that read-only grant (control)', xen: 'GNTST_okay' },
  { id: 'map.ro-grant-no-write', attempt: 'write through that read-only mapping (no writable view is handed out)', xen: 'read-only' },
  { id: 'map.ro-grant-writable-while-pinned', attempt: 'writable map of it while A maps it read-only', xen: 'GNTST_general_error' },
  { id: 'unmap.ro-grant', attempt: 'unmap the read-only map', xen: 'GNTST_okay' },
  { id: 'map.rw-grant-control', attempt: 'writable map of a writable grant to A (control)', xen: 'GNTST_okay' },
  { id: 'setup_table.foreign', attempt: "GNTTABOP_setup_table of B's table", xen: 'GNTST_permission_denied' },
  { id: 'query_size.foreign', attempt: "GNTTABOP_query_size of B's table", xen: 'GNTST_permission_denied' },
  { id: 'copy.foreign-frame', attempt: "GNTTABOP_copy from B's page by frame number", xen: 'GNTST_permission_denied' },
  { id: 'copy.from-dom0-grant', attempt: 'GNTTABOP_copy from a ref B granted to dom0', xen: 'GNTST_general_error' },
  { id: 'copy.into-ro-grant', attempt: 'GNTTABOP_copy into the read-only grant', xen: 'GNTST_general_error' },
  { id: 'copy.from-ro-grant-control', attempt: 'GNTTABOP_copy from the read-only grant (control)', xen: 'GNTST_okay' },
];

const EVTCHN_ROWS: Row[] = [
  { id: 'evtchn.own-view-of-b-port', attempt: "EVTCHNOP_status(DOMID_SELF, B's port number): free in A's table", xen: 'EVTCHNSTAT_closed' },
  { id: 'evtchn.send-b-port', attempt: "EVTCHNOP_send on B's port number", xen: '-EINVAL' },
  { id: 'evtchn.close-b-port', attempt: "EVTCHNOP_close on B's port number", xen: '-EINVAL' },
  { id: 'evtchn.status-b-port', attempt: "EVTCHNOP_status of B's unbound port", xen: '-EPERM' },
  { id: 'evtchn.status-b-store-port', attempt: "EVTCHNOP_status of B's xenstore port", xen: '-EPERM' },
  { id: 'evtchn.bind-b-port-for-dom0', attempt: 'bind_interdomain to a port B allocated for dom0', xen: '-EINVAL' },
  { id: 'evtchn.bind-b-store-port', attempt: "bind_interdomain to B's (connected) xenstore port", xen: '-EINVAL' },
  { id: 'evtchn.alloc-in-b', attempt: "alloc_unbound in B's table", xen: '-EPERM' },
  { id: 'evtchn.bind-unknown-domain', attempt: 'bind_interdomain to a domid nobody has', xen: '-ESRCH' },
  { id: 'evtchn.bind-b-port-for-us-control', attempt: 'bind_interdomain to the port B allocated for A (control)', xen: 'OK' },
  { id: 'evtchn.send-bound-control', attempt: 'EVTCHNOP_send on that bound port (control)', xen: 'OK' },
];

const PRIV_ROWS: Row[] = [
  { id: 'domctl.pausedomain', attempt: 'XEN_DOMCTL_pausedomain of B', xen: '-EPERM' },
  { id: 'domctl.unpausedomain', attempt: 'XEN_DOMCTL_unpausedomain of B', xen: '-EPERM' },
  { id: 'domctl.destroydomain', attempt: 'XEN_DOMCTL_destroydomain of B', xen: '-EPERM' },
  { id: 'domctl.getdomaininfo', attempt: 'XEN_DOMCTL_getdomaininfo of B', xen: '-EPERM' },
  { id: 'domctl.max_mem', attempt: 'XEN_DOMCTL_max_mem of B', xen: '-EPERM' },
  { id: 'domctl.createdomain', attempt: 'XEN_DOMCTL_createdomain', xen: '-EPERM' },
  { id: 'sched.remote_shutdown', attempt: 'SCHEDOP_remote_shutdown of B', xen: '-EPERM' },
  {
    id: 'forged-caller.getdomaininfo',
    attempt: 'getdomaininfo of B with domid 0 written into its hypercall page',
    xen: '-EPERM',
  },
];

const XS_ROWS: Row[] = [
  { id: 'xs.read', attempt: "XS_READ of B's private node", xen: 'EACCES' },
  { id: 'xs.read-home', attempt: "XS_READ of B's home (n0 r<B>)", xen: 'EACCES' },
  { id: 'xs.directory', attempt: "XS_DIRECTORY of B's data/", xen: 'EACCES' },
  { id: 'xs.get-perms', attempt: "XS_GET_PERMS of B's private node", xen: 'EACCES' },
  { id: 'xs.write', attempt: "XS_WRITE of B's private node", xen: 'EACCES' },
  { id: 'xs.create', attempt: "XS_WRITE creating a node in B's data/", xen: 'EACCES' },
  { id: 'xs.mkdir', attempt: "XS_MKDIR in B's data/", xen: 'EACCES' },
  { id: 'xs.rm', attempt: "XS_RM of B's private node", xen: 'EACCES' },
  { id: 'xs.set-perms', attempt: "XS_SET_PERMS of B's private node", xen: 'EACCES' },
  { id: 'xs.transaction-read', attempt: "XS_READ of B's node inside a transaction", xen: 'EACCES' },
  // xenstored checks no ACL when a watch is registered; it filters the events it sends instead.
  { id: 'xs.watch', attempt: "XS_WATCH on B's private node (accepted: no ACL check at registration)", xen: 'OK' },
  { id: 'xs.watch-home', attempt: "XS_WATCH on B's home", xen: 'OK' },
  { id: 'xs.watch.initial-event', attempt: 'the one event every new watch fires at once', xen: `/local/domain/${B}/data/secret` },
  { id: 'xs.watch.events-for-b-changes', attempt: "events for B's writes, child create/rm and set-perms of its node", xen: 'none' },
];

interface Run {
  readonly rt: HostRuntime;
  readonly a: ProberReport;
  readonly b: TargetReport;
  /** Host-side view of B after both are finished. */
  readonly bDomain: Domain;
}

function report<T>(rt: HostRuntime, domid: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const w = rt.control(domid);
    if ('threadId' in w) w.once('error', reject);
    w.on('message', (m: { cmd: string; error?: string }) => {
      if (m.cmd === 'done') resolve(m as T);
      else if (m.cmd === 'error') reject(new Error(`dom${domid}: ${m.error}`));
    });
  });
}

async function scenario(rt: HostRuntime): Promise<Run> {
  await rt.bootDom0();
  const args = (role: IsolationProbeArgs['role'], peer: number): IsolationProbeArgs => ({ role, peer, nonexistent: NOBODY });
  await rt.createGuest({ domid: A, paused: true, program: { module: PROBE, args: args('prober', B) } });
  await rt.createGuest({ domid: B, paused: true, program: { module: PROBE, args: args('target', A) } });
  await rt.unpause(A, B);
  const [a, b] = await Promise.all([report<ProberReport>(rt, A), report<TargetReport>(rt, B)]);
  await rt.quiesce();
  return { rt, a, b, bDomain: rt.host.domains.get(B)! };
}

const SETUPS: { name: string; opts: HostOptions }[] = [
  { name: 'free-running, a thread per guest', opts: { mode: 'free' } },
  { name: 'lockstep', opts: { mode: 'lockstep' } },
  { name: 'packed: guests on a pool of 2 threads', opts: { mode: 'free', pool: 2 } },
];

for (const setup of SETUPS) {
  describe(`isolation between guests, through vCPU threads and hypercalls (${setup.name})`, function () {
    let rt: HostRuntime;
    let run: Run;

    before(async () => {
      rt = new HostRuntime({ ...setup.opts, seed: 2024 });
      run = await scenario(rt);
    });

    after(async () => {
      await rt.shutdown();
    });

    const table = (title: string, rows: Row[]): void => {
      describe(title, () => {
        for (const row of rows) {
          it(`${row.attempt} -> ${row.xen}`, function () {
            const got = run.a.results[row.id];
            assert.equal(got, row.xen, row.id);
          });
        }
      });
    };
    table('grant tables', GRANT_ROWS);
    table('event channels', EVTCHN_ROWS);
    table('dom0-only operations', PRIV_ROWS);
    table('xenstore', XS_ROWS);

    it("the read-only map and copy show B's bytes; the writable control shows B's page", () => {
      assert.equal(run.a.results['map.ro-grant-readonly.bytes'], pattern(B));
      assert.equal(run.a.results['map.rw-grant-control.byte'], String(0xa5));
    });

    it('B is unharmed: running, and its page, ports, grants and nodes as it left them', () => {
      const d = run.bDomain;
      assert.equal(d.pauseCount, 0);
      assert.equal(d.isShutDown, false);
      assert.equal(d.dying, DomDying.DOMDYING_alive);
      assert.equal(run.b.patternIntact, true);
      assert.equal(run.b.secretAfter, 'B-only, changed again');
      // B's port for dom0 still waits for dom0: B's own view, and dom0's through the hypervisor.
      assert.equal(run.b.portForDom0After, 'EVTCHNSTAT_unbound:0');
      const dom0 = rt.host.domains.get(0)!;
      const st = rt.evtchn.dispatch(dom0, EvtchnOp.EVTCHNOP_status, { dom: B, port: run.b.offer.portForDom0 } as never);
      assert.ok(typeof st === 'object', `status: ${String(st)}`);
      assert.equal(st.status, EvtchnStat.EVTCHNSTAT_unbound);
      assert.deepEqual(st.u, { unbound: { dom: 0 } });
      // A's legitimate notification reached B.
      assert.ok(run.b.eventsFromPeer >= 1, `events from A: ${run.b.eventsFromPeer}`);
      // Nothing of B's is still mapped (A unmapped both its maps): B can end access to each grant.
      const { refRoToPeer, refToDom0, refRwToPeer } = run.b.offer;
      assert.deepEqual(run.b.endAccess, { [refRoToPeer]: true, [refToDom0]: true, [refRwToPeer]: true });
    });
  });
}
