// Domain lifecycle edges (spec 4.8, 5.6, 5.7): xl destroy of a guest in the middle of its vbd
// handshake, domid reuse after it, and destroy in each phase of a domain's life - each must leave
// exactly the tree dom0 booted with. Every spec runs in inline lockstep under several seeds.
import assert from 'node:assert/strict';
import { configUuid, type DomainConfig } from '../../domains/dom0/toolstack/config.ts';
import { XenbusState } from '../../hypervisor/public/io/xenbus.ts';
import type { TraceEvent } from '../../sim/host-runtime.ts';
import { bootHost, SEEDS, type TestHost, tree } from '../helpers/host.ts';
import {
  assertBaseline, assertConnected, assertGone, DEVICES, domainNodes, twoDisksOneNic, value,
} from '../helpers/toolstack.ts';

const S = XenbusState;

/** The states one end of a device wrote, in order. */
const states = (trace: TraceEvent[], role: 'frontend' | 'backend', domid: number, device: string): number[] => trace
  .filter((e) => e.kind === 'xenbus' && e.role === role && e.domid === domid && e.device === device)
  .map((e) => e.state as number);

/** Waits for a destroyed domain to be freed (a zombie keeps its domid while pages stay mapped). */
async function freed(h: TestHost, domid: number): Promise<void> {
  for (let i = 0; i < 10 && h.rt.host.domains.has(domid); i++) await h.rt.quiesce();
  assert.equal(h.rt.host.domains.has(domid), false, `domain ${domid} is still a zombie`);
}

