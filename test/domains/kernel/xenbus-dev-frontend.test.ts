// /dev/xen/xenbus (domains/kernel/xenbus-dev-frontend.ts) against the real xenstored: a user
// process's file forwards its requests over the kernel's one connection, keeps its own watches
// and transactions, and takes part in the kernel's suspend gate (domains/kernel/xenbus-xs.ts)
// the way Linux does since d10e0cc113c9 (R17) - or, with the quirk, the way it did before.
import assert from 'node:assert/strict';
import { XenstoredDaemon } from '../../../domains/dom0/xenstored/daemon.ts';
import { connectLocal } from '../../../domains/dom0/xenstored/local-connection.ts';
import { XsError, XsHandle } from '../../../domains/libs/store/xs.ts';
import { Freezer, userPoint } from '../../../domains/kernel/freezer.ts';
import { XenbusDevFile } from '../../../domains/kernel/xenbus-dev-frontend.ts';
import { Xenwatch } from '../../../domains/kernel/xenbus-watch.ts';
import { XsState, type XsStateQuirks } from '../../../domains/kernel/xenbus-xs.ts';
import { XSD_SOCKMSG_SIZE, XsdSockmsgType as T, decodeHeader, encodeHeader } from '../../../hypervisor/public/io/xs_wire.ts';

/** Lets every queued reply and watch callback run (a bounded number of event-loop turns, no clock). */
async function settle(): Promise<void> {
  for (let i = 0; i < 200; i++) await new Promise<void>((r) => setImmediate(r));
}

/** A guest kernel's xenbus side: its connection with the suspend gate, its xenwatch, and files on it. */
function guestKernel(quirks: XsStateQuirks = {}) {
  const daemon = new XenstoredDaemon();
  const dom0 = connectLocal(daemon, 'dom0');
  const xs = connectLocal(daemon, 'guest kernel');
  const state = new XsState(quirks);
  xs.gate = state;
  const watch = new Xenwatch(xs, 'fe');
  const open = (): XenbusDevFile => new XenbusDevFile({ xs, watch, state });
  const user = (): XsHandle => XsHandle.fromStream(open(), 'xenstore-user');
  return { daemon, dom0, xs, state, watch, open, user };
}

/** One message as a process writes it to the file. */
function message(type: number, reqId: number, txId: number, body: string): Buffer {
  const payload = Buffer.from(body, 'latin1');
  const out = Buffer.alloc(XSD_SOCKMSG_SIZE + payload.length);
  encodeHeader({ type, req_id: reqId, tx_id: txId, len: payload.length }, out);
  payload.copy(out, XSD_SOCKMSG_SIZE);
  return out;
}

/** What the process reads back from the file, message by message. */
function replies(file: XenbusDevFile): { type: number; req_id: number; tx_id: number; body: string }[] {
  const got: { type: number; req_id: number; tx_id: number; body: string }[] = [];
  file.onDirectData = (chunk) => {
    const h = decodeHeader(chunk);
    got.push({ type: h.type, req_id: h.req_id, tx_id: h.tx_id, body: chunk.toString('latin1', XSD_SOCKMSG_SIZE, XSD_SOCKMSG_SIZE + h.len) });
  };
  return got;
}

const errorCode = (e: unknown): string => (e instanceof XsError ? e.code : String(e));

