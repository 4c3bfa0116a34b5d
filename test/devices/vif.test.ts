// vif: netfront and netback run the handshake of Linux and libxl (netfront skips Initialised,
// netback holds Connected until the vif-bridge script reported), frames cross dom0's software
// bridge through granted pages on the tx and rx rings, detach removes everything, and a hostile
// frontend only ever loses its own vif. Every spec runs in inline lockstep under several seeds.
import assert from 'node:assert/strict';
import type { Dom0Args } from '../../domains/dom0/dom0.ts';
import { defaultMac } from '../../domains/dom0/toolstack/config.ts';
import type { NodeDump } from '../../domains/dom0/toolstack/toolstack.ts';
import { NETTXF_more_data, NetifRsp, type NetifTxRequestValue } from '../../hypervisor/public/io/netif.ts';
import { XenbusState } from '../../hypervisor/public/io/xenbus.ts';
import { HostRuntime, type TraceEvent } from '../../sim/host-runtime.ts';
import { Xl } from '../../sim/xl.ts';

const SEEDS = [1, 2, 3];
const S = XenbusState;

interface Host { rt: HostRuntime; xl: Xl; trace: TraceEvent[] }

async function boot(seed: number, dom0: Dom0Args = {}): Promise<Host> {
  const rt = new HostRuntime({ seed, mode: 'lockstep', inline: true, trace: true });
  await rt.bootDom0(dom0);
  return { rt, xl: new Xl(rt), trace: rt.trace };
}

async function tree(xl: Xl, path = '/'): Promise<Map<string, string>> {
  const nodes: NodeDump[] = await xl.dump(path);
  return new Map(nodes.map((n) => [n.path, n.value]));
}

/** The states one end of a device wrote, in order, with the virtual time of each. */
function states(trace: TraceEvent[], role: 'frontend' | 'backend', domid: number, device: string): { state: number; t: number }[] {
  return trace
    .filter((e) => e.kind === 'xenbus' && e.role === role && e.domid === domid && e.device === device)
    .map((e) => ({ state: e.state as number, t: e.t as number }));
}

const mac = (s: string): number[] => s.split(':').map((h) => parseInt(h, 16));

/** An Ethernet frame: dst, src, ethertype 0x88b5 (local experimental), then a seeded payload. */
function frame(dst: string, src: string, len: number, seed: number): Uint8Array {
  const f = new Uint8Array(len);
  f.set(mac(dst), 0);
  f.set(mac(src), 6);
  f[12] = 0x88;
  f[13] = 0xb5;
  for (let i = 14; i < len; i++) f[i] = (i * 31 + seed) & 0xff;
  return f;
}

/** What dom0 still maps of a guest's pages, its console and xenstore rings (refs 0, 1) aside. */
function dom0Maps(rt: HostRuntime, domid: number): unknown[] {
  return rt.gnttab.mappings(rt.host.domains.get(0)!).filter((m) => m.dom === domid && m.ref > 1);
}

const BROADCAST = 'ff:ff:ff:ff:ff:ff';

async function send(xl: Xl, domid: number, f: Uint8Array, device = 'vif/0'): Promise<number> {
  const r = await xl.guest<{ status?: number; error?: string }>(domid, { cmd: 'net-send', device, frame: f });
  assert.equal(r.error, undefined, r.error);
  return r.status!;
}

async function recv(xl: Xl, domid: number, device = 'vif/0'): Promise<Buffer[]> {
  await xl.rt.quiesce();
  const r = await xl.guest<{ frames?: Uint8Array[]; error?: string }>(domid, { cmd: 'net-recv', device });
  assert.equal(r.error, undefined, r.error);
  return r.frames!.map((f) => Buffer.from(f));
}

async function rawTx(xl: Xl, domid: number, device: string, requests: NetifTxRequestValue[], bump = 0): Promise<void> {
  const r = await xl.guest<{ error?: string }>(domid, { cmd: 'net-raw-tx', device, requests, bump });
  assert.equal(r.error, undefined, r.error);
  await xl.rt.quiesce();
}

