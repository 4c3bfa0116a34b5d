// XSA-414 (CVE-2022-42309) and XSA-415 (CVE-2022-42310), C xenstored. Creating a node also creates
// its missing ancestors; when that failed half-way (here: the value is over the node-size quota),
// 414's error path freed the wrong context and crashed the daemon, and 415's left the already
// created ancestors behind at the commit of a transaction - orphans. Fixed: everything is checked
// before anything is created; inside a transaction the failure dooms it (commit answers ENOMEM).
// Unfixed daemon: it dies at the first write (414), or the commit succeeds and leaves
// data/x415/b and data/x415/b/c behind (415).
import { XsdSockmsgType as T } from '../hypervisor/public/io/xs_wire.ts';
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

/** Over C's 2048-byte node-size quota for guests. */
const BIG = 'v'.repeat(2100);

export default defineScenario({
  name: 'xsa-414-415-failed-create',
  title: 'XSA-414/415: a node creation failing half-way leaves nothing, outside or inside a transaction, and the daemon lives',
  tags: ['xsa', 'xenstore', 'transactions', 'quota'],
  faults: { jitter: { p: [0, 0.3], maxNs: 1e6 } },
  async run(s) {
    const id = await s.step('xl create guest', () => s.create('guest', guestConfig('guest')));
    const xs = (type: T, payload: string, tx = 0) =>
      s.guest<{ payload?: string; error?: string; timedOut?: boolean }>('guest', { cmd: 'xs', type, payload, tx, timeoutNs: 1e9 });
    const left = async (dir: string): Promise<string[]> => (await s.dump(`/local/domain/${id}/${dir}`)).map((n) => n.path);
    await s.step('XSA-414: writing data/x414/a/b/c with an oversized value is ENOSPC and creates none of its ancestors', async () => {
      const r = await xs(T.XS_WRITE, `data/x414/a/b/c\0${BIG}`);
      s.expect(r.error === 'ENOSPC', `write: ${JSON.stringify(r)}`);
      s.expect((await left('data/x414')).length === 0, `left behind: ${(await left('data/x414')).join(' ')}`);
    });
    await s.step('XSA-415: in a transaction, a good write then the failing one; the commit is refused, nothing appears', async () => {
      const start = await xs(T.XS_TRANSACTION_START, '\0');
      const tx = Number(start.payload?.replace(/\0$/, ''));
      s.expect(tx > 0, `TRANSACTION_START: ${JSON.stringify(start)}`);
      s.expect((await xs(T.XS_WRITE, 'data/x415/a\0fine', tx)).error === undefined, 'the first write in the transaction');
      const bad = await xs(T.XS_WRITE, `data/x415/b/c/d\0${BIG}`, tx);
      s.expect(bad.error === 'ENOSPC', `the failing write: ${JSON.stringify(bad)}`);
      const end = await xs(T.XS_TRANSACTION_END, 'T\0', tx);
      s.expect(end.error === 'ENOMEM', `commit of the doomed transaction: ${JSON.stringify(end)}`);
      s.expect((await left('data/x415')).length === 0, `left behind: ${(await left('data/x415')).join(' ')}`);
    });
    await s.step('the daemon is alive: the guest writes and reads', async () => {
      s.expect((await xs(T.XS_WRITE, 'data/after\0ok')).error === undefined, 'write after the failures');
      s.expect((await xs(T.XS_READ, 'data/after\0')).payload === 'ok', 'read after the failures');
    });
  },
});