describe('/dev/xen/xenbus: a user process on the kernel\'s xenstore connection (xenbus_dev_frontend.c)', () => {
  describe('requests', () => {
    it('a reply carries the req_id the process chose, not the kernel\'s', async () => {
      const g = guestKernel();
      await g.dom0.write('/data/x', 'hello');
      const file = g.open();
      const got = replies(file);
      assert.equal(await file.fileWrite(message(T.XS_READ, 0xbeef, 0, '/data/x\0')), XSD_SOCKMSG_SIZE + 8);
      assert.equal(await file.fileWrite(message(T.XS_READ, 7, 0, '/data/none\0')), XSD_SOCKMSG_SIZE + 11);
      await settle();
      assert.deepEqual(got, [
        { type: T.XS_READ, req_id: 0xbeef, tx_id: 0, body: 'hello' },
        { type: T.XS_ERROR, req_id: 7, tx_id: 0, body: 'ENOENT\0' },
      ]);
    });

    it('a message is taken in pieces, and one that cannot fit the 4096-byte buffer with its header is refused', async () => {
      const g = guestKernel();
      await g.dom0.write('/data/x', 'v');
      const file = g.open();
      const got = replies(file);
      const m = message(T.XS_READ, 3, 0, '/data/x\0');
      assert.equal(await file.fileWrite(m.subarray(0, 10)), 10);
      assert.equal(await file.fileWrite(m.subarray(10)), m.length - 10);
      await settle();
      assert.deepEqual(got.map((r) => [r.req_id, r.body]), [[3, 'v']]);
      // 4080 bytes of payload is the most: Linux's buffer holds header and payload together.
      assert.equal(await file.fileWrite(message(T.XS_WRITE, 4, 0, `/data/big\0${'b'.repeat(4080 - 10)}`)), 4096);
      assert.equal(await file.fileWrite(message(T.XS_WRITE, 5, 0, `/data/big\0${'b'.repeat(4081 - 10)}`)), 'EINVAL');
      // A header announcing more than fits is E2BIG, whatever follows.
      const hdr = Buffer.alloc(XSD_SOCKMSG_SIZE);
      encodeHeader({ type: T.XS_READ, req_id: 6, tx_id: 0, len: 4081 }, hdr);
      assert.equal(await file.fileWrite(hdr), 'E2BIG');
      await settle();
      assert.equal((await g.dom0.read('/data/big')).length, 4070);
    });

    it('through XsHandle, a failed write(2) is the errno of that request and the file goes on', async () => {
      const g = guestKernel();
      const user = g.user();
      await assert.rejects(user.write('/data/big', 'b'.repeat(4080)), (e) => errorCode(e) === 'EINVAL');
      await user.write('/data/small', 's');
      assert.equal((await g.dom0.read('/data/small')).toString(), 's');
    });
  });

  describe('watches', () => {
    it('are the kernel\'s, per file: events go to the file that asked, with its own token', async () => {
      const g = guestKernel();
      await g.dom0.write('/data/w', '0');
      const a = g.user();
      const b = g.user();
      const seen: string[] = [];
      a.on('watch', (path, token) => seen.push(`a ${path} ${token}`));
      b.on('watch', (path, token) => seen.push(`b ${path} ${token}`));
      await a.watch('/data/w', 'same-token');
      await b.watch('/data/w', 'same-token');
      await settle();
      assert.deepEqual(seen.sort(), ['a /data/w same-token', 'b /data/w same-token'], 'one initial event each');
      seen.length = 0;
      await a.unwatch('/data/w', 'same-token');
      await g.dom0.write('/data/w', '1');
      await settle();
      assert.deepEqual(seen, ['b /data/w same-token'], 'a unwatched; b still watches');
    });

    it('XS_UNWATCH of a watch the file does not hold is answered OK; a path or token without NUL is EINVAL', async () => {
      const g = guestKernel();
      const file = g.open();
      const got = replies(file);
      await file.fileWrite(message(T.XS_UNWATCH, 1, 0, '/data/w\0nothing\0'));
      await file.fileWrite(message(T.XS_WATCH, 2, 0, '/data/w\0tok'));
      await settle();
      assert.deepEqual(got.map((r) => [r.type, r.req_id, r.body]), [[T.XS_UNWATCH, 1, 'OK\0'], [T.XS_ERROR, 2, 'EINVAL\0']]);
      assert.deepEqual(file.watchList, []);
    });

    it('go with the file: closing it unregisters them in the kernel', async () => {
      const g = guestKernel();
      await g.dom0.write('/data/w', '0');
      const user = g.user();
      let events = 0;
      user.on('watch', () => events++);
      await user.watch('/data/w', 't');
      await settle();
      await user.close();
      await settle();
      await g.dom0.write('/data/w', '1');
      await settle();
      assert.equal(events, 1, 'only the initial event');
    });
  });

  describe('transactions', () => {
    it('a file may only name its own transactions; XS_TRANSACTION_END says T or F', async () => {
      const g = guestKernel();
      const a = g.user();
      const txA = await a.transactionStart();
      const file = g.open();
      const got = replies(file);
      await file.fileWrite(message(T.XS_READ, 1, txA, '/data\0'));
      await file.fileWrite(message(T.XS_TRANSACTION_START, 2, 0, '\0'));
      await settle();
      const txB = Number.parseInt(got[1].body, 10);
      await file.fileWrite(message(T.XS_TRANSACTION_END, 3, txB, 'X\0'));
      await settle();
      assert.deepEqual(got.map((r) => [r.type, r.req_id, r.body]), [
        [T.XS_ERROR, 1, 'ENOENT\0'], [T.XS_TRANSACTION_START, 2, `${txB}\0`], [T.XS_ERROR, 3, 'EINVAL\0'],
      ]);
      assert.deepEqual(file.openTransactions, [txB]);
      assert.equal(await a.transactionEnd(txA, true), true);
    });

    it('those still open when the file is closed are aborted, as Linux does on release', async () => {
      const g = guestKernel();
      const user = g.user();
      const tx = await user.transactionStart();
      await user.write('/data/in-tx', 'x', tx);
      await user.close();
      await settle();
      assert.equal(await g.dom0.read('/data/in-tx').then(() => 'present', errorCode), 'ENOENT', 'the write never landed');
      // xenstored no longer knows the transaction on the kernel's connection.
      await assert.rejects(g.xs.read('/data', tx), (e) => errorCode(e) === 'ENOENT');
    });

    it('that abort is the kernel\'s own XS_TRANSACTION_END, which Linux counts out of xs_state_users although the user transaction never counted in', async () => {
      // Read from Linux's code (xenbus_worker -> xenbus_transaction_end, user_req false), not
      // seen on a real guest: the unsigned counter wraps, and the next suspend waits for ever.
      const g = guestKernel();
      const user = g.user();
      await user.transactionStart();
      await user.close();
      await settle();
      assert.equal(g.state.users, -1);
      let suspended = false;
      void g.state.suspend().then(() => (suspended = true));
      await settle();
      assert.equal(suspended, false);
    });
  });

  describe('suspend (xs_suspend, Linux d10e0cc113c9: R17)', () => {
    it('waits for the kernel\'s own transactions to end', async () => {
      const g = guestKernel();
      const tx = await g.xs.transactionStart();
      let suspended = false;
      void g.state.suspend().then(() => (suspended = true));
      await settle();
      assert.equal(suspended, false);
      assert.equal(await g.xs.transactionEnd(tx, true), true, 'the transaction may still end: users remain');
      await settle();
      assert.equal(suspended, true);
      g.state.resume();
    });

    it('does not wait for a user transaction; after it that transaction\'s commit is EAGAIN, its abort OK', async () => {
      const g = guestKernel();
      const user = g.user();
      const committed = await user.transactionStart();
      const aborted = await user.transactionStart();
      await user.write('/data/x', 'before suspend', committed);
      let suspended = false;
      void g.state.suspend().then(() => (suspended = true));
      await settle();
      assert.equal(suspended, true);
      g.state.resume();
      await assert.rejects(user.request(T.XS_TRANSACTION_END, 'T', committed), (e) => errorCode(e) === 'EAGAIN');
      assert.equal(await user.transactionEnd(aborted, false), true);
      assert.equal(await g.dom0.read('/data/x').then(() => 'present', errorCode), 'ENOENT', 'the pre-suspend write never lands');
      // A transaction begun after the resume commits as usual.
      const { retries } = await user.transaction(async (tx) => user.write('/data/x', 'after resume', tx));
      assert.equal(retries, 0);
      assert.equal((await g.dom0.read('/data/x')).toString(), 'after resume');
    });

    it('before the fix, a user transaction holds the suspend up until it ends (for good, if its process is frozen)', async () => {
      const g = guestKernel({ userTransactionsBlockSuspend: true });
      const freezer = new Freezer();
      const user = g.user();
      user.sched = userPoint(undefined, freezer);
      const tx = await user.transactionStart();
      freezer.freeze();
      let suspended = false;
      void g.state.suspend().then(() => (suspended = true));
      const commit = user.transactionEnd(tx, true);
      await settle();
      assert.equal(suspended, false, 'xs_suspend waits');
      assert.equal(freezer.parked, 1, 'and the process that would end the transaction is frozen');
      // Only a thaw (which Linux does not do before the suspend is over) would let it finish.
      freezer.thaw();
      assert.equal(await commit, true, 'the pre-fix transaction survives the suspend');
      await settle();
      assert.equal(suspended, true);
      g.state.resume();
    });

    it('holds new requests back while it is under way, and lets them go at resume', async () => {
      const g = guestKernel();
      await g.dom0.write('/data/x', 'v');
      const user = g.user();
      await g.state.suspend();
      let answered = false;
      const read = user.read('/data/x').then((v) => { answered = true; return v.toString(); });
      await settle();
      assert.equal(answered, false);
      g.state.resume();
      assert.equal(await read, 'v');
      assert.equal(g.state.generation, 1);
    });
  });

  describe('the freezer', () => {
    it('parks a user process at its next point while user space is frozen, and lets it go at thaw', async () => {
      const g = guestKernel();
      await g.dom0.write('/data/x', 'v');
      const freezer = new Freezer();
      const user = g.user();
      user.sched = userPoint(undefined, freezer);
      freezer.freeze();
      let answered = false;
      const read = user.read('/data/x').then(() => (answered = true));
      await settle();
      assert.equal(answered, false);
      assert.equal(freezer.parked, 1);
      freezer.thaw();
      await read;
      assert.equal(answered, true);
    });
  });
});
