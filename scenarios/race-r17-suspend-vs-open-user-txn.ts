// R17: a guest's user process keeps a xenstore transaction open through /dev/xen/xenbus while
// the toolstack suspends the guest. Linux freezes user space first, then xs_suspend waits until
// no transaction is open; before d10e0cc113c9 the frozen process's transaction counted, so the
// wait never ended and the guest never suspended. The fix leaves user transactions out of that
// count; one begun before the suspend is refused at commit (EAGAIN) and the process retries it.
// Whether the freeze catches the process inside a transaction is up to the interleaving.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

const COUNTER = 'data/counter';
/**
 * Transactions the process runs (each a read-modify-write of the counter). One leaves the freeze
 * a chance to come before, inside or after it; with more, it nearly always lands inside one.
 */
const TIMES = 1;

export default defineScenario({
  name: 'race-r17-suspend-vs-open-user-txn',
  title: 'a guest is suspended while a user process may hold a xenstore transaction open',
  tags: ['race', 'power', 'xenstore'],
  race: { id: 'R17', name: 'suspend-vs-open-user-txn', source: 'Linux d10e0cc113c9' },
  variants: {
    fixed: { description: 'user transactions do not hold suspend up; one begun before it is refused at commit (EAGAIN)' },
    buggy: {
      description: 'xs_suspend also waits for user transactions, whose processes are already frozen',
      guest: { quirks: { xenbus: { userTransactionsBlockSuspend: true } } },
    },
  },
  expect: { fixed: 'pass', buggy: 'fail' },
  async run(s) {
    const id = await s.step('xl create guest', () => s.create('guest', guestConfig('guest')));
    await s.step(`a user process sets ${COUNTER} = 0 through /dev/xen/xenbus`, async () => {
      const r = await s.guest<{ results: string[] }>('guest', { cmd: 'xs-batch', ops: [['write', COUNTER, '0']] });
      s.expect(r.results[0] === 'OK', `write: ${r.results[0]}`);
    });
    let increments: Promise<{ retries?: number; error?: string }> | undefined;
    await s.step(`the process increments it in a transaction (${TIMES}x) as xl asks the guest to suspend`, async () => {
      increments = s.guest<{ retries?: number; error?: string }>('guest', { cmd: 'xs-increment', path: COUNTER, times: TIMES });
      const r = await s.xl.shutdown(id, 'suspend');
      s.expect(r.acked, 'the guest acknowledged the suspend request');
    });
    const suspended = s.xl.events.some((e) => e.domid === id && e.event === 'shutdown' && e.reason === 'SHUTDOWN_suspend');
    s.expect(suspended, 'the guest acknowledged but never suspended: xs_suspend waits for a transaction of a frozen process');
    await s.step('xl resume guest (in place)', () => s.xl.resume(id));
    await s.step('the process finishes its increments', async () => {
      const r = await increments!;
      s.expect(r.error === undefined, `xs-increment: ${r.error}`);
      s.note(`commits retried: ${r.retries}`);
      const v = await s.read(`/local/domain/${id}/${COUNTER}`);
      s.expect(v === String(TIMES), `${COUNTER} is ${v}, expected ${TIMES}: an increment was lost or applied twice`);
    });
  },
});
