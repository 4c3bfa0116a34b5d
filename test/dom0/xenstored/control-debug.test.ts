// oxenstored answers XS_CONTROL as its DEBUG command (process.ml, do_debug): `quota <domid>` and
// `mfn <domid>` for dom0, live-update's argument errors, OK for anything else, and OK to every
// guest. Replies recorded from Debian's 4.17.7 oxenstored in this order (xs-difffuzz.py, repro
// ocaml-o43-debug.txt). C xenstored's CONTROL has specs in limits.test.ts and live-update.test.ts.
import assert from 'node:assert/strict';
import { T, latin1 } from './harness.ts';
import { Harness } from './harness.ts';

describe('xenstored ocaml: XS_CONTROL is oxenstored\'s DEBUG', () => {
  it('dom0 asks: quota, mfn, live-update arguments, print; a guest is answered OK', () => {
    const h = new Harness({ profile: 'ocaml' });
    const ask = (payload: string, by = h.dom0): string => latin1(by.request(T.XS_CONTROL, payload).msg!.payload);
    // The entries map counts every node but the root: tool, tool/xenstored, local, @introduceDomain, @releaseDomain.
    assert.equal(ask('quota\x000\x00'), 'dom0 quota: 5/1000\x00');
    assert.equal(ask('quota\x000x0\x00'), 'dom0 quota: 5/1000\x00');
    assert.equal(ask('quota\x00-1\x00'), 'dom-1 quota: not set\x00');
    assert.equal(ask('quota\x00 5\x00'), 'OK\x00');
    const g = h.introduce(5);
    assert.equal(h.dom0.setPerms('/local/domain/5', 'n5'), 'OK');
    assert.equal(g.write('a/b/c', 'v'), 'OK');
    const owned = 1 + 3;
    assert.equal(ask('quota\x005'), `dom5 quota: ${owned}/1000\x00`);
    const t = h.dom0.txStart();
    assert.equal(h.dom0.write('/local/domain/5/x', 'v', t), 'OK');
    assert.equal(h.dom0.setPerms('/local/domain/5/x', 'n5', t), 'OK');
    // In a transaction, its own view.
    assert.equal(latin1(h.dom0.request(T.XS_CONTROL, 'quota\x005\x00', t).msg!.payload), `dom5 quota: ${owned + 1}/1000\x00`);
    assert.equal(ask('quota\x005\x00'), `dom5 quota: ${owned}/1000\x00`);
    assert.equal(h.dom0.commit(t), 'OK');
    assert.equal(ask('mfn\x005\x00'), `${0x1000 + 5}\x00`);
    assert.equal(ask('mfn\x000\x00'), '0\x00');
    assert.equal(ask('mfn\x006\x00'), 'OK\x00');
    assert.equal(ask('mfn\x00x\x00'), 'OK\x00');
    assert.equal(ask('live-update\x00-a\x00'), 'OK\x00');
    assert.equal(ask('live-update\x00-x\x00y\x00'), 'Unknown arguments: -x,y');
    assert.equal(ask('live-update\x00-f\x00'), 'Unknown arguments: -f');
    assert.equal(ask('live-update'), 'OK\x00');
    assert.equal(ask('live-update\x00'), 'Unknown arguments: ');
    assert.equal(ask('print\x00hello\x00'), 'OK\x00');
    assert.equal(ask('quota\x005\x00', g), 'OK\x00');
    // A guest whose target is dom0 counts as dom0 (Perms.Connection.is_dom0; campaign seed 112031).
    assert.equal(h.dom0.request(T.XS_SET_TARGET, '5\x000\x00').error ?? 'OK', 'OK');
    assert.equal(ask('mfn\x005\x00', g), `${0x1000 + 5}\x00`);
    assert.equal(h.release(5), 'OK');
    assert.equal(ask('quota\x005\x00'), 'dom5 quota: not set\x00');
  });
});

