// Four writers - two dom0 tools and two guests over their own rings - increment one shared
// counter concurrently, each increment a read-modify-write in its own transaction, retried on
// EAGAIN. xenstored fails some commits spuriously on top of the real conflicts. Optimistic
// transactions must still make every increment land exactly once: the final value is the number
// of increments, and the retries the writers report are the EAGAINs the daemon sent.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

const COUNTER = '/scenario/counter';
const TIMES = 12;

export default defineScenario({
  name: 'toolstack-transactions-race',
  title: 'dom0 tools and guests incrementing one counter in transactions under spurious EAGAIN: every increment lands once',
  tags: ['xenstore', 'transactions'],
  faults: { jitter: { p: [0, 0.3], maxNs: 1e6 }, spuriousEagain: [0.15, 0.35] },
  async run(s) {
    const a = await s.step('xl create guest-a', () => s.create('guest-a', guestConfig('guest-a')));
    const b = await s.step('xl create guest-b', () => s.create('guest-b', guestConfig('guest-b')));
    await s.step(`dom0 creates ${COUNTER} = 0, writable by both guests`, () =>
      s.rt.toolstackWrite(COUNTER, '0', ['n0', `b${a}`, `b${b}`]));
    const mark = s.trace.length;
    const retries = await s.step(`all four writers increment it ${TIMES} times at once`, async () => {
      const out = await Promise.all([
        s.rt.toolstack<{ retries: number }>('tx-increment', { path: COUNTER, times: TIMES }),
        s.rt.toolstack<{ retries: number }>('tx-increment', { path: COUNTER, times: TIMES }),
        s.guest<{ retries?: number; error?: string }>('guest-a', { cmd: 'xs-increment', path: COUNTER, times: TIMES }),
        s.guest<{ retries?: number; error?: string }>('guest-b', { cmd: 'xs-increment', path: COUNTER, times: TIMES }),
      ]);
      for (const r of out) s.expect(typeof r.retries === 'number', `a writer failed: ${JSON.stringify(r)}`);
      return out.map((r) => r.retries!);
    });
    const total = 4 * TIMES;
    await s.step('every increment landed exactly once', async () => {
      const v = await s.read(COUNTER);
      s.expect(v === String(total), `counter is ${v}, expected ${total}`);
    });
    // The retries are visible in the trace: each was an EAGAIN answer to a TRANSACTION_END.
    const eagain = s.trace.slice(mark).filter((e) => e.kind === 'xenstore' && e.dir === 'OUT' && e.type === 'ERROR' && e.payload === 'EAGAIN\\0');
    const sum = retries.reduce((x, y) => x + y, 0);
    s.note(`retries per writer: ${retries.join(', ')}; EAGAIN replies: ${eagain.length}`);
    s.expect(sum > 0, 'some commit was retried');
    s.expect(eagain.length === sum, `the writers retried ${sum} times but xenstored sent ${eagain.length} EAGAINs`);
  },
});