interface DevInfo { name: string; state: number; net?: { mac: string; features: Record<string, boolean> } }

describe('vif: netfront <-> netback over dom0\'s bridge', function () {

  for (const seed of SEEDS) {
    describe(`seed ${seed}`, () => {
      it('vif: netfront goes from Initialising straight to Connected', async () => {
        const { rt, xl, trace } = await boot(seed);
        try {
          const id = await xl.create({ name: 'net1', vifs: [{}] });
          await rt.quiesce();
          // Netfront never writes Initialised; netback goes InitWait then Connected.
          assert.deepEqual(states(trace, 'frontend', id, 'vif/0').map((e) => e.state), [S.XenbusStateConnected]);
          assert.deepEqual(states(trace, 'backend', 0, `vif/${id}/0`).map((e) => e.state), [S.XenbusStateInitWait, S.XenbusStateConnected]);
          const t = await tree(xl);
          const fe = `/local/domain/${id}/device/vif/0`;
          const be = `/local/domain/0/backend/vif/${id}/0`;
          assert.equal(t.get(`${fe}/state`), '4');
          assert.equal(t.get(`${be}/state`), '4');
          for (const k of ['tx-ring-ref', 'rx-ring-ref', 'event-channel']) assert.match(t.get(`${fe}/${k}`) ?? '', /^\d+$/, `${fe}/${k}`);
          assert.notEqual(t.get(`${fe}/tx-ring-ref`), t.get(`${fe}/rx-ring-ref`));
          assert.equal(t.get(`${fe}/request-rx-copy`), '1');
          assert.equal(t.get(`${fe}/feature-rx-notify`), '1');
          assert.equal(t.get(`${fe}/feature-sg`), '1');
          assert.equal(t.has(`${fe}/event-channel-tx`), false, 'one event channel, not split');
          assert.equal(t.get(`${be}/feature-rx-copy`), '1');
          assert.equal(t.get(`${be}/feature-rx-flip`), '0');
          assert.equal(t.get(`${be}/multi-queue-max-queues`), '1');
          assert.equal(t.get(`${be}/hotplug-status`), 'connected');
          assert.equal(t.get(`${be}/mac`), defaultMac(id, 0));
          const { devices } = await xl.guest<{ devices: DevInfo[] }>(id, { cmd: 'devices' });
          const vif = devices.find((d) => d.name === 'vif/0');
          assert.equal(vif?.state, S.XenbusStateConnected);
          assert.equal(vif?.net?.mac, defaultMac(id, 0));
          // xennet_fix_features: of the offloads netfront would use, only those netback offers.
          assert.deepEqual(vif?.net?.features, { sg: true, ipv6CsumOffload: false, tso: false, tso6: false });
        } finally {
          await rt.shutdown();
        }
      });

      it('vif: netback waits for hotplug-status before Connected', async () => {
        const delay = 2e9;
        const { rt, xl, trace } = await boot(seed, { quirks: { toolstack: { hotplugDelayNs: delay } } });
        try {
          const id = await xl.create({ name: 'late' });
          await rt.quiesce();
          // Attached to a running guest: its netfront connects while the script is still asleep.
          await xl.networkAttach(id, {});
          await rt.quiesce();
          const be = states(trace, 'backend', 0, `vif/${id}/0`);
          const fe = states(trace, 'frontend', id, 'vif/0');
          assert.deepEqual(be.map((e) => e.state), [S.XenbusStateInitWait, S.XenbusStateConnected]);
          assert.deepEqual(fe.map((e) => e.state), [S.XenbusStateConnected]);
          const [initWait, connected] = be;
          assert.ok(fe[0].t < initWait.t + delay, 'frontend Connected before the script finished');
          assert.ok(connected.t >= initWait.t + delay, `backend Connected ${connected.t - initWait.t} ns after InitWait, script takes ${delay}`);
          assert.equal((await tree(xl)).get(`/local/domain/0/backend/vif/${id}/0/state`), '4');
        } finally {
          await rt.shutdown();
        }
      });

      it('vif: R03 quirk no-gate: netback writes Connected before the script ran', async () => {
        const delay = 2e9;
        const { rt, xl, trace } = await boot(seed, { quirks: { toolstack: { hotplugDelayNs: delay }, netback: { hotplugGate: 'no-gate' } } });
        try {
          const id = await xl.create({ name: 'eager' });
          await rt.quiesce();
          await xl.networkAttach(id, {});
          await rt.quiesce();
          const [initWait, connected] = states(trace, 'backend', 0, `vif/${id}/0`);
          assert.equal(connected.state, S.XenbusStateConnected);
          assert.ok(connected.t < initWait.t + delay, 'the buggy variant does not wait for the script');
        } finally {
          await rt.shutdown();
        }
      });

      it('vif: after a frontend reconnect netback is Connected again without a new hotplug run (R03 fixed)', async () => {
        const { rt, xl, trace } = await boot(seed);
        try {
          const a = await xl.create({ name: 'a', vifs: [{}] });
          const b = await xl.create({ name: 'b', vifs: [{}] });
          await rt.quiesce();
          const r = await xl.guest<{ error?: string }>(a, { cmd: 'net-reconnect', device: 'vif/0' });
          assert.equal(r.error, undefined, r.error);
          await rt.quiesce();
          assert.deepEqual(states(trace, 'frontend', a, 'vif/0').map((e) => e.state), [4, 5, 6, 1, 4]);
          assert.deepEqual(states(trace, 'backend', 0, `vif/${a}/0`).map((e) => e.state), [2, 4, 5, 6, 2, 4]);
          // Still on the bridge: frames flow both ways over the new rings.
          const f = frame(defaultMac(b, 0), defaultMac(a, 0), 100, seed);
          assert.equal(await send(xl, a, f), NetifRsp.NETIF_RSP_OKAY);
          assert.deepEqual(await recv(xl, b), [Buffer.from(f)]);
          const g = frame(defaultMac(a, 0), defaultMac(b, 0), 100, seed + 1);
          assert.equal(await send(xl, b, g), NetifRsp.NETIF_RSP_OKAY);
          assert.deepEqual(await recv(xl, a), [Buffer.from(g)]);
        } finally {
          await rt.shutdown();
        }
      });

      for (const gate of ['delete-once-seen', 'delete-on-disconnect'] as const) {
        it(`vif: R03 quirk ${gate}: after a frontend reconnect netback stays in InitWait`, async () => {
          const { rt, xl, trace } = await boot(seed, { quirks: { netback: { hotplugGate: gate } } });
          try {
            const a = await xl.create({ name: 'a', vifs: [{}] });
            await rt.quiesce();
            await xl.guest(a, { cmd: 'net-reconnect', device: 'vif/0' });
            await rt.quiesce();
            assert.deepEqual(states(trace, 'backend', 0, `vif/${a}/0`).map((e) => e.state), [2, 4, 5, 6, 2]);
            const t = await tree(xl);
            assert.equal(t.get(`/local/domain/${a}/device/vif/0/state`), '4');
            assert.equal(t.get(`/local/domain/0/backend/vif/${a}/0/state`), '2');
            assert.equal(t.has(`/local/domain/0/backend/vif/${a}/0/hotplug-status`), false);
          } finally {
            await rt.shutdown();
          }
        });
      }

      it('vif: guest A\'s frames reach guest B through dom0\'s bridge', async () => {
        const { rt, xl } = await boot(seed);
        try {
          const a = await xl.create({ name: 'a', vifs: [{ bridge: 'xenbr0' }] });
          const b = await xl.create({ name: 'b', vifs: [{ bridge: 'xenbr0' }] });
          await rt.quiesce();
          const macA = defaultMac(a, 0);
          const macB = defaultMac(b, 0);
          // Unicast (flooded while B is unknown, then learned), both ways, one page and multi-page.
          const toB = frame(macB, macA, 60, seed);
          assert.equal(await send(xl, a, toB), NetifRsp.NETIF_RSP_OKAY);
          assert.deepEqual(await recv(xl, b), [Buffer.from(toB)]);
          const toA = frame(macA, macB, 1514, seed + 1);
          assert.equal(await send(xl, b, toA), NetifRsp.NETIF_RSP_OKAY);
          assert.deepEqual(await recv(xl, a), [Buffer.from(toA)]);
          const jumbo = frame(macB, macA, 9000, seed + 2);
          assert.equal(await send(xl, a, jumbo), NetifRsp.NETIF_RSP_OKAY);
          assert.deepEqual(await recv(xl, b), [Buffer.from(jumbo)]);
          const largest = frame(macB, macA, 65535, seed + 4);
          assert.equal(await send(xl, a, largest), NetifRsp.NETIF_RSP_OKAY);
          assert.deepEqual(await recv(xl, b), [Buffer.from(largest)]);
          // Broadcast reaches B but does not come back to A.
          const bcast = frame(BROADCAST, macA, 42, seed + 3);
          assert.equal(await send(xl, a, bcast), NetifRsp.NETIF_RSP_OKAY);
          assert.deepEqual(await recv(xl, b), [Buffer.from(bcast)]);
          assert.deepEqual(await recv(xl, a), []);
          // More frames than B has buffers posted: all arrive, in order, as B recycles its buffers.
          const burst = Array.from({ length: 20 }, (_, i) => frame(macB, macA, 100 + i, seed + 10 + i));
          for (const f of burst) assert.equal(await send(xl, a, f), NetifRsp.NETIF_RSP_OKAY);
          assert.deepEqual(await recv(xl, b), burst.map((f) => Buffer.from(f)));
        } finally {
          await rt.shutdown();
        }
      });

      it('vif: a frame the frontend has too few buffers for is dropped after the drain timeout; the vif then receives again', async () => {
        const { rt, xl } = await boot(seed);
        try {
          const a = await xl.create({ name: 'a', vifs: [{}] });
          const b = await xl.create({ name: 'b', vifs: [{}] }, { guest: { netfront: { rxBuffers: 2 } } });
          await rt.quiesce();
          const [ma, mb] = [defaultMac(a, 0), defaultMac(b, 0)];
          // 9000 bytes need 3 buffers; B posts 2. What queued behind it in the same instant
          // expires with it (virtual time stands still until everything is idle).
          assert.equal(await send(xl, a, frame(mb, ma, 9000, seed)), NetifRsp.NETIF_RSP_OKAY);
          assert.equal(await send(xl, a, frame(mb, ma, 60, seed)), NetifRsp.NETIF_RSP_OKAY);
          assert.deepEqual(await recv(xl, b), []);
          const later = frame(mb, ma, 1500, seed + 1);
          assert.equal(await send(xl, a, later), NetifRsp.NETIF_RSP_OKAY);
          assert.deepEqual(await recv(xl, b), [Buffer.from(later)]);
        } finally {
          await rt.shutdown();
        }
      });

      it('vif: frames stay on their own bridge, and a learned MAC is not flooded', async () => {
        const { rt, xl } = await boot(seed);
        try {
          const a = await xl.create({ name: 'a', vifs: [{ bridge: 'xenbr0' }] });
          const b = await xl.create({ name: 'b', vifs: [{ bridge: 'xenbr0' }] });
          const c = await xl.create({ name: 'c', vifs: [{ bridge: 'xenbr0' }] });
          const d = await xl.create({ name: 'd', vifs: [{ bridge: 'xenbr1' }] });
          await rt.quiesce();
          const [ma, mb] = [defaultMac(a, 0), defaultMac(b, 0)];
          // B speaks first, so the bridge knows where B is: A's unicast to B skips C.
          await send(xl, b, frame(BROADCAST, mb, 60, 1));
          assert.equal((await recv(xl, a)).length, 1);
          assert.equal((await recv(xl, c)).length, 1);
          const toB = frame(mb, ma, 60, 2);
          await send(xl, a, toB);
          assert.deepEqual(await recv(xl, b), [Buffer.from(toB)]);
          assert.deepEqual(await recv(xl, c), []);
          assert.deepEqual(await recv(xl, d), [], 'xenbr1 hears nothing from xenbr0');
        } finally {
          await rt.shutdown();
        }
      });

      it('vif: network-detach tears down both ends and removes every node', async () => {
        const { rt, xl, trace } = await boot(seed);
        try {
          const id = await xl.create({ name: 'det' });
          const peer = await xl.create({ name: 'peer', vifs: [{}] });
          await rt.quiesce();
          const before = await tree(xl);
          for (let round = 0; round < 2; round++) {
            // Attach, use it, detach; the second round shows nothing was left behind.
            await xl.networkAttach(id, {});
            await rt.quiesce();
            const f = frame(defaultMac(peer, 0), defaultMac(id, 0), 80, round);
            assert.equal(await send(xl, id, f), NetifRsp.NETIF_RSP_OKAY);
            assert.deepEqual(await recv(xl, peer), [Buffer.from(f)]);
            assert.deepEqual(await xl.networkDetach(id, 0), { clean: true });
            await rt.quiesce();
            const after = await tree(xl);
            assert.deepEqual([...after.keys()].filter((p) => !before.has(p)), [], 'nodes left behind');
            // libxl__xs_path_cleanup also takes the guest's emptied device/ directory.
            const lost = [...before.keys()].filter((p) => !after.has(p));
            assert.deepEqual(lost.filter((p) => p !== `/local/domain/${id}/device`), [], 'nodes lost');
            const { devices } = await xl.guest<{ devices: DevInfo[] }>(id, { cmd: 'devices' });
            assert.deepEqual(devices.filter((d) => d.name.startsWith('vif')), []);
            assert.deepEqual(dom0Maps(rt, id), [], 'netback unmapped both rings');
          }
          assert.deepEqual(trace.filter((e) => e.kind === 'gnttab' && e.op === 'unmap_grant_ref' && e.status !== 0), []);
          // Each round: backend 2 4 5 6, frontend 4 6 (Closed on the backend's Closing).
          assert.deepEqual(states(trace, 'backend', 0, `vif/${id}/0`).map((e) => e.state), [2, 4, 5, 6, 2, 4, 5, 6]);
          assert.deepEqual(states(trace, 'frontend', id, 'vif/0').map((e) => e.state), [4, 6, 4, 6]);
          // The unplugged vif gets nothing; the peer's broadcasts go nowhere, without error.
          assert.equal(await send(xl, peer, frame(BROADCAST, defaultMac(peer, 0), 60, 9)), NetifRsp.NETIF_RSP_OKAY);
        } finally {
          await rt.shutdown();
        }
      });

      it('vif: detaching one guest\'s vif leaves the other vifs\' ring mappings intact', async () => {
        const { rt, xl, trace } = await boot(seed);
        try {
          const ids = [];
          for (const n of [1, 2, 3]) ids.push(await xl.create({ name: `g${n}`, vifs: [{}] }));
          await rt.quiesce();
          const [a, b, c] = ids;
          // Dom0 maps and unmaps pages in between: TX copies go through short-lived mappings.
          assert.deepEqual(await xl.networkDetach(a, 0), { clean: true });
          for (let i = 0; i < 3; i++) await send(xl, b, frame(defaultMac(c, 0), defaultMac(b, 0), 60, i));
          assert.equal((await recv(xl, c)).length, 3);
          assert.deepEqual(await xl.networkDetach(b, 0), { clean: true });
          assert.deepEqual(await xl.networkDetach(c, 0), { clean: true });
          await rt.quiesce();
          for (const id of ids) assert.deepEqual(dom0Maps(rt, id), [], `dom${id}'s rings unmapped`);
          assert.deepEqual(trace.filter((e) => e.kind === 'gnttab' && e.op === 'unmap_grant_ref' && e.status !== 0), []);
        } finally {
          await rt.shutdown();
        }
      });

      it('vif: garbage TX requests from a hostile frontend do not crash dom0; other vifs keep working', async () => {
        const { rt, xl, trace } = await boot(seed);
        try {
          const evil = await xl.create({ name: 'evil', vifs: [{}, {}, {}] });
          const b = await xl.create({ name: 'b', vifs: [{}] });
          const c = await xl.create({ name: 'c', vifs: [{}] });
          await rt.quiesce();
          const [mb, mc, me] = [defaultMac(b, 0), defaultMac(c, 0), defaultMac(evil, 0)];
          // Dropped packets, the vif survives: a grant ref that does not exist, sizes 0 and 13.
          await rawTx(xl, evil, 'vif/0', [
            { gref: 0xfffff, offset: 0, flags: 0, id: 500, size: 60 },
            { gref: 0xfffff, offset: 0, flags: 0, id: 501, size: 0 },
            { gref: 0xfffff, offset: 0, flags: 0, id: 502, size: 13 },
          ]);
          const ok = frame(mb, me, 60, seed);
          assert.equal(await send(xl, evil, ok), NetifRsp.NETIF_RSP_OKAY);
          assert.deepEqual(await recv(xl, b), [Buffer.from(ok)]);
          assert.deepEqual(await recv(xl, c), [Buffer.from(ok)], 'B not learned yet: flooded');
          // Protocol violations disable the vif: a slot crossing its page, a ring claiming more
          // requests than it holds, a packet of 19 slots.
          await rawTx(xl, evil, 'vif/0', [{ gref: 8, offset: 4000, flags: 0, id: 503, size: 200 }]);
          await rawTx(xl, evil, 'vif/1', [], 1000);
          const slots = Array.from({ length: 19 }, (_, i): NetifTxRequestValue => ({
            gref: 8, offset: 0, flags: i < 18 ? NETTXF_more_data : 0, id: 600 + i, size: i === 0 ? 19 * 100 : 100,
          }));
          await rawTx(xl, evil, 'vif/2', slots);
          const t = await tree(xl);
          for (const n of [0, 1, 2]) {
            const be = `/local/domain/0/backend/vif/${evil}/${n}`;
            assert.match(t.get(`/local/domain/0/error/backend/vif/${evil}/${n}/error`) ?? '', /^71 vif\d+\.\d: /);
            // The frontend followed to Closed; the backend closed and, still online, stays.
            assert.equal(t.get(`${be}/state`), String(S.XenbusStateClosed));
            assert.equal(t.get(`/local/domain/${evil}/device/vif/${n}/state`), String(S.XenbusStateClosed));
          }
          const fatal = trace.filter((e) => e.kind === 'net' && e.event === 'fatal').map((e) => e.vif);
          assert.deepEqual(fatal, [`vif${evil}.0`, `vif${evil}.1`, `vif${evil}.2`]);
          // Dom0 serves on: B and C still talk, in both directions.
          const bc = frame(mc, mb, 300, seed);
          const cb = frame(mb, mc, 5000, seed);
          assert.equal(await send(xl, b, bc), NetifRsp.NETIF_RSP_OKAY);
          assert.equal(await send(xl, c, cb), NetifRsp.NETIF_RSP_OKAY);
          assert.deepEqual(await recv(xl, c), [Buffer.from(bc)]);
          assert.deepEqual(await recv(xl, b), [Buffer.from(cb)]);
          assert.deepEqual(dom0Maps(rt, evil), [], 'the disabled vifs were unmapped');
          // And the toolstack can still take the hostile guest down cleanly.
          await xl.destroy(evil);
          await rt.quiesce();
          const left = [...(await tree(xl)).keys()].filter((p) => p.includes(`/vif/${evil}`) || p.startsWith(`/local/domain/${evil}`));
          assert.deepEqual(left.filter((p) => !p.startsWith('/local/domain/0/error')), []);
        } finally {
          await rt.shutdown();
        }
      });
    });
  }
});
