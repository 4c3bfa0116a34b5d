// Ring ownership (known-races R10, variant a): only the front end initialises a shared ring
// (io/ring.h); the back end attaches to what it finds. A MirageOS netback before mirage-net-xen
// #68 set up every ring it mapped as if it owned it, zeroing the indexes: the RX buffers a Linux
// netfront had already posted were gone, and netback waited for ever for buffers to fill.
// Linux's netfront posts its buffers before it says Connected, and netback maps the rings only
// once it sees Connected, so the loss happens on every schedule - as the report's restored VMs
// saw every time. A plain bug, not a race: it lives here, with the buggy netback as the variant
// before-mirage-net-xen-68. The guest has two vifs on one bridge; one sends, the other must
// receive.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

interface RxView { posted: number; req_prod_pvt: number; rsp_cons: number; shared: { req_prod: number; rsp_prod: number } }
interface DevInfo { name: string; state: number; net?: { rx?: RxView } }

const VIFS = ['vif/0', 'vif/1'];
const FRAMES = 4;

/** A broadcast Ethernet frame (ethertype 0x88b5, local experimental) numbered `n`. */
function frame(n: number): Uint8Array {
  const f = new Uint8Array(60);
  f.fill(0xff, 0, 6);
  f.set([0x02, 0x00, 0x00, 0x00, 0x10, 0x01], 6);
  f[12] = 0x88;
  f[13] = 0xb5;
  f[14] = n;
  return f;
}

export default defineScenario({
  name: 'ring-ownership',
  title: 'netback attaches to the rings netfront set up, keeping the RX buffers posted before it looked',
  tags: ['vif', 'rings'],
  variants: {
    fixed: { description: 'netback attaches to the mapped rings without writing them (of_buf_no_init)' },
    'before-mirage-net-xen-68': {
      description: 'netback re-initialises each ring it maps (Ring.Rpc.of_buf): indexes back to 0, posted RX buffers lost',
      dom0: { quirks: { netback: { initRingsOnAttach: true } } },
    },
  },
  expect: { fixed: 'pass', 'before-mirage-net-xen-68': 'fail' },
  faults: { jitter: { p: [0, 0.3], maxNs: 1e6 } },
  async run(s) {
    const id = await s.step('xl create guest with two vifs on xenbr0', () =>
      s.create('guest', guestConfig('guest', { vifs: [{ bridge: 'xenbr0' }, { bridge: 'xenbr0' }] })));
    await s.step('both vifs are Connected at both ends', async () => {
      for (const [i, vif] of VIFS.entries()) {
        const be = `/local/domain/0/backend/vif/${id}/${i}/state`;
        s.expect(await s.waitFor(be, '4', 1e9), `${vif}: netback stuck at ${await s.read(be)}`);
      }
    });
    await s.step('no one but netfront moved its RX ring\'s request producer', async () => {
      const { devices } = await s.guest<{ devices: DevInfo[] }>('guest', { cmd: 'devices' });
      const wrong: string[] = [];
      for (const vif of VIFS) {
        const rx = devices.find((d) => d.name === vif)?.net?.rx;
        if (!rx) wrong.push(`${vif}: netfront has no rx ring`);
        else if (rx.shared.req_prod !== rx.req_prod_pvt) {
          wrong.push(`${vif}: netfront posted ${rx.posted} RX buffers up to req_prod ${rx.req_prod_pvt}, but the shared req_prod is ${rx.shared.req_prod} (rsp_prod ${rx.shared.rsp_prod})`);
        }
      }
      s.expect(wrong.length === 0, wrong.join('; '));
    });
    await s.step(`vif/1 sends ${FRAMES} broadcast frames; flooded to vif/0 by the bridge`, async () => {
      for (let n = 0; n < FRAMES; n++) {
        const r = await s.guest<{ status?: number; error?: string }>('guest', { cmd: 'net-send', device: 'vif/1', frame: frame(n) });
        s.expect(r.status === 0, `vif/1 could not send frame ${n}: ${r.error ?? `status ${r.status}`}`);
      }
    });
    await s.step('vif/0 received every frame, in order', async () => {
      const { frames } = await s.guest<{ frames: Uint8Array[] }>('guest', { cmd: 'net-recv', device: 'vif/0' });
      const got = frames.filter((f) => f[12] === 0x88 && f[13] === 0xb5).map((f) => f[14]);
      s.expect(got.length === FRAMES && got.every((n, i) => n === i), `vif/0 received frames [${got.join(', ')}] of ${FRAMES}`);
    });
  },
});