describe('xenstored ocaml: the entry quota is oxenstored\'s own bookkeeping, not ownership (repro ocaml-o45)', () => {
  // Recorded from Debian's 4.17.7 oxenstored: repros ocaml-o45-entry-quota-release.txt and
  // ocaml-o45-entry-quota-merge.txt (counts for dom0 here are relative: the harness's tree differs).
  const quotaOf = (h: Harness, domid: number, tx = 0): string =>
    latin1(h.dom0.request(T.XS_CONTROL, `quota\x00${domid}\x00`, tx).msg!.payload).replace(/\x00$/, '');
  const count = (h: Harness, domid: number, tx = 0): number => Number(/quota: (-?\d+)\//.exec(quotaOf(h, domid, tx))![1]);

  it('RELEASE drops the domain\'s entry only: a node another domain owned below it stays counted; SET_PERMS moves the root\'s entry', () => {
    const h = new Harness({ profile: 'ocaml' });
    const d0 = h.dom0;
    const base = count(h, 0);
    assert.equal(d0.write('/local/domain/6', ''), 'OK');
    assert.equal(d0.setPerms('/local/domain/6', 'n6'), 'OK');
    assert.equal(d0.write('/local/domain/6/x', ''), 'OK');
    assert.equal(d0.setPerms('/local/domain/6/x', 'n5'), 'OK');
    h.introduce(5, { home: false });
    h.introduce(6, { home: false });
    assert.equal(quotaOf(h, 5), 'dom5 quota: 1/1000');
    assert.equal(quotaOf(h, 6), 'dom6 quota: 1/1000');
    assert.equal(h.release(6), 'OK');
    assert.equal(d0.read('/local/domain/6/x'), 'ENOENT');
    assert.equal(quotaOf(h, 5), 'dom5 quota: 1/1000');
    assert.equal(quotaOf(h, 6), 'dom6 quota: not set');
    assert.equal(count(h, 0), base + 1);
    assert.equal(d0.setPerms('/', 'n5'), 'OK');
    assert.equal(quotaOf(h, 5), 'dom5 quota: 2/1000');
    assert.equal(count(h, 0), base);
  });

  it('a merged commit adds only the changes of domains its map still has; RM / takes the root\'s entry too (the count goes below 0)', () => {
    const h = new Harness({ profile: 'ocaml' });
    const d0 = h.dom0;
    const other = h.socket('other');
    assert.equal(d0.write('/local/domain/5', ''), 'OK');
    assert.equal(d0.setPerms('/local/domain/5', 'n5'), 'OK');
    assert.equal(d0.write('/local/domain/7', ''), 'OK');
    assert.equal(quotaOf(h, 5), 'dom5 quota: 1/1000');
    const t1 = other.txStart();
    assert.equal(other.rm('/local/domain/5', t1), 'OK');
    assert.equal(quotaOf(h, 5, 0), 'dom5 quota: 1/1000');
    assert.equal(latin1(other.request(T.XS_CONTROL, 'quota\x005\x00', t1).msg!.payload), 'dom5 quota: not set\x00');
    assert.equal(d0.write('/tool/other', 'v'), 'OK');
    assert.equal(other.commit(t1), 'OK');
    assert.equal(d0.dir('/local/domain'), '7');
    // Domain 5 left the transaction's map (its count reached 0), so the merge leaves the store's alone.
    assert.equal(quotaOf(h, 5), 'dom5 quota: 1/1000');
    const base = count(h, 0);
    const t2 = other.txStart();
    assert.equal(other.write('/local/domain/7/a', '', t2), 'OK');
    assert.equal(other.rm('/local/domain/7/a', t2), 'OK');
    assert.equal(other.mkdir('/local/domain/8/b/c', t2), 'OK');
    assert.equal(other.commit(t2), 'OK');
    assert.equal(count(h, 0), base + 3);
    assert.equal(d0.rm('/'), 'OK');
    assert.equal(count(h, 0), -1);
    assert.equal(quotaOf(h, 5), 'dom5 quota: 1/1000');
  });
});