describe('toolstack: destroy and domid reuse', function () {

  for (const seed of SEEDS) {
    describe(`seed ${seed}`, () => {
      it('a guest destroyed in the middle of its handshake: the backend reaches Closed and its directories vanish; a new guest that reuses the domid sees none of the previous guest\'s nodes', async () => {
        // The moment a frontend says Initialised, xl destroy starts (from the trace, mid-run).
        let destroying: Promise<void> | undefined;
        let trigger: { domid: number; device: string; at: number } | undefined;
        const booted: { host?: TestHost } = {};
        const host = await bootHost(seed, {}, (e) => {
          const h = booted.host;
          if (destroying || !h || e.kind !== 'xenbus' || e.role !== 'frontend' || e.state !== S.XenbusStateInitialised) return;
          trigger = { domid: e.domid!, device: String(e.device), at: h.trace.length };
          destroying = h.xl.destroy(e.domid!);
        });
        booted.host = host;
        const { rt, xl, trace } = host;
        try {
          const base = await tree(xl);
          const cfg: DomainConfig = twoDisksOneNic('mid');
          const id = await xl.create(cfg, { guest: { data: { secret: 'the-old-guest' } } });
          await rt.quiesce();
          assert.ok(destroying, 'a frontend reached Initialised');
          await destroying;
          await xl.settled();
          assert.equal(trigger!.domid, id);
          assert.match(trigger!.device, /^vbd\//);
          const devid = Number(trigger!.device.split('/')[1]);
          // Before that, the guest had written a node of its own under data/.
          const wrote = trace.findIndex((e) => e.kind === 'xenstore' && e.dir === 'IN' && e.domid === id && e.type === 'WRITE'
            && e.payload === 'data/secret\\0the-old-guest');
          assert.ok(wrote >= 0 && wrote < trigger!.at, 'the old guest wrote data/secret before the destroy');

          // The guest never got further than Initialised: it was paused and destroyed there. The
          // backend may have answered Connected meanwhile; when the frontend dir vanished (forced
          // removal: state reads Unknown, the frontend never wrote Closing) it went straight to Closed.
          assert.deepEqual(states(trace, 'frontend', id, trigger!.device), [S.XenbusStateInitialised]);
          const be = states(trace, 'backend', 0, `vbd/${id}/${devid}`);
          assert.equal(be[0], S.XenbusStateInitWait);
          assert.equal(be.at(-1), S.XenbusStateClosed);
          assert.ok(!be.includes(S.XenbusStateClosing), `backend states ${be.join(',')}`);
          // blkback had mapped the ring the frontend granted, and unmapped it on the way down.
          const ring = (op: string) => trace.filter((e) => e.kind === 'gnttab' && e.op === op && e.domid === 0 && e.dom === id
            && (e.ref as number) > 1 && e.status === 0).map((e) => e.handle as number).sort();
          assert.ok(ring('unmap_grant_ref').length > 0, 'a ring was unmapped');
          assert.deepEqual(ring('unmap_grant_ref'), ring('map_grant_ref'), 'every ring mapping was undone');
          assert.equal(trace.findIndex((e) => e.kind === 'gnttab' && e.op === 'unmap_grant_ref' && e.domid === 0 && e.dom === id) > trigger!.at, true,
            'unmapped after the destroy began');
          // Nothing of the guest is left: no backend dir, no home, no libxl copy, no /vm entry.
          await freed(host, id);
          assertGone(rt, xl, id);
          const after = await tree(xl);
          assertBaseline(base, after);

          // A new guest under the same domid (explicit, as cfg.domid), created paused: its dirs are fresh.
          const again: DomainConfig = { ...cfg, name: 'reuse', domid: id };
          assert.equal(await xl.create(again, { paused: true }), id);
          await rt.quiesce();
          const t = await tree(xl);
          assert.equal(t.has(`/local/domain/${id}/data/secret`), false, 'the old guest\'s data/secret');
          assert.deepEqual([...t.keys()].filter((p) => p.startsWith(`/local/domain/${id}/data/`)), []);
          assert.equal(value(t, `/local/domain/${id}/name`), 'reuse');
          assert.equal(value(t, `/local/domain/${id}/vm`), `/vm/${configUuid(again, id)}`);
          assert.deepEqual(domainNodes(t, id, configUuid(cfg, id)).filter((p) => p.startsWith('/vm/')), [], 'the old /vm entry');
          for (const [kind, d] of DEVICES) {
            const fe = `/local/domain/${id}/device/${kind}/${d}`;
            const bePath = `/local/domain/0/backend/${kind}/${id}/${d}`;
            // The guest has not run: Initialising, with only what libxl wrote; the backend waits.
            assert.equal(value(t, `${fe}/state`), '1', fe);
            for (const k of ['ring-ref', 'event-channel', 'tx-ring-ref', 'rx-ring-ref', 'request-rx-copy']) assert.equal(t.has(`${fe}/${k}`), false, `${fe}/${k}`);
            assert.equal(value(t, `${bePath}/state`), '2', bePath);
            for (const k of ['sectors', 'info', 'sector-size', 'feature-flush-cache']) assert.equal(t.has(`${bePath}/${k}`), false, `${bePath}/${k}`);
          }
          // The same nodes and values a pristine host gives the same guest.
          const fresh = await bootHost(seed);
          try {
            assert.equal(await fresh.xl.create(again, { paused: true }), id);
            const want = await tree(fresh.xl);
            const mine = (m: Map<string, string>): [string, string | undefined][] => [
              ...domainNodes(m, id, configUuid(again, id)), '/local/domain/0/backend',
            ].map((p) => [p, m.get(p)]);
            assert.deepEqual(mine(t), mine(want));
          } finally {
            await fresh.rt.shutdown();
          }

          await xl.unpause(id);
          await rt.quiesce();
          await assertConnected(xl, id);
          // Its console is its own: one boot, this domain's.
          const con = await xl.console(id);
          assert.equal(con.match(/Linux version/g)?.length, 1, con);
        } finally {
          await rt.shutdown();
        }
      });

      it('xl destroy in each phase (skeleton only, paused before the guest ran, Connected, shut down and preserved) leaves exactly the boot tree', async () => {
        const { rt, xl } = await bootHost(seed);
        try {
          const base = await tree(xl);
          const check = async (domid: number): Promise<void> => {
            await xl.destroy(domid);
            await xl.settled();
            assertGone(rt, xl, domid);
            assertBaseline(base, await tree(xl));
          };

          // Skeleton only: built and introduced, no device yet (xl create stopped before its devices).
          const built = await rt.buildGuest({
            pages: 64, console: true, introduce: false, paused: true,
            program: { module: new URL('../../domains/domU/guest.ts', import.meta.url).href, args: {} },
          });
          await rt.toolstack('domain-make', { domid: built.domid, cfg: { name: 'skel' }, store: built.store });
          assert.ok(value(await tree(xl), `/local/domain/${built.domid}/name`) === 'skel');
          await check(built.domid);

          // xl create -p: devices added (backends InitWait, frontends Initialising), the guest never ran.
          const paused = await xl.create(twoDisksOneNic('paused'), { paused: true });
          await rt.quiesce();
          assert.equal(rt.host.domains.get(paused)?.runState, 'paused');
          assert.equal(value(await tree(xl), `/local/domain/0/backend/vbd/${paused}/${DEVICES[0][1]}/state`), '2');
          await check(paused);

          // Running, every device Connected.
          const running = await xl.create(twoDisksOneNic('running'));
          await rt.quiesce();
          await assertConnected(xl, running);
          await check(running);

          // Powered off with on_poweroff=preserve: shut down, kept, until xl destroy.
          const kept = await xl.create({ ...twoDisksOneNic('kept'), on_poweroff: 'preserve' });
          await rt.quiesce();
          assert.deepEqual(await xl.shutdown(kept, 'poweroff', { wait: true }), { acked: true });
          assert.equal(rt.host.domains.get(kept)?.runState, 'shutdown');
          assert.equal(xl.domains.get(kept)?.state, 'shutdown');
          await check(kept);
        } finally {
          await rt.shutdown();
        }
      });
    });
  }
});
