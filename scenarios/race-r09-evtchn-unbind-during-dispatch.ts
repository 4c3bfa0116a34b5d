// R09 (XSA-331): a guest with two vCPUs reads its disk while the toolstack detaches it. Every
// answer blkback puts on the ring comes as an event: the upcall on vCPU0 finds the port's
// irq_info, then calls blkfront's interrupt handler. Meanwhile xenwatch (on vCPU1) handles the
// backend's Closing: blkfront tears down and unbinds the port, which frees the irq_info. Before
// Linux 073d0552ead5 nothing made the unbind wait, so an upcall that had found the irq_info just
// before called through freed memory - a guest crash on device removal under event load. The
// fix, evtchn_rwlock, makes the unbind wait for the upcall in flight. Whether the teardown runs
// between the upcall's lookup and its call is up to the schedule (events-base.ts models the
// two vCPUs as the upcall task and xenwatch).
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

const XVDB = 51728;
const READS = 32;

export default defineScenario({
  name: 'race-r09-evtchn-unbind-during-dispatch',
  title: 'block-detach while a 2-vCPU guest reads the disk: the upcall dispatching its event races the unbind',
  tags: ['race', 'vbd', 'xsa', 'evtchn'],
  race: { id: 'R09', name: 'evtchn-unbind-during-dispatch (XSA-331)', source: 'Linux 073d0552ead5' },
  variants: {
    fixed: { description: 'evtchn_rwlock: the upcall holds it shared, freeing a port\'s irq_info takes it exclusive' },
    buggy: {
      description: 'no evtchn_rwlock: unbind frees the irq_info the upcall on the other vCPU is dispatching',
      guest: { quirks: { events: { noEvtchnRwlock: true } } },
    },
  },
  expect: { fixed: 'pass', buggy: 'fail' },
  faults: { jitter: { p: [0, 0.2], maxNs: 1e6 } },
  async run(s) {
    const id = await s.step('xl create a guest with two vCPUs', () => s.create('guest', guestConfig('guest', { vcpus: 2 })));
    await s.step('xl block-attach guest xvdb', () => s.xl.blockAttach(id, { vdev: 'xvdb', target: 'r09-data' }));
    await s.step('the guest reads xvdb in a loop while xl block-detach guest xvdb', async () => {
      // A reader of READS sectors, one request at a time (the detach takes about ten without
      // faults). Bounded: virtual time stands still while the guest is busy, so a reader that
      // never stopped would keep a delayed xenwatch (the jitter fault) from ever running.
      const reads = (async (): Promise<number> => {
        for (let n = 0; n < READS; n++) {
          const r = await s.guest<{ status?: number; error?: string }>('guest', { cmd: 'blk', device: `vbd/${XVDB}`, op: 'read', sector: n, sectors: 1 });
          if (r.error !== undefined || r.status !== 0) return n;
        }
        return READS;
      })();
      const r = await s.xl.blockDetach(id, 'xvdb');
      s.note(`${await reads} of ${READS} reads answered; ${r.clean ? 'backend reached Closed' : 'removed by force after the timeout'}`);
    });
    await s.step('nothing of xvdb is left', async () => {
      s.expect((await s.read(`/local/domain/0/backend/vbd/${id}/${XVDB}`)) === undefined, 'backend dir removed');
      s.expect((await s.read(`/local/domain/${id}/device/vbd/${XVDB}`)) === undefined, 'frontend dir removed');
    });
  },
});
