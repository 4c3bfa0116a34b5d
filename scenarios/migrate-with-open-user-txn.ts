// xl migrate while a guest user process holds a xenstore transaction open through
// /dev/xen/xenbus (R17's machinery, spec/known-races.md): the process starts its read-modify-write
// as libxc decides to stop and copy, so the freeze may catch it inside the transaction. Linux
// (since d10e0cc113c9) does not let a user transaction hold the suspend up, so the migration goes
// on. First the go is lost: the source resumes (suspend cancelled) and a transaction begun before
// the suspend is refused at commit (EAGAIN), retried, and the counter moves by exactly one. Then
// the migration succeeds whatever the process was doing, and at the destination - a fresh tree,
// a new connection - the process's transactions work from scratch.
import type { ScenarioRun } from '../sim/scenario/run.ts';
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';
import { everyDeviceConnected, expectMigrated } from './migration-checks.ts';

const COUNTER = 'data/counter';

type Increment = Promise<{ retries?: number; error?: string }>;

/** The process's increment, started as xl writes control/shutdown = suspend to the source. */
function incrementAtSuspend(s: ScenarioRun, domid: number, started: { p?: Increment }): () => void {
  const request = `/local/domain/${domid}/control/shutdown\\0suspend`;
  return s.when((e) => e.host === undefined && e.kind === 'xenstore' && e.domid === 0 && e.dir === 'IN' && e.type === 'WRITE'
    && String(e.payload).startsWith(request), () => {
    started.p = s.guest<{ retries?: number; error?: string }>('guest', { cmd: 'xs-increment', path: COUNTER, times: 1 });
  });
}

export default defineScenario({
  name: 'migrate-with-open-user-txn',
  title: 'xl migrate while a user process may hold a xenstore transaction open: suspend is not held up; a cancelled one retries the transaction once',
  tags: ['migration', 'xenstore', 'power'],
  variants: {
    fixed: { description: 'user transactions do not hold suspend up; one begun before it is refused at commit (EAGAIN)' },
    'before-d10e0cc113c9': {
      description: "R17: xs_suspend also waits for user transactions, whose processes are already frozen - the migration fails when the freeze lands inside one",
      guest: { quirks: { xenbus: { userTransactionsBlockSuspend: true } } },
    },
  },
  expect: { fixed: 'pass', 'before-d10e0cc113c9': 'fail' },
  faults: { jitter: { p: [0, 0.3], maxNs: 2e6 }, suspendAckDelayNs: [0, 5e6] },
  async run(s) {
    s.devicesAgree('guest');
    await s.peer('B');
    const src = await s.step('xl create guest on host A (xvda, vif 0)', () =>
      s.create('guest', guestConfig('txn', { memory: 16, disks: [{ vdev: 'xvda', target: 'txn-root', sizeMiB: 1 }], vifs: [{}] })));
    await s.step(`every device connects; a user process sets ${COUNTER} = 0`, async () => {
      await everyDeviceConnected(s, 'guest');
      const r = await s.guest<{ results: string[] }>('guest', { cmd: 'xs-batch', ops: [['write', COUNTER, '0']] });
      s.expect(r.results[0] === 'OK', `write: ${r.results[0]}`);
    });

    const first: { p?: Increment } = {};
    await s.step('xl migrate guest B, the process incrementing as the guest suspends; the go is lost', async () => {
      const off = incrementAtSuspend(s, src, first);
      const out = await s.migrate('guest', 'B', { loseGo: true });
      off();
      s.expect(!out.ok && out.to.host === 'A' && out.to.domid === src, `the guest is at ${out.to.host}/${out.to.domid}`);
      s.expect(s.xl.events.some((e) => e.domid === src && e.event === 'shutdown' && e.reason === 'SHUTDOWN_suspend'),
        'the guest never suspended: a user transaction held xs_suspend up');
    });
    await s.step('the source resumed; the process finishes its increment exactly once', async () => {
      s.expect(first.p !== undefined, 'xl never asked the guest to suspend');
      const r = await first.p!;
      s.expect(r.error === undefined, `xs-increment: ${r.error}`);
      s.note(`commits retried: ${r.retries}`);
      const v = await s.read(`/local/domain/${src}/${COUNTER}`);
      s.expect(v === '1', `${COUNTER} is ${v}, expected 1: an increment was lost or applied twice`);
      await everyDeviceConnected(s, 'guest');
    });

    const second: { p?: Increment } = {};
    const out = await s.step('xl migrate guest B, the process incrementing again as the guest suspends', async () => {
      const off = incrementAtSuspend(s, src, second);
      const r = await s.migrate('guest', 'B');
      off();
      s.expect(second.p !== undefined, 'xl never asked the guest to suspend');
      return r;
    });
    await s.step('host B runs the guest with its memory; host A has none of it', () => expectMigrated(s, out));
    await s.step('at host B the process runs transactions on its new connection', async () => {
      await everyDeviceConnected(s, 'guest');
      const w = await s.guest<{ results: string[] }>('guest', { cmd: 'xs-batch', ops: [['write', COUNTER, '0']] });
      s.expect(w.results[0] === 'OK', `write: ${w.results[0]}`);
      const r = await s.guest<{ retries?: number; error?: string }>('guest', { cmd: 'xs-increment', path: COUNTER, times: 2 });
      s.expect(r.error === undefined, `xs-increment: ${r.error}`);
      const v = await s.hostOf('guest').read(`/local/domain/${s.domid('guest')}/${COUNTER}`);
      s.expect(v === '2', `${COUNTER} is ${v} at host B, expected 2`);
    });
    await s.expectNoOrphans();
  },
});
