// The seed's replicated xenstored (issue 12; not in Xen, whose xenstored has no standbys): with
// `seedReplicas: 2` the primary publishes every batch on a shared-memory log to two standbys
// before the batch's replies leave. Here the primary is killed at a random point, drawn from the
// seed, while the guest increments a counter in transactions and writes 10 nodes beside it;
// 10 ms later (the standbys' watchdog) standby 0 reads the rest of the log and takes over: dom0
// maps the rings again and the guest carries on. Nothing acknowledged is lost (the shadow-store
// invariant, checked from the failover on: every write answered OK is in the tree, nothing else
// changed it), no increment is lost or made twice, the devices never leave Connected, and the
// toolstack works through the new primary. Variants: oxenstored with a guest that implements
// ring reconnection (as xenstored-restart's fixed one), and C xenstored, whose guests have no
// reconnection to fall back on - a crash between two batches loses nothing on the ring.
import { XsdSockmsgType } from '../hypervisor/public/io/xs_wire.ts';
import { defineScenario } from '../sim/scenario/scenario.ts';
import { blockIoCompletes, createGuestWithDevices, devicesConnected, guestWritesBefore } from './xenstored-crash-checks.ts';

const INCREMENTS = 10;
const WRITES = 10;

export default defineScenario({
  name: 'xenstored-failover',
  title: 'xenstored with two standbys dies at a random point: a standby takes over, no acknowledged write is lost, the guest and its devices carry on',
  tags: ['xenstore', 'fault'],
  variants: {
    fixed: {
      description: 'oxenstored with 2 standbys; the guest implements ring reconnection',
      dom0: { profile: 'ocaml', seedReplicas: 2 },
      guest: { quirks: { xenbus: { ringReconnectAfterNs: 1e9 } } },
    },
    c: {
      description: 'C xenstored 4.17 with 2 standbys; the guest as Linux (no ring reconnection)',
      dom0: { seedReplicas: 2 },
    },
  },
  faults: { jitter: { p: [0, 0.3], maxNs: 2e6 } },
  async run(s) {
    const id = await createGuestWithDevices(s, 'hydra');
    await guestWritesBefore(s);
    await s.step('the primary dies at a random point of the guest\'s 10 transactional increments and 10 writes; a standby takes over', async () => {
      await s.rt.toolstackWrite(`/local/domain/${id}/data/counter`, '0', [`n${id}`]);
      let r: { retries?: number; error?: string } = {};
      const writeErrors: string[] = [];
      await s.atRandomPoint(async () => {
        await Promise.all([
          (async () => {
            r = await s.guest<{ retries?: number; error?: string }>('guest', { cmd: 'xs-increment', path: 'data/counter', times: INCREMENTS });
          })(),
          (async () => {
            for (let i = 0; i < WRITES; i++) {
              const w = await s.guest<{ error?: string }>('guest', { cmd: 'xs', type: XsdSockmsgType.XS_WRITE, payload: `data/w${i}\0v${i}`, timeoutNs: 10e9 });
              if (w.error !== undefined || 'timedOut' in w) writeErrors.push(`data/w${i}: ${JSON.stringify(w)}`);
            }
          })(),
        ]);
      }, () => s.rt.send(0, { cmd: 'xenstored-crash' }), 900, 'xenstored-crash');
      s.expect(r.error === undefined, `xs-increment: ${r.error}`);
      s.expect(writeErrors.length === 0, writeErrors.join('; '));
      const failedOver = s.trace.filter((e) => e.kind === 'xenstored' && e.op === 'failed-over').length;
      const restarted = s.trace.some((e) => e.kind === 'xenstored' && e.op === 'restarted');
      s.expect(await s.waitFor(`/local/domain/${id}/data/counter`, String(INCREMENTS)), `the counter reads ${await s.read(`/local/domain/${id}/data/counter`)}`);
      s.expect(failedOver === 1 && !restarted, `failovers ${failedOver}, restarted ${restarted}`);
      for (let i = 0; i < WRITES; i++) {
        const v = await s.read(`/local/domain/${id}/data/w${i}`);
        s.expect(v === `v${i}`, `data/w${i} reads ${v}`);
      }
    });
    await s.step('the devices are still Connected at both ends', () => devicesConnected(s, id));
    await s.step('the guest\'s drivers see their devices Connected and block I/O completes', () => blockIoCompletes(s, 0x3c, 24));
    await s.step('the guest reads back what it wrote before the crash, and writes through the new primary', async () => {
      const r = await s.guest<{ payload?: string }>('guest', { cmd: 'xs', type: XsdSockmsgType.XS_READ, payload: 'data/before\0', timeoutNs: 1e9 });
      s.expect(r.payload === 'committed', `read data/before: ${JSON.stringify(r)}`);
      const w = await s.guest<{ error?: string }>('guest', { cmd: 'xs', type: XsdSockmsgType.XS_WRITE, payload: 'data/after\0taken over', timeoutNs: 1e9 });
      s.expect(w.error === undefined && !('timedOut' in w), `write data/after: ${JSON.stringify(w)}`);
    });
    await s.step('xl destroy guest: the toolstack works through the new primary', async () => {
      await s.xl.destroy(id);
      s.expect(await s.waitFor(`/local/domain/${id}`, null), 'the guest\'s home is gone');
    });
  },
});
