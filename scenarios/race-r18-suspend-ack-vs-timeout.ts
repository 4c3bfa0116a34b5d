// R18: the toolstack asks a guest to suspend and gives up after a timeout. If it withdraws the
// request with a plain write, a guest that acknowledged in the meantime suspends anyway while the
// toolstack reports "not responding" - both happen. The fix re-reads in a transaction: still
// "suspend" -> withdraw; already "" -> the guest took it, so count it as acknowledged.
//
// The window needs no injected fault: the guest's vCPU is descheduled in the middle of its ack
// (it has read "suspend" in its transaction; the write and the commit are still to come) and
// runs again the moment the toolstack's timer fires - an overcommitted host, or an `xl pause`
// that lasts as long as the timeout. From then on the schedule decides who goes first: the
// guest's commit, or the toolstack's withdrawal.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

/** xl's timeout for the guest's ack, short for the scenario (libxl's is 60 s). */
const TIMEOUT_NS = 25e6;

export default defineScenario({
  name: 'race-r18-suspend-ack-vs-timeout',
  title: 'a suspend request times out just as the guest acknowledges it',
  tags: ['race', 'power'],
  race: { id: 'R18', name: 'suspend-ack-vs-timeout', source: 'xen f393b48c18, d12e4ad65c' },
  variants: {
    fixed: { description: 'withdraw in a transaction, honouring a late ack' },
    buggy: { description: 'withdraw with a plain write', dom0: { quirks: { toolstack: { suspendCancelPlainWrite: true } } } },
  },
  expect: { fixed: 'pass', buggy: 'fail' },
  faults: { suspendAckDelayNs: [15e6, 35e6], jitter: { p: [0.2, 0.6], maxNs: 4e6 } },
  async run(s) {
    const id = await s.step('xl create guest', () => s.create('guest', guestConfig('guest')));
    const node = `/local/domain/${id}/control/shutdown`;
    const r = await s.step(`xl save: suspend request with a ${TIMEOUT_NS / 1e6} ms timeout; the guest loses its vCPU mid-ack until the timer fires`, async () => {
      const t0 = s.rt.virtualNow;
      let request: Promise<{ acked: boolean }> | undefined;
      // A guest slow to ack of its own (the suspendAckDelayNs fault) opens the window itself.
      const slowGuest = Number(s.faults.suspendAckDelayNs ?? 0) > 0;
      let descheduled = false;
      await s.runUntil(async () => {
        request = s.xl.shutdown(id, 'suspend', { timeoutNs: TIMEOUT_NS });
      }, (e) => {
        // The guest's read of the request inside its ack transaction (manage.c shutdown_handler).
        if (slowGuest || descheduled || e.kind !== 'xenstore' || e.dir !== 'IN' || e.domid !== id || e.type !== 'READ' || !e.tx_id) return false;
        if (!String(e.payload).startsWith('control/shutdown')) return false;
        // Right here, not once the host is quiet: by then the ack would be committed.
        descheduled = true;
        s.rt.faultPause(id);
        s.rt.deferOnHost(t0 + TIMEOUT_NS - s.rt.virtualNow, () => s.rt.faultUnpause(id));
        return true;
      });
      if (descheduled) s.note('the guest was descheduled mid-ack until the timeout');
      return request!;
    });
    await s.step('let both sides finish', () => s.xl.settled());
    const suspended = s.xl.events.some((e) => e.domid === id && e.reason === 'SHUTDOWN_suspend');
    s.note(`toolstack: ${r.acked ? 'acknowledged' : 'withdrawn'}; guest: ${suspended ? 'suspended' : 'running'}; control/shutdown "${await s.read(node) ?? ''}"`);
    s.expect(r.acked === suspended,
      r.acked ? 'the toolstack counted an ack but the guest never suspended' : 'the toolstack withdrew the request but the guest suspended anyway');
    if (suspended) await s.step('xl resume', () => s.xl.resume(id));
  },
});
