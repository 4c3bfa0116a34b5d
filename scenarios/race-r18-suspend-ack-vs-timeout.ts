// R18: the toolstack asks a slow guest to suspend and gives up after a timeout. If it withdraws
// the request with a plain write, a guest that acknowledged in the meantime suspends anyway while
// the toolstack reports "not responding" - both happen. The fix re-reads in a transaction: still
// "suspend" -> withdraw; already "" -> the guest took it, so count it as acknowledged.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

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
    const r = await s.step('xl save: suspend request with a 25 ms timeout', () => s.xl.shutdown(id, 'suspend', { timeoutNs: 25e6 }));
    await s.step('let both sides finish', () => s.xl.settled());
    const suspended = s.xl.events.some((e) => e.domid === id && e.reason === 'SHUTDOWN_suspend');
    s.note(`toolstack: ${r.acked ? 'acknowledged' : 'withdrawn'}; guest: ${suspended ? 'suspended' : 'running'}`);
    s.expect(r.acked === suspended,
      r.acked ? 'the toolstack counted an ack but the guest never suspended' : 'the toolstack withdrew the request but the guest suspended anyway');
    if (suspended) await s.step('xl resume', () => s.xl.resume(id));
  },
});
