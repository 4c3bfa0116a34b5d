// Quotas and limits. Profile 'c' targets C xenstored 4.17, profile 'ocaml' oxenstored 4.17 with
// Debian's shipped oxenstored.conf. Every boundary below was measured on Debian's 4.17.7 daemons
// (../shared/oracle, an unprivileged guest over a ring file, default options or the quota options
// named in the test), which is what the tests hold the core to.
//
// C 4.17 boundaries (unprivileged domains only, except path-max):
//   nodes owned         1000 allowed, the 1001st -> ENOSPC (count + new nodes > quota)
//   node size           24-byte header + 8 per ACL entry + value + child names; >= 2048 -> ENOSPC
//   watches             count > 128 before adding -> E2BIG (129 watches fit, the 130th fails)
//   transactions        count > 10 before starting -> ENOSPC (11 fit, the 12th fails)
//   ACL entries         more than 5 -> ENOSPC
//   path-max            relative part (after /local/domain/N/) longer than 2048 -> EINVAL, dom0 too
//   transaction-nodes   1024 nodes accessed; the next access -> ENOSPC and the commit -> ENOMEM
import assert from 'node:assert/strict';
import type { Quotas } from '../../../domains/dom0/xenstored/quota.ts';
import { type Client, Harness, fill, pathOfLength } from './harness.ts';

/** Paths under the guest's `data` dir that each create exactly one node, two levels deep. */
function* oneNodeAtATime(): Generator<string> {
  for (let i = 0; ; i++) {
    yield `data/d${i}`;
    for (let j = 0; j < 30; j++) yield `data/d${i}/n${j}`;
  }
}

/** Makes the guest own `target` nodes (it owns `data` already); returns the next free path. */
function fillNodes(g: Client, target: number, owned = 1): Generator<string> {
  const paths = oneNodeAtATime();
  for (; owned < target; owned++) assert.equal(g.write(paths.next().value as string, 'x'), 'OK', `node #${owned + 1}`);
  return paths;
}

function guestWithData(opts: { profile?: 'c' | 'ocaml'; quotas?: Partial<Quotas> } = {}): { h: Harness; g: Client } {
  const h = new Harness({ profile: opts.profile ?? 'c', quotas: opts.quotas });
  const g = h.introduce(1, { data: true });
  return { h, g };
}

function watches(c: Client, n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(c.watch('data', `t${i}`));
  c.events();
  return out;
}

function txStarts(c: Client, n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(c.txStartResult());
  return out;
}

const oks = (n: number, tail: string[] = []): string[] => [...Array<string>(n).fill('OK'), ...tail];
const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => String(i + 1));

