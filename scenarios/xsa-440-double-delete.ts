// XSA-440 (CVE-2023-34323), C xenstored: two transactions deleting the same nodes both committed;
// the second commit subtracted the nodes from their owner's count again, the count went negative
// and an assertion killed the daemon. Fixed: the second transaction read nodes that changed under
// it, so its commit is EAGAIN and nothing is counted twice.
// Unfixed daemon: the second commit succeeds, the owner's node count underflows, xenstored aborts.
import { XsdSockmsgType as T } from '../hypervisor/public/io/xs_wire.ts';
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

const DIR = '/scenario/x440';

export default defineScenario({
  name: 'xsa-440-double-delete',
  title: 'XSA-440: of two transactions removing the same subtree the second gets EAGAIN and xenstored lives',
  tags: ['xsa', 'xenstore', 'transactions'],
  faults: { jitter: { p: [0, 0.3], maxNs: 1e6 } },
  async run(s) {
    const a = await s.step('xl create guest-a', () => s.create('a', guestConfig('guest-a')));
    const b = await s.step('xl create guest-b', () => s.create('b', guestConfig('guest-b')));
    const xs = (role: string, type: T, payload: string, tx = 0) =>
      s.guest<{ payload?: string; error?: string; timedOut?: boolean }>(role, { cmd: 'xs', type, payload, tx, timeoutNs: 1e9 });
    const start = async (role: string): Promise<number> => {
      const r = await xs(role, T.XS_TRANSACTION_START, '\0');
      const tx = Number(r.payload?.replace(/\0$/, ''));
      s.expect(tx > 0, `${role} TRANSACTION_START: ${JSON.stringify(r)}`);
      return tx;
    };
    await s.step(`dom0 lets both write ${DIR}; guest-a creates ${DIR}/victim with three children`, async () => {
      await s.rt.toolstackWrite(DIR, '', ['n0', `b${a}`, `b${b}`]);
      const r = await s.guest<{ results: string[] }>('a', { cmd: 'xs-batch', ops: ['x', 'y', 'z'].map((k) => ['write', `${DIR}/victim/${k}`, k] as const) });
      s.expect(r.results.every((x) => x === 'OK'), `creates: ${r.results.join(',')}`);
    });
    const [ta, tb] = await s.step('both guests start a transaction and remove the victim in it', async () => {
      const txs = [await start('a'), await start('b')];
      for (const [role, tx] of [['a', txs[0]], ['b', txs[1]]] as const) {
        const r = await xs(role, T.XS_RM, `${DIR}/victim\0`, tx);
        s.expect(r.error === undefined, `${role} RM in its transaction: ${JSON.stringify(r)}`);
      }
      return txs;
    });
    await s.step('guest-a commits: OK; guest-b commits: EAGAIN', async () => {
      const ea = await xs('a', T.XS_TRANSACTION_END, 'T\0', ta);
      s.expect(ea.error === undefined && !ea.timedOut, `guest-a's commit: ${JSON.stringify(ea)}`);
      const eb = await xs('b', T.XS_TRANSACTION_END, 'T\0', tb);
      s.expect(eb.error === 'EAGAIN', `guest-b's commit: ${JSON.stringify(eb)}`);
      s.expect(await s.read(`${DIR}/victim`) === undefined, 'the victim is gone');
    });
    await s.step('xenstored lives and guest-a can create the victim again', async () => {
      const r = await xs('a', T.XS_WRITE, `${DIR}/victim/again\0v`);
      s.expect(r.error === undefined && !r.timedOut, `guest-a writes again: ${JSON.stringify(r)}`);
      s.expect((await xs('b', T.XS_READ, `${DIR}/victim/again\0`)).payload === 'v', 'guest-b reads it');
    });
  },
});
