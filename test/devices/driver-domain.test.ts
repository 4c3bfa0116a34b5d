// A network driver domain: vifs whose config says backend=<netvm> are served by netback in that
// domU, their vif-bridge scripts run there by its `xl devd` (started by its init once the kernel
// is up), not by dom0's libxl; frames between two guests cross netvm's bridge, and a detach is
// finished by devd's remove. Inline lockstep under several seeds.
import assert from 'node:assert/strict';
import { defaultMac } from '../../domains/dom0/toolstack/config.ts';
import { NetifRsp } from '../../hypervisor/public/io/netif.ts';
import { HostRuntime } from '../../sim/host-runtime.ts';
import { Xl } from '../../sim/xl.ts';

async function read(xl: Xl, path: string): Promise<string | undefined> {
  return (await xl.rt.toolstack<string | null>('read', { path })) ?? undefined;
}

function frame(dst: string, src: string, len: number): Uint8Array {
  const f = new Uint8Array(len);
  f.set(dst.split(':').map((h) => parseInt(h, 16)), 0);
  f.set(src.split(':').map((h) => parseInt(h, 16)), 6);
  f[12] = 0x88;
  f[13] = 0xb5;
  for (let i = 14; i < len; i++) f[i] = (i * 7) & 0xff;
  return f;
}

describe('network driver domain (netback in a domU, xl devd)', () => {
  for (const seed of [1, 2]) {
    it(`seed ${seed}: two guests' vifs backed by netvm connect, carry frames through netvm's bridge, and detach cleanly`, async () => {
      const rt = new HostRuntime({ seed, mode: 'lockstep', inline: true, trace: true });
      try {
        await rt.bootDom0({});
        const xl = new Xl(rt);
        const netvm = await xl.create({ name: 'netvm', driver_domain: true }, { guest: { driverDomain: {} } });
        const a = await xl.create({ name: 'a', vifs: [{ backend: netvm }] });
        const b = await xl.create({ name: 'b', vifs: [{ backend: netvm }] });
        await rt.quiesce();
        for (const id of [a, b]) {
          const be = `/local/domain/${netvm}/backend/vif/${id}/0`;
          assert.equal(await read(xl, `${be}/state`), '4', `guest ${id}: netback in netvm Connected`);
          assert.equal(await read(xl, `${be}/hotplug-status`), 'connected', `guest ${id}: vif-bridge ran`);
          assert.equal(await read(xl, `/local/domain/${id}/device/vif/0/state`), '4');
          assert.equal(await read(xl, `/local/domain/${id}/device/vif/0/backend-id`), String(netvm));
          assert.equal(await read(xl, `/local/domain/0/backend/vif/${id}`), undefined, 'dom0 has no backend for it');
          assert.ok(rt.trace.some((e) => e.kind === 'devd' && e.domid === netvm && e.event === 'add-done' && e.device === be), 'xl devd in netvm ran the script');
        }
        // a -> b: through netvm's vifs and bridge (dom0 has none of them).
        const f = frame(defaultMac(b, 0), defaultMac(a, 0), 80);
        const sent = await xl.guest<{ status?: number }>(a, { cmd: 'net-send', device: 'vif/0', frame: f });
        assert.equal(sent.status, NetifRsp.NETIF_RSP_OKAY);
        await rt.quiesce();
        const got = await xl.guest<{ frames: Uint8Array[] }>(b, { cmd: 'net-recv', device: 'vif/0' });
        assert.deepEqual(got.frames.map((x) => Buffer.from(x)), [Buffer.from(f)]);

        assert.deepEqual(await xl.networkDetach(a, 0), { clean: true });
        await rt.quiesce();
        const be = `/local/domain/${netvm}/backend/vif/${a}/0`;
        assert.equal(await read(xl, be), undefined, 'the backend dir is gone');
        assert.equal(await read(xl, `/local/domain/${a}/device/vif/0`), undefined, 'the frontend dir is gone');
        assert.ok(rt.trace.some((e) => e.kind === 'devd' && e.event === 'remove-done' && e.device === be), 'xl devd ran the remove');
        assert.deepEqual(rt.trace.filter((e) => e.kind === 'oops'), []);
      } finally {
        await rt.shutdown();
      }
    });
  }
});
