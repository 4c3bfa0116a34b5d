// vbd: blkfront and blkback run the handshake of Linux and libxl (same keys, same states, same
// order), and data really flows through granted pages on a blkif ring. Every spec runs under
// lockstep with several seeds.
import assert from 'node:assert/strict';
import { XenbusState } from '../../hypervisor/public/io/xenbus.ts';
import { BlkifRsp, vdevFromName } from '../../hypervisor/public/io/blkif.ts';
import { readGrantEntryV1 } from '../../hypervisor/public/grant_table.ts';
import { bootHost, SEEDS, tree } from '../helpers/host.ts';
import { value } from '../helpers/toolstack.ts';

const XVDA = vdevFromName('xvda')!;
const XVDB = vdevFromName('xvdb')!;

interface DevInfo { name: string; state: number; disk?: { sectors: number; sectorSize: number; info: number } }

describe('vbd: blkfront <-> blkback', function () {

  for (const seed of SEEDS) {
    describe(`seed ${seed}`, () => {
      it('three guests with two disks each reach Connected on both ends, with libxl\'s keys and owners', async () => {
        const { rt, xl, trace } = await bootHost(seed);
        try {
          const ids: number[] = [];
          for (const n of [1, 2, 3]) {
            ids.push(await xl.create({
              name: `guest${n}`, disks: [{ vdev: 'xvda', target: `g${n}-root`, sizeMiB: 8 }, { vdev: 'xvdb', target: `g${n}-data`, mode: 'r' }],
            }));
          }
          await rt.quiesce();
          const t = await tree(xl);
          for (const id of ids) {
            const { devices } = await xl.guest<{ devices: DevInfo[] }>(id, { cmd: 'devices' });
            assert.deepEqual(devices.map((d) => [d.name, d.state]), [[`vbd/${XVDA}`, 4], [`vbd/${XVDB}`, 4]]);
            assert.equal(devices[0].disk?.sectors, 8 * 2048);
            assert.equal(devices[1].disk?.info, 4, 'mode r -> VDISK_READONLY');
            for (const devid of [XVDA, XVDB]) {
              const fe = `/local/domain/${id}/device/vbd/${devid}`;
              const be = `/local/domain/0/backend/vbd/${id}/${devid}`;
              // Both ends Connected; the frontend dir is the guest's (backend may read), the backend dir dom0's.
              assert.equal(t.get(`${fe}/state`), `4|n${id},r0`);
              assert.equal(t.get(`${be}/state`), `4|n0,r${id}`);
              for (const k of ['backend', 'backend-id', 'virtual-device', 'device-type', 'ring-ref', 'event-channel', 'protocol']) {
                assert.ok(t.has(`${fe}/${k}`), `${fe}/${k}`);
              }
              for (const k of ['frontend', 'frontend-id', 'online', 'params', 'mode', 'physical-device', 'hotplug-status',
                'sectors', 'sector-size', 'info', 'feature-flush-cache']) {
                assert.ok(t.has(`${be}/${k}`), `${be}/${k}`);
              }
              assert.equal(t.get(`${fe}/backend`)?.split('|')[0], be);
              assert.equal(t.get(`${be}/frontend`)?.split('|')[0], fe);
              assert.equal(t.get(`${fe}/protocol`)?.split('|')[0], 'x86_64-abi');
              assert.equal(t.get(`/libxl/${id}/device/vbd/${devid}/backend`), `${be}|n0`);
              // libxl's copy of the backend keys, dom0's alone; its state stays as first written.
              const copy = `/libxl/${id}/device/vbd/${devid}`;
              for (const k of ['frontend-id', 'online', 'params', 'script', 'mode', 'removable', 'bootable', 'type', 'dev', 'device-type', 'discard-enable']) {
                assert.equal(t.get(`${copy}/${k}`), `${value(t, `${be}/${k}`)}|n0`, `${copy}/${k}`);
              }
              assert.equal(t.get(`${copy}/state`), `${XenbusState.XenbusStateInitialising}|n0`);
            }
            // The guest's skeleton: control/shutdown is the guest's, its home dom0's.
            assert.equal(t.get(`/local/domain/${id}/control/shutdown`), `|n${id}`);
            assert.equal(t.get(`/local/domain/${id}`), `|n0,r${id}`);
          }
          // The backend went through InitWait before Connected; the frontend through Initialised.
          const seq = (role: string, dev: string): number[] => trace
            .filter((e) => e.kind === 'xenbus' && e.role === role && String(e.device).endsWith(dev) && e.domid === (role === 'backend' ? 0 : 1))
            .map((e) => e.state as number);
          assert.deepEqual(seq('backend', `1/${XVDA}`), [XenbusState.XenbusStateInitWait, XenbusState.XenbusStateConnected]);
          assert.deepEqual(seq('frontend', `vbd/${XVDA}`), [XenbusState.XenbusStateInitialised, XenbusState.XenbusStateConnected]);
        } finally {
          await rt.shutdown();
        }
      });

      it('blkfront writes sectors through granted pages and reads them back identical; writes to a read-only disk fail', async () => {
        const { rt, xl } = await bootHost(seed);
        try {
          const id = await xl.create({ name: 'io', disks: [{ vdev: 'xvda', target: 'io-root' }, { vdev: 'xvdb', target: 'io-ro', mode: 'r' }] });
          await rt.quiesce();
          const data = new Uint8Array(3 * 4096 + 512);
          for (let i = 0; i < data.length; i++) data[i] = (i * 7 + seed) & 0xff;
          const sectors = data.length / 512;
          const w = await xl.guest<{ status: number }>(id, { cmd: 'blk', device: String(XVDA), op: 'write', sector: 100, sectors, data });
          assert.equal(w.status, BlkifRsp.BLKIF_RSP_OKAY);
          const r = await xl.guest<{ status: number; data: Uint8Array }>(id, { cmd: 'blk', device: String(XVDA), op: 'read', sector: 100, sectors });
          assert.equal(r.status, BlkifRsp.BLKIF_RSP_OKAY);
          assert.deepEqual(Buffer.from(r.data), Buffer.from(data));
          const f = await xl.guest<{ status: number }>(id, { cmd: 'blk', device: String(XVDA), op: 'flush', sector: 0, sectors: 0 });
          assert.equal(f.status, BlkifRsp.BLKIF_RSP_OKAY);
          const ro = await xl.guest<{ status: number }>(id, { cmd: 'blk', device: String(XVDB), op: 'write', sector: 0, sectors: 1, data: new Uint8Array(512) });
          assert.equal(ro.status, BlkifRsp.BLKIF_RSP_ERROR);
          // Past the end of the disk: an error, not a crash.
          const past = await xl.guest<{ status: number }>(id, { cmd: 'blk', device: String(XVDA), op: 'read', sector: 16 * 2048 - 1, sectors: 2 });
          assert.equal(past.status, BlkifRsp.BLKIF_RSP_ERROR);
        } finally {
          await rt.shutdown();
        }
      });

      it('a backend mapping an answered request\'s page again (XSA-396): blkfront frees no page still mapped - finding one, it disables the disk - and detaching lets every mapping go', async () => {
        const { rt, xl } = await bootHost(seed, { quirks: { blkback: { mapAnsweredGrantLate: true } } });
        try {
          const id = await xl.create({ name: 'late', disks: [{ vdev: 'xvda', target: 'late-root' }] });
          await rt.quiesce();
          const fe = `/local/domain/${id}/device/vbd/${XVDA}`;
          const ringRef = Number(value(await tree(xl, fe), `${fe}/ring-ref`));
          const write = () => xl.guest<{ status?: number; error?: string }>(id, { cmd: 'blk', device: String(XVDA), op: 'write', sector: 0, sectors: 8, data: new Uint8Array(4096).fill(seed) });
          const w = await write();
          await rt.quiesce();
          const guest = rt.host.domains.get(id)!;
          const dataPins = rt.gnttab.activeEntries(guest).filter((a) => a.domid === 0 && a.ref !== ringRef && a.ref > 1);
          if (w.status === BlkifRsp.BLKIF_RSP_OKAY) {
            assert.deepEqual(dataPins, [], 'the grant was ended before the late map, which failed');
          } else {
            assert.equal(w.status, BlkifRsp.BLKIF_RSP_ERROR);
            assert.equal(dataPins.length, 1, 'blkback still maps the page');
            const again = await write();
            assert.match(again.error ?? '', /disabled for further use/);
            const table = rt.gnttab.tableFrames(guest).map((f) => f.bytes);
            assert.equal(readGrantEntryV1(table, dataPins[0].ref).frame, dataPins[0].gfn, 'the grant and its page are kept out of circulation');
          }
          assert.equal((await xl.blockDetach(id, 'xvda')).clean, true);
          assert.deepEqual(rt.gnttab.mappings(rt.host.domains.get(0)!).filter((m) => m.dom === id && m.ref > 1), []);
        } finally {
          await rt.shutdown();
        }
      });

      it('block-detach while I/O is in flight: each request completes or fails cleanly, both ends close, nothing is left', async () => {
        const { rt, xl } = await bootHost(seed);
        try {
          const id = await xl.create({ name: 'det', disks: [{ vdev: 'xvda', target: 'det-root' }, { vdev: 'xvdb', target: 'det-data' }] });
          await rt.quiesce();
          const before = await tree(xl, `/local/domain/0/backend/vbd/${id}`);
          assert.ok(before.size > 0);
          // Keep I/O going, four requests at a time, until the detach is done.
          let detached = false;
          const results: { status?: number; error?: string }[] = [];
          const stream = async (lane: number): Promise<void> => {
            for (let i = 0; !detached; i++) {
              results.push(await xl.guest<{ status?: number; error?: string }>(id, {
                cmd: 'blk', device: String(XVDB), op: i % 2 ? 'read' : 'write', sector: lane * 64 + (i % 8) * 8, sectors: 8,
                data: new Uint8Array(4096).fill(i),
              }));
            }
          };
          const lanes = [0, 1, 2, 3].map((l) => stream(l));
          const detach = xl.blockDetach(id, 'xvdb').finally(() => {
            detached = true;
          });
          await Promise.all(lanes);
          const ok = results.filter((r) => r.status === BlkifRsp.BLKIF_RSP_OKAY).length;
          const failed = results.filter((r) => r.status === BlkifRsp.BLKIF_RSP_ERROR || r.error !== undefined).length;
          assert.equal(ok + failed, results.length, JSON.stringify(results));
          assert.ok(ok > 0 && failed > 0, `some requests completed (${ok}) and later ones failed cleanly (${failed})`);
          assert.deepEqual(await detach, { clean: true });
          await rt.quiesce();
          const t = await tree(xl);
          assert.ok(![...t.keys()].some((p) => p.includes(`/vbd/${XVDB}`) || p.endsWith(`/${id}/${XVDB}`)), 'no xvdb node anywhere');
          const { devices } = await xl.guest<{ devices: DevInfo[] }>(id, { cmd: 'devices' });
          assert.deepEqual(devices.map((d) => [d.name, d.state]), [[`vbd/${XVDA}`, 4]]);
          // The other disk still works.
          const r = await xl.guest<{ status: number }>(id, { cmd: 'blk', device: String(XVDA), op: 'read', sector: 0, sectors: 8 });
          assert.equal(r.status, BlkifRsp.BLKIF_RSP_OKAY);
        } finally {
          await rt.shutdown();
        }
      });

      it('the guest closes its disk: blkback answers Closing with Closing and keeps the ring mapped; it lets the ring go only at the frontend\'s Closed, then goes Closed (Linux frontend_changed)', async () => {
        const { rt, xl, trace } = await bootHost(seed);
        try {
          const id = await xl.create({ name: 'cls', disks: [{ vdev: 'xvda', target: 'cls-root', sizeMiB: 4 }] });
          await rt.quiesce();
          const ringRef = Number(value(await tree(xl), `/local/domain/${id}/device/vbd/${XVDA}/ring-ref`));
          // An orderly poweroff: the guest takes every Connected frontend to Closing first.
          await xl.shutdown(id, 'poweroff', { wait: true });
          // Each end's state writes as xenstored received them (the order the other end sees).
          const fe = `/local/domain/${id}/device/vbd/${XVDA}`;
          const be = `/local/domain/0/backend/vbd/${id}/${XVDA}`;
          const state = (dir: string, s: XenbusState): number => trace.findIndex((e) => e.kind === 'xenstore' && e.dir === 'IN'
            && e.type === 'WRITE' && e.payload === `${dir}/state\\0${s}`);
          const ring = (op: string, handle?: number): number => trace.findIndex((e) => e.kind === 'gnttab' && e.op === op && e.domid === 0
            && e.dom === id && e.status === 0 && (handle === undefined ? e.ref === ringRef : e.handle === handle));
          const mapped = ring('map_grant_ref');
          assert.ok(mapped >= 0, 'blkback mapped the ring');
          const unmapped = ring('unmap_grant_ref', trace[mapped].handle as number);
          const order = {
            frontendClosing: state(fe, XenbusState.XenbusStateClosing), backendClosing: state(be, XenbusState.XenbusStateClosing),
            frontendClosed: state(fe, XenbusState.XenbusStateClosed), ringUnmapped: unmapped, backendClosed: state(be, XenbusState.XenbusStateClosed),
          };
          for (const [k, at] of Object.entries(order)) assert.ok(at >= 0, `${k} is in the trace`);
          const sorted = Object.entries(order).sort((a, b) => a[1] - b[1]).map(([k]) => k);
          assert.deepEqual(sorted, ['frontendClosing', 'backendClosing', 'frontendClosed', 'ringUnmapped', 'backendClosed']);
        } finally {
          await rt.shutdown();
        }
      });
    });
  }
});