describe('xenstored quotas', () => {
  describe('C 4.17 defaults', () => {
    it('nodes: a guest may own 1000 nodes; the 1001st is ENOSPC', () => {
      const { g } = guestWithData();
      const paths = fillNodes(g, 1000);
      assert.equal(g.write(paths.next().value as string, 'x'), 'ENOSPC');
      assert.equal(g.mkdir('data/extra'), 'ENOSPC');
      // Removing one makes room for one.
      assert.equal(g.rm('data/d0/n0'), 'OK');
      assert.equal(g.write('data/d0/n0', 'again'), 'OK');
      assert.equal(g.write('data/one-more', 'x'), 'ENOSPC');
    });

    it('nodes: a multi-node create that does not fit creates nothing (XSA-414)', () => {
      const { g, h } = guestWithData();
      fillNodes(g, 998);
      assert.equal(g.write('data/x/y/z', 'v'), 'ENOSPC');
      assert.equal(h.dom0.read('/local/domain/1/data/x'), 'ENOENT');
      assert.equal(g.mkdir('data/x/y/z'), 'ENOSPC');
      assert.equal(h.dom0.read('/local/domain/1/data/x'), 'ENOENT');
      assert.equal(g.write('data/x/y', 'v'), 'OK');
      assert.equal(g.read('data/x'), '');
      assert.equal(g.write('data/z', 'v'), 'ENOSPC');
    });

    it('nodes: dom0 has no node quota', () => {
      const h = new Harness({ profile: 'c' });
      for (let i = 0; i < 40; i++) for (let j = 0; j < 30; j++) assert.equal(h.dom0.write(`/many/d${i}/n${j}`, 'x'), 'OK');
    });

    it('nodes in a transaction: creating checks the committed count, the commit checks the result (< quota)', () => {
      // 4.17: inside a transaction only an already reached quota stops a creation; at commit the
      // resulting count must stay below the quota, else ENOSPC and nothing is applied.
      const { g, h } = guestWithData({ quotas: { nodes: 10 } });
      fillNodes(g, 8);
      let t = g.txStart();
      assert.equal(g.write('data/a/b/c', 'v', t), 'OK'); // would make 11
      assert.equal(g.write('data/q', 'v', t), 'OK');
      assert.equal(g.commit(t), 'ENOSPC');
      assert.equal(h.dom0.read('/local/domain/1/data/a'), 'ENOENT');
      assert.equal(h.dom0.read('/local/domain/1/data/q'), 'ENOENT');

      t = g.txStart();
      assert.equal(g.write('data/a/b', 'v', t), 'OK'); // would make 10
      assert.equal(g.commit(t), 'ENOSPC');
      assert.equal(h.dom0.read('/local/domain/1/data/a'), 'ENOENT');

      t = g.txStart();
      assert.equal(g.write('data/a', 'v', t), 'OK'); // makes 9
      assert.equal(g.commit(t), 'OK');
      assert.equal(g.write('data/b', 'v'), 'OK'); // outside a transaction 10 is fine

      t = g.txStart();
      assert.equal(g.write('data/c', 'v', t), 'ENOSPC'); // quota already reached
      assert.equal(g.commit(t), 'OK'); // a quota refusal does not fail the transaction
      assert.equal(h.dom0.read('/local/domain/1/data/c'), 'ENOENT');
    });

    describe('node size: 24 + 8 per ACL entry + value + child names must stay below 2048', () => {
      const CASES: readonly (readonly [what: string, acl: string, child: string, fits: number])[] = [
        ['one ACL entry', 'n1', '', 2015],
        ['three ACL entries', 'n1 r0 r2', '', 1999],
        ['one child "abc"', 'n1', 'abc', 2011],
      ];
      for (const [what, acl, child, fits] of CASES) {
        it(`${what}: a ${fits}-byte value fits, ${fits + 1} bytes is ENOSPC`, () => {
          const { g } = guestWithData();
          assert.equal(g.write('data/v', 'x'), 'OK');
          assert.equal(g.setPerms('data/v', acl), 'OK');
          if (child) assert.equal(g.write(`data/v/${child}`, ''), 'OK');
          assert.equal(g.write('data/v', fill(fits)), 'OK');
          assert.equal(g.write('data/v', fill(fits + 1)), 'ENOSPC');
          assert.equal(g.read('data/v'), fill(fits));
        });
      }

      it('applies to a new node too', () => {
        const { g } = guestWithData();
        assert.equal(g.write('data/new1', fill(2015)), 'OK');
        assert.equal(g.write('data/new2', fill(2016)), 'ENOSPC');
        assert.equal(g.read('data/new2'), 'ENOENT');
        assert.equal(g.write('data/i1/i2/leaf', fill(3000)), 'ENOSPC');
        assert.equal(g.read('data/i1'), 'ENOENT');
      });

      it("a new child counts against its parent's size", () => {
        const { g } = guestWithData();
        assert.equal(g.write('data/p', fill(2000)), 'OK'); // 24 + 8 + 2000 = 2032
        assert.equal(g.write('data/p/abcdefghijklmno', ''), 'ENOSPC'); // + 16 = 2048
        assert.equal(g.write('data/p/abcdefghijklmn', ''), 'OK'); // + 15 = 2047
      });

      it('SET_PERMS that would make the node too big is ENOSPC', () => {
        const { g, h } = guestWithData();
        assert.equal(g.write('data/s', fill(2010)), 'OK');
        assert.equal(g.setPerms('data/s', 'n1 r0'), 'ENOSPC');
        assert.equal(h.dom0.getPerms('/local/domain/1/data/s'), 'n1');
      });

      it('dom0 is exempt; a guest may still shrink or remove a big node dom0 wrote', () => {
        const { g, h } = guestWithData();
        assert.equal(h.dom0.write('/local/domain/1/data/q', fill(4000)), 'OK');
        assert.equal(g.write('data/q/c', ''), 'ENOSPC');
        assert.equal(g.setPerms('data/q', 'n1'), 'ENOSPC');
        assert.equal(g.write('data/q', 'y'), 'OK');
        assert.equal(h.dom0.write('/local/domain/1/data/q', fill(2100)), 'OK');
        assert.equal(g.rm('data/q'), 'OK');
      });
    });

    it('watches: 129 fit, the 130th is E2BIG (4.17 checks count > 128); UNWATCH frees one', () => {
      const { g } = guestWithData();
      assert.deepEqual(watches(g, 130), oks(129, ['E2BIG']));
      assert.equal(g.unwatch('data', 't0'), 'OK');
      assert.equal(g.watch('data', 'again'), 'OK');
      assert.equal(g.watch('data', 'too-many'), 'E2BIG');
    });

    it('watches: dom0 is exempt', () => {
      const h = new Harness({ profile: 'c' });
      assert.deepEqual(watches(h.dom0, 300), oks(300));
    });

    it('transactions: 11 fit, the 12th is ENOSPC (4.17 checks count > 10); ending one frees one', () => {
      const { g } = guestWithData();
      assert.deepEqual(txStarts(g, 12), [...ids(11), 'ENOSPC']);
      assert.equal(g.abort(3), 'OK');
      assert.match(g.txStartResult(), /^\d+$/);
      assert.equal(g.txStartResult(), 'ENOSPC');
    });

    it('transactions: dom0 is exempt', () => {
      const h = new Harness({ profile: 'c' });
      assert.deepEqual(txStarts(h.dom0, 30), ids(30));
    });

    it('ACL entries: 5 fit, 6 is ENOSPC; dom0 is exempt', () => {
      const { g, h } = guestWithData();
      assert.equal(g.write('data/p', ''), 'OK');
      assert.equal(g.setPerms('data/p', 'n1 r2 r3 r4 r5'), 'OK');
      assert.equal(g.setPerms('data/p', 'n1 r2 r3 r4 r5 r6'), 'ENOSPC');
      assert.equal(h.dom0.getPerms('/local/domain/1/data/p'), 'n1 r2 r3 r4 r5');
      assert.equal(h.dom0.setPerms('/local/domain/1/data/p', 'n1 r2 r3 r4 r5 r6 r7'), 'OK');
    });

    describe('path-max: the part after /local/domain/N/ may be 2048 long, for everyone (4.17)', () => {
      const home = '/local/domain/1/';
      const CASES: readonly (readonly [who: 'guest' | 'dom0', spelling: string, len: number, want: string])[] = [
        ['guest', 'relative', 2048, 'OK'],
        ['guest', 'relative', 2049, 'EINVAL'],
        ['guest', 'absolute', 2048, 'OK'],
        ['guest', 'absolute', 2049, 'EINVAL'],
        ['dom0', 'under /local/domain/1', 2048, 'OK'],
        ['dom0', 'under /local/domain/1', 2049, 'EINVAL'],
        ['dom0', 'outside /local/domain (whole path)', 2048, 'OK'],
        ['dom0', 'outside /local/domain (whole path)', 2049, 'EINVAL'],
      ];
      for (const [who, spelling, len, want] of CASES) {
        it(`${who}, ${spelling}, ${len} characters -> ${want}`, () => {
          const { g, h } = guestWithData();
          const rel = pathOfLength('data', len);
          if (who === 'guest') {
            assert.equal(g.write(spelling === 'relative' ? rel : home + rel, 'v'), want);
          } else if (spelling.startsWith('under')) {
            assert.equal(h.dom0.write(home + rel, 'v'), want);
          } else {
            const p = pathOfLength('/top', len);
            assert.equal(h.dom0.write(p, 'v'), want);
            assert.equal(h.dom0.read(p), want === 'OK' ? 'v' : 'EINVAL');
          }
        });
      }
    });

    it('transaction-nodes: 1024 nodes per transaction; then ENOSPC, and the commit fails with ENOMEM', () => {
      const h = new Harness({ profile: 'c' });
      const g = h.introduce(1);
      assert.equal(h.dom0.mkdir('/t'), 'OK');
      assert.equal(h.dom0.setPerms('/t', 'r0'), 'OK');
      for (let i = 0; i < 1100; i++) assert.equal(h.dom0.write(`/t/d${i >> 5}/n${i & 31}`, 'x'), 'OK');
      const t = g.txStart();
      for (let i = 0; i < 1024; i++) assert.equal(g.read(`/t/d${i >> 5}/n${i & 31}`, t), 'x', `read #${i + 1}`);
      assert.equal(g.read('/t/d40/n0', t), 'ENOSPC');
      assert.equal(g.read('/t/d0/n0', t), 'x'); // already accessed
      assert.equal(g.commit(t), 'ENOMEM');
      // dom0 is exempt
      const t0 = h.dom0.txStart();
      for (let i = 0; i < 1100; i++) assert.equal(h.dom0.read(`/t/d${i >> 5}/n${i & 31}`, t0), 'x');
      assert.equal(h.dom0.commit(t0), 'OK');
    });

    it('transaction-nodes: reading missing nodes counts too (and so does their parent)', () => {
      const h = new Harness({ profile: 'c' });
      const g = h.introduce(1);
      assert.equal(h.dom0.mkdir('/t'), 'OK');
      assert.equal(h.dom0.setPerms('/t', 'r0'), 'OK');
      const t = g.txStart();
      for (let i = 0; i < 1023; i++) assert.equal(g.read(`/t/miss${i}`, t), 'ENOENT');
      assert.equal(g.read('/t/miss1023', t), 'ENOSPC');
      assert.equal(g.commit(t), 'ENOMEM');
    });
  });

  describe('C: failures inside a transaction (XSA-415)', () => {
    it('a node too big marks the transaction failed: nothing is committed (ENOMEM)', () => {
      const { g, h } = guestWithData();
      let t = g.txStart();
      assert.equal(g.write('data/new', fill(3000), t), 'ENOSPC');
      assert.equal(g.commit(t), 'ENOMEM');
      t = g.txStart();
      assert.equal(g.write('data/i1/i2/leaf', fill(3000), t), 'ENOSPC');
      assert.equal(g.read('data/i1', t), 'ENOENT');
      assert.equal(g.commit(t), 'ENOMEM');
      assert.equal(h.dom0.read('/local/domain/1/data/i1'), 'ENOENT');
      assert.equal(g.write('data/e', ''), 'OK');
      t = g.txStart();
      assert.equal(g.write('data/e', fill(3000), t), 'ENOSPC');
      assert.equal(g.write('data/e2', 'y', t), 'OK');
      assert.equal(g.commit(t), 'ENOMEM');
      assert.equal(h.dom0.read('/local/domain/1/data/e2'), 'ENOENT');
    });

    it('a refused request that creates nothing (ACL entries, EACCES) does not fail it', () => {
      const { g } = guestWithData();
      assert.equal(g.write('data/e', ''), 'OK');
      let t = g.txStart();
      assert.equal(g.setPerms('data/e', 'n1 r2 r3 r4 r5 r6', t), 'ENOSPC');
      assert.equal(g.commit(t), 'OK');
      t = g.txStart();
      assert.equal(g.write('/tool/x', '', t), 'EACCES');
      assert.equal(g.commit(t), 'OK');
    });
  });

  describe('C: quotas set through the constructor keep the same boundaries', () => {
    it('nodes: 10', () => {
      const { g } = guestWithData({ quotas: { nodes: 10 } });
      const paths = fillNodes(g, 10);
      assert.equal(g.write(paths.next().value as string, ''), 'ENOSPC');
    });

    it('nodeSize: 100 (24 + 8 + 67 fits, 68 does not)', () => {
      const { g, h } = guestWithData({ quotas: { nodeSize: 100 } });
      assert.equal(g.write('data/s', fill(67)), 'OK');
      assert.equal(g.write('data/s', fill(68)), 'ENOSPC');
      assert.equal(h.dom0.write('/local/domain/1/data/s', fill(300)), 'OK');
    });

    it('watches: 3 (4 fit)', () => {
      const { g } = guestWithData({ quotas: { watches: 3 } });
      assert.deepEqual(watches(g, 6), oks(4, ['E2BIG', 'E2BIG']));
    });

    it('transactions: 2 (3 fit)', () => {
      const { g } = guestWithData({ quotas: { transactions: 2 } });
      assert.deepEqual(txStarts(g, 5), [...ids(3), 'ENOSPC', 'ENOSPC']);
    });

    it('permissions: 2', () => {
      const { g } = guestWithData({ quotas: { permissions: 2 } });
      assert.equal(g.write('data/s', ''), 'OK');
      assert.equal(g.setPerms('data/s', 'n1 r2'), 'OK');
      assert.equal(g.setPerms('data/s', 'n1 r2 r3'), 'ENOSPC');
    });

    it('pathMax: 100', () => {
      const { g, h } = guestWithData({ quotas: { pathMax: 100 } });
      assert.equal(g.write(pathOfLength('data', 100), ''), 'OK');
      assert.equal(g.write(pathOfLength('data', 101), ''), 'EINVAL');
      assert.equal(h.dom0.write(pathOfLength('/q', 100), ''), 'OK');
      assert.equal(h.dom0.write(pathOfLength('/q', 101), ''), 'EINVAL');
    });

    it('transactionNodes: 5', () => {
      const { g } = guestWithData({ quotas: { transactionNodes: 5 } });
      for (let i = 0; i < 8; i++) assert.equal(g.write(`data/n${i}`, 'x'), 'OK');
      const t = g.txStart();
      const got = Array.from({ length: 7 }, (_, i) => g.read(`data/n${i}`, t));
      assert.deepEqual(got, ['x', 'x', 'x', 'x', 'x', 'ENOSPC', 'ENOSPC']);
      assert.equal(g.commit(t), 'ENOMEM');
    });
  });

  describe('ocaml profile (oxenstored, Debian oxenstored.conf)', () => {
    it('values over 2048 bytes are E2BIG, for dom0 too', () => {
      const { g, h } = guestWithData({ profile: 'ocaml' });
      assert.equal(g.write('data/v', fill(2048)), 'OK');
      assert.equal(g.write('data/v', fill(2049)), 'E2BIG');
      assert.equal(h.dom0.write('/d0', fill(2048)), 'OK');
      assert.equal(h.dom0.write('/d0', fill(2049)), 'E2BIG');
      assert.equal(h.dom0.read('/d0'), fill(2048));
    });

    it('nodes: 1000 per domain, then EQUOTA; dom0 is exempt', () => {
      const { g, h } = guestWithData({ profile: 'ocaml' });
      const paths = fillNodes(g, 1000);
      assert.equal(g.write(paths.next().value as string, 'x'), 'EQUOTA');
      for (let i = 0; i < 40; i++) for (let j = 0; j < 30; j++) assert.equal(h.dom0.write(`/many/d${i}/n${j}`, 'x'), 'OK');
    });

    it('watches: 101 fit (count > 100 is refused), then EQUOTA; dom0 is exempt', () => {
      const { g, h } = guestWithData({ profile: 'ocaml' });
      assert.deepEqual(watches(g, 102), oks(101, ['EQUOTA']));
      assert.deepEqual(watches(h.dom0, 200), oks(200));
    });

    it('transactions: 11 fit (count > 10 is refused), then EQUOTA; dom0 is exempt', () => {
      const { g, h } = guestWithData({ profile: 'ocaml' });
      assert.deepEqual(txStarts(g, 12), [...ids(11), 'EQUOTA']);
      assert.deepEqual(txStarts(h.dom0, 20), ids(20));
    });

    it('1024 operations per transaction, then EQUOTA, and the commit is EQUOTA', () => {
      const { g } = guestWithData({ profile: 'ocaml' });
      assert.equal(g.write('data/x', 'x'), 'OK');
      const t = g.txStart();
      for (let i = 0; i < 1024; i++) assert.equal(g.read('data/x', t), 'x', `op #${i + 1}`);
      assert.equal(g.read('data/x', t), 'EQUOTA');
      assert.equal(g.commit(t), 'EQUOTA');
    });

    it('path-max 1024 (relative part), for dom0 too', () => {
      const { g, h } = guestWithData({ profile: 'ocaml' });
      assert.equal(g.write(pathOfLength('data', 1024), ''), 'OK');
      assert.equal(g.write(pathOfLength('data', 1025), ''), 'EINVAL');
      assert.equal(g.write(`/local/domain/1/${pathOfLength('data', 1025)}`, ''), 'EINVAL');
      assert.equal(h.dom0.write(pathOfLength('/q', 1024), ''), 'OK');
      assert.equal(h.dom0.write(pathOfLength('/q', 1025), ''), 'EINVAL');
    });

    it('no limit on ACL entries', () => {
      const { g } = guestWithData({ profile: 'ocaml' });
      assert.equal(g.write('data/p', ''), 'OK');
      assert.equal(g.setPerms('data/p', 'n1 r2 r3 r4 r5 r6 r7'), 'OK');
    });
  });
});
