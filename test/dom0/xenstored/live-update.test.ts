// Live update as C xenstored 4.17 does it (xenstored_control.c lu_*, dump_state_*/read_state_*):
// CONTROL live-update's answers, the wait for transactions, and a new daemon instance that reads
// the state stream and carries on - same tree (ACLs, values, child order), watches, domains,
// connections with their unprocessed input - with nothing a client can notice.
//
// Checked on the real C xenstored 4.17 (../shared/oracle, raw XS_CONTROL requests on two dom0
// sockets A and B, 2026-12-06); xensim answers the same except where marked:
//   live-update                      -> EINVAL
//   live-update -a                   -> "No live-update session active."
//   live-update -c x / -s            -> "Not in live-update session."
//   live-update -s -x / -s -t        -> EINVAL
//   live-update -b 100 / -d 1 x      -> EINVAL   (daemon build: -b/-d are the stub domain's)
//   live-update -a x                 -> EINVAL
//   live-update -f /nonexistent      -> "File not accessible."  (xensim: OK - no binary runs)
//   live-update -f /etc/passwd       -> "File not executable."  (xensim: OK)
//   A: -f /bin/true -> OK; A: -f again -> "live-update session already active."
//   B: -c / -s -> "Not in live-update session."; A: -c '-E 5' -> OK; B: -a -> OK (anyone aborts)
//   B has a transaction open; A: -f, -s -t 0 -> "Domains with long running transactions:\nDomain 0: 0 s"
//   A: -f; C (no transaction): TRANSACTION_START -> no reply, READ meanwhile -> answered;
//   A: -a -> OK, and C's TRANSACTION_START is answered at once.
//   A full update with Debian's xenstore-control (-f the daemon's own binary): exit 0, the tree
//   kept, the same process now runs `xenstored -N -U` (and the interop spec passes against it).
import assert from 'node:assert/strict';
import { dumpState, readState } from '../../../domains/dom0/xenstored/lu.ts';
import type { Xenstored } from '../../../domains/dom0/xenstored/core.ts';
import type { XsNode } from '../../../domains/dom0/xenstored/store.ts';
import { decodeState, encodeState, XsStateError, type XsStateRecord, XsStateType } from '../../../domains/dom0/xenstored/xenstore-state.ts';
import { formatPerms } from '../../../domains/dom0/xenstored/permissions.ts';
import { nulJoin } from '../../../hypervisor/public/io/xs_wire.ts';
import { type Client, Harness, T } from './harness.ts';

/** CONTROL live-update <args>: the reply text, an error name, or NOREPLY while held. */
function lu(c: Client, ...args: string[]): string {
  const r = c.request(T.XS_CONTROL, nulJoin('live-update', ...args));
  return r.error ?? r.payload.replace(/\0$/, '');
}

/** Every node as `path perms gen value` lines (gen optional), pre-order. */
function tree(xs: Xenstored, withGen = false): string[] {
  const out: string[] = [];
  for (const [p, n] of xs.store.walk('/')) {
    const perms = xs.b.staleAclByGeneration ? xs.settlePerms(n.perms, n.gen) : n.perms;
    out.push(`${p} ${formatPerms(perms).join(',')}${perms.some((e) => e.perms & 16) ? '(i)' : ''}${withGen ? ` g${n.gen}` : ''} ${JSON.stringify(n.value)}`);
  }
  return out;
}

const noBytes = { input: () => new Uint8Array(0), output: () => ({ data: new Uint8Array(0), respLen: 0 }) };

describe('xenstored live update (C 4.17)', () => {
  describe('CONTROL live-update answers', () => {
    it('outside a session: texts for -a/-c/-s, EINVAL for bad arguments and the stub domain\'s -b/-d', () => {
      const h = new Harness();
      assert.equal(lu(h.dom0), 'EINVAL');
      assert.equal(lu(h.dom0, '-a'), 'No live-update session active.');
      assert.equal(lu(h.dom0, '-c', 'x'), 'Not in live-update session.');
      assert.equal(lu(h.dom0, '-s'), 'Not in live-update session.');
      assert.equal(lu(h.dom0, '-s', '-x'), 'EINVAL');
      assert.equal(lu(h.dom0, '-s', '-t'), 'EINVAL');
      assert.equal(lu(h.dom0, '-b', '100'), 'EINVAL');
      assert.equal(lu(h.dom0, '-d', '1', 'x'), 'EINVAL');
      assert.equal(lu(h.dom0, '-a', 'x'), 'EINVAL');
    });

    it('one session at a time; only its connection may give -c and -s; anyone may abort', () => {
      const h = new Harness();
      const other = h.socket();
      assert.equal(lu(h.dom0, '-f', '/usr/sbin/xenstored'), 'OK');
      assert.equal(lu(other, '-f', '/x'), 'live-update session already active.');
      assert.equal(lu(other, '-c', '-E 5'), 'Not in live-update session.');
      assert.equal(lu(other, '-s'), 'Not in live-update session.');
      assert.equal(lu(h.dom0, '-c', '-E 5'), 'OK');
      assert.equal(lu(other, '-a'), 'OK');
      assert.equal(lu(h.dom0, '-s'), 'Not in live-update session.');
    });

    it('guests may not ask (CONTROL is privileged)', () => {
      const h = new Harness();
      const g = h.introduce(3);
      assert.equal(lu(g, '-f', '/x'), 'EACCES');
    });
  });

  describe('the switch', () => {
    it('-s with no transaction open: a new instance carries the tree, watches and domains, and sends the OK', () => {
      const h = new Harness();
      const w = h.socket('watcher');
      const g = h.introduce(3, { data: true });
      h.dom0.write('/a/b', 'v\0\xff');
      h.dom0.setPerms('/a/b', 'n3 r0 b7');
      assert.equal(w.watch('/a', 'abs'), 'OK');
      assert.equal(w.watch('rel', 'relative'), 'OK');
      assert.equal(w.watch('@releaseDomain', 'rel-dom'), 'OK');
      assert.equal(g.watch('data', 'gw'), 'OK');
      h.drainAll();
      const before = tree(h.xs);
      const old = h.xs;
      assert.equal(lu(h.dom0, '-f', '/any/path'), 'OK');
      assert.equal(lu(h.dom0, '-s', '-t', '10'), 'OK');
      assert.notEqual(h.xs, old, 'a new instance took over');
      assert.equal(h.xs.lu, undefined);
      assert.deepEqual(tree(h.xs), before);
      // Watches fire as before, relative ones relative.
      h.dom0.write('/a/c', '1');
      h.dom0.write('/local/domain/0/rel/x', '2');
      g.write('data/k', '3');
      assert.deepEqual(w.eventStrings(), ['/a/c abs', 'rel/x relative']);
      assert.deepEqual(g.eventStrings(), ['data/k gw']);
      // The guest is still introduced, with its ACLs honoured.
      assert.equal(h.dom0.request(T.XS_IS_DOMAIN_INTRODUCED, nulJoin('3')).payload, 'T\0');
      assert.equal(g.read('/a/b'), 'v\0\xff');
      // Its death removes what it owns (XSA-419) and fires @releaseDomain, as before the update.
      h.domainState(3, 'dead');
      assert.deepEqual(w.eventStrings(), ['/a/b abs', '@releaseDomain rel-dom']);
    });

    it('a TRANSACTION_START from a connection with none open waits for the update and is answered by the new instance', () => {
      const h = new Harness();
      const c = h.socket();
      assert.equal(lu(h.dom0, '-f', '/x'), 'OK');
      const r = c.request(T.XS_TRANSACTION_START, nulJoin(''));
      assert.equal(r.error, 'NOREPLY', 'held while the update is pending');
      assert.equal(c.read('/tool/xenstored'), '', 'other requests are answered meanwhile');
      const old = h.xs;
      assert.equal(lu(h.dom0, '-s'), 'OK');
      assert.notEqual(h.xs, old);
      const started = c.inbox.filter((m) => m.type === T.XS_TRANSACTION_START);
      assert.equal(started.length, 1);
      const tx = Number(Buffer.from(started[0].payload).toString('latin1').replace(/\0$/, ''));
      assert.ok(tx > 0);
      assert.equal(c.write('/t', '1', tx), 'OK');
      assert.equal(c.commit(tx), 'OK');
    });

    it('a new instance that cannot start: -s answers why, the old instance carries on and runs what it held', () => {
      const h = new Harness({ liveUpdateOptions: () => {
        throw new Error('cannot parse the command line');
      } } as never);
      const c = h.socket();
      assert.equal(lu(h.dom0, '-f', '/x'), 'OK');
      assert.equal(c.request(T.XS_TRANSACTION_START, nulJoin('')).error, 'NOREPLY');
      const old = h.xs;
      assert.equal(lu(h.dom0, '-s'), 'Error activating new binary: cannot parse the command line');
      assert.equal(h.xs, old);
      assert.equal(h.xs.lu, undefined);
      assert.equal(c.inbox.filter((m) => m.type === T.XS_TRANSACTION_START).length, 1);
      assert.equal(lu(h.dom0, '-f', '/x'), 'OK', 'a new session may start');
    });

    it('an abort lets held requests run at once', () => {
      const h = new Harness();
      const c = h.socket();
      assert.equal(lu(h.dom0, '-f', '/x'), 'OK');
      assert.equal(c.request(T.XS_TRANSACTION_START, nulJoin('')).error, 'NOREPLY');
      assert.equal(lu(h.dom0, '-a'), 'OK');
      assert.equal(c.inbox.filter((m) => m.type === T.XS_TRANSACTION_START).length, 1);
    });

    it('a message read in part before the switch is completed after it', () => {
      const h = new Harness();
      const c = h.socket();
      const whole = Buffer.from(new Uint8Array([...new Uint8Array(new Uint32Array([T.XS_READ, 77, 0, 16]).buffer), ...Buffer.from('/tool/xenstored\0')]));
      c.feed(whole.subarray(0, 10));
      assert.equal(lu(h.dom0, '-f', '/x'), 'OK');
      const old = h.xs;
      assert.equal(lu(h.dom0, '-s'), 'OK');
      assert.notEqual(h.xs, old);
      const { handled } = c.feed(whole.subarray(10));
      assert.equal(handled.length, 1);
      assert.equal(handled[0].got[0].req_id, 77);
      assert.equal(handled[0].got[0].type, T.XS_READ);
    });
  });

  describe('open transactions', () => {
    /** A harness whose clock the test sets, and whose held update is looked at when the test says. */
    function timed(): { h: Harness; now: { t: number }; tick: () => void } {
      const now = { t: 1000 };
      const pending: (() => void)[] = [];
      const h = new Harness({ clock: () => now.t, timer: (fn: () => void) => void pending.push(fn) } as never);
      return { h, now, tick: () => pending.splice(0).forEach((f) => f()) };
    }

    it('-s waits while a transaction is open and goes once it ends', () => {
      const { h, now, tick } = timed();
      const c = h.socket();
      const tx = c.txStart();
      assert.equal(lu(h.dom0, '-f', '/x'), 'OK');
      const old = h.xs;
      assert.equal(lu(h.dom0, '-s', '-t', '60'), 'NOREPLY');
      now.t += 5;
      tick();
      assert.equal(h.xs, old, 'still waiting');
      assert.equal(c.write('/t', '1', tx), 'OK');
      assert.equal(c.commit(tx), 'OK');
      assert.notEqual(h.xs, old, 'the commit let it go');
      const okReply = h.dom0.inbox.filter((m) => m.type === T.XS_CONTROL).pop();
      assert.equal(Buffer.from(okReply!.payload).toString('latin1'), 'OK\0');
      assert.equal(h.dom0.read('/t'), '1');
    });

    it('after the timeout without -F: refused with the long-running transactions listed (C names the domain)', () => {
      const { h, now, tick } = timed();
      const c = h.socket();
      c.txStart();
      assert.equal(lu(h.dom0, '-f', '/x'), 'OK');
      now.t += 3;
      assert.equal(lu(h.dom0, '-s', '-t', '2'), 'NOREPLY');
      now.t += 2;
      tick();
      const reply = h.dom0.inbox.filter((m) => m.type === T.XS_CONTROL).pop();
      assert.equal(Buffer.from(reply!.payload).toString('latin1'), 'Domains with long running transactions:\nDomain 0: 5 s\0');
      assert.equal(h.xs.lu, undefined, 'the session is over');
    });

    it('with -F after the timeout: the update goes and the open transaction is lost', () => {
      const { h, now, tick } = timed();
      const c = h.socket();
      const tx = c.txStart();
      assert.equal(c.write('/lost', 'x', tx), 'OK');
      assert.equal(lu(h.dom0, '-f', '/x'), 'OK');
      const old = h.xs;
      assert.equal(lu(h.dom0, '-s', '-t', '1', '-F'), 'NOREPLY');
      now.t += 1;
      tick();
      assert.notEqual(h.xs, old);
      assert.equal(c.commit(tx), 'ENOENT');
      assert.equal(h.dom0.read('/lost'), 'ENOENT');
    });
  });

  describe('dump and restore', () => {
    it('a 100k-node tree comes back identical: values, ACLs (ignored entries too), child order, quota accounting; one generation per node in stream order, as C gives them', function () {
      this.timeout(120_000);
      const h = new Harness();
      const g = h.introduce(5, { data: true });
      const xs = h.xs;
      for (let i = 0; i < 1000; i++) {
        h.dom0.mkdir(`/big/d${i}`);
        for (let j = 0; j < 99; j++) h.dom0.write(`/big/d${i}/n${j}`, `${i}.${j}\0`);
        if (i % 100 === 0) h.dom0.setPerms(`/big/d${i}`, `n5 r0 w9`);
      }
      // The guest's own nodes, a long value, a value of every byte.
      for (let j = 0; j < 50; j++) assert.equal(g.write(`data/k${j}`, 'x'.repeat(j * 40)), 'OK');
      h.dom0.write('/big/bytes', Buffer.from(Uint8Array.from({ length: 256 }, (_, i) => i)).toString('latin1'));
      assert.ok(xs.store.size > 100_000, `${xs.store.size} nodes`);
      const bytes = dumpState(xs, noBytes);
      const { xs: back } = readState(bytes, {});
      assert.deepEqual(tree(back), tree(xs));
      // C's read_state_node: ++generation per node in stream order (pre-order), none kept.
      const gens = [...back.store.walk('/')].map(([, n]) => n.gen);
      const wrong = gens.findIndex((gen, i) => gen !== gens[0] + i);
      assert.equal(wrong, -1, `node ${wrong} in pre-order has generation ${gens[wrong]}, not ${gens[0] + wrong}`);
      assert.equal(back.store.generation, gens[0] + gens.length);
      // The nodes and memory charged to each owner, as the writes charged them.
      const sorted = (m: ReadonlyMap<number, number>): [number, number][] => [...m].sort((a, b) => a[0] - b[0]);
      assert.deepEqual(sorted(back.store.owned), sorted(xs.store.owned));
      assert.deepEqual(sorted(back.store.memory), sorted(xs.store.memory));
      assert.deepEqual([...back.domains.keys()].sort(), [...xs.domains.keys()].sort());
      // Nothing is lost or added on the way: written again, the stream is the same bytes.
      assert.ok(Buffer.from(dumpState(back, noBytes)).equals(Buffer.from(bytes)), 'the restored instance writes the same stream');
    });

    it('oxenstored profile: each directory\'s subtree generation (what its transactions merge by) is the newest below it', () => {
      const h = new Harness({ profile: 'ocaml' });
      for (let i = 0; i < 2000; i++) h.dom0.write(`/t/d${i % 13}/e${i % 7}/n${i}`, `${i}`);
      h.dom0.rm('/t/d3');
      const { xs } = readState(dumpState(h.xs, noBytes), { profile: 'ocaml' });
      const newest = (n: XsNode): number => {
        let max = -1;
        for (const k of n.children?.values() ?? []) max = Math.max(max, k.gen, newest(k));
        return max;
      };
      let dirs = 0;
      for (const [p, n] of xs.store.walk('/')) {
        if (n.children === null) continue;
        dirs++;
        assert.equal(xs.store.subGen(n), newest(n), p);
      }
      assert.ok(dirs > 90, `${dirs} directories`);
    });

    describe('a stream the restore cannot take is refused with an XsStateError naming the record, and no instance', () => {
      const acl = [{ access: 'n', ignore: false, domid: 0 }] as const;
      const node = (path: string, value = ''): XsStateRecord => ({ type: XsStateType.NODE, connId: 0, txId: 0, access: 0, perms: acl, path, value });
      const stream = (...paths: string[]): Uint8Array => encodeState({ version: 1, records: paths.map((p) => node(p)) });
      const cases: [string, string[], RegExp][] = [
        ['a node before its parent', ['/', '/a/b'], /record 2: node \/a\/b comes before its parent/],
        ['a node given twice', ['/', '/a', '/a/b', '/a'], /record 4: node \/a given twice/],
        ['a name with a character node names cannot have', ['/', '/a b'], /record 2: "\/a b" is not a node path/],
        ['a trailing slash', ['/', '/a', '/a/'], /record 3: "\/a\/" is not a node path/],
        ['a double slash', ['/', '/a', '/a//b'], /record 3: "\/a\/\/b" is not a node path/],
        ['a relative path', ['/', 'a'], /record 2: "a" is not a node path/],
        ['an empty path', ['/', ''], /record 2: "" is not a node path/],
        ['an unknown special node', ['/', '@other'], /record 2: unknown special node @other/],
        ['the root after nodes below it', ['/', '/a', '/'], /record 3: \/ comes after nodes below it/],
      ];
      for (const [name, paths, msg] of cases) {
        it(name, () => assert.throws(() => readState(stream(...paths), {}), (e: unknown) => e instanceof XsStateError && msg.test(e.message)));
      }
      it('a transaction\'s node, a node without an owner', () => {
        const tx = encodeState({ version: 1, records: [node('/'), { ...node('/a'), connId: 2, txId: 1 } as XsStateRecord] });
        assert.throws(() => readState(tx, {}), /record 2: node \/a belongs to a transaction \(conn-id 2\)/);
        const none = encodeState({ version: 1, records: [node('/'), { ...node('/a'), perms: [] } as XsStateRecord] });
        assert.throws(() => readState(none, {}), /record 2: node \/a has no owner/);
      });

      it('any byte of a daemon\'s stream changed, or the stream cut anywhere: an instance or an XsStateError, nothing else', () => {
        const h = new Harness();
        const g = h.introduce(4);
        h.dom0.watch('/w', 'tok');
        for (let i = 0; i < 20; i++) h.dom0.write(`/a/d${i % 3}/n${i}`, `v${i}`);
        g.write('data/x', 'y');
        h.dom0.setPerms('/a/d1', 'n4 r0');
        const good = dumpState(h.xs, noBytes);
        let seed = 4242;
        const rnd = (): number => {
          seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
          return (seed >>> 0) / 0x100000000;
        };
        let restored = 0;
        for (let i = 0; i < 3000; i++) {
          const m = Uint8Array.from(good);
          const n = 1 + Math.floor(rnd() * 3);
          for (let j = 0; j < n; j++) m[Math.floor(rnd() * m.length)] = Math.floor(rnd() * 256);
          const cut = rnd() < 0.2 ? m.subarray(0, Math.floor(rnd() * m.length)) : m;
          try {
            readState(cut, {});
            restored++;
          } catch (e) {
            if (!(e instanceof XsStateError)) throw new Error(`mutation ${i}: ${String(e)}`);
          }
        }
        // Both outcomes occur: values and padding may change freely, structure may not.
        assert.ok(restored > 0 && restored < 3000, `${restored} of 3000 restored`);
      });
    });

    it('a stream in another order than pre-order restores too: each node under a parent given before it', () => {
      const acl = [{ access: 'n', ignore: false, domid: 0 }] as const;
      const node = (path: string, value: string): XsStateRecord => ({ type: XsStateType.NODE, connId: 0, txId: 0, access: 0, perms: acl, path, value });
      const bytes = encodeState({ version: 1, records: [node('/', ''), node('/a', '1'), node('/c', '2'), node('/c/x', '3'), node('/a/b', '4'), node('/a/b/z', '5')] });
      const { xs } = readState(bytes, {});
      assert.deepEqual(tree(xs, true).filter((l) => !l.startsWith('/ ')), [
        '/a n0 g2 "1"', '/a/b n0 g5 "4"', '/a/b/z n0 g6 "5"', '/c n0 g3 "2"', '/c/x n0 g4 "3"',
      ]);
    });

    it('the stream holds what C 4.17 writes, in its order, plus the quota and domain records', () => {
      const h = new Harness();
      h.introduce(4);
      h.dom0.watch('/w', 'tok');
      const types = decodeState(dumpState(h.xs, noBytes)).records.map((r) => r.type);
      const first = (t: number): number => types.indexOf(t);
      assert.equal(types[0], XsStateType.GLOBAL);
      assert.equal(types[1], XsStateType.GLB_QUOTA);
      assert.ok(first(XsStateType.CONN) < first(XsStateType.WATCH) && first(XsStateType.WATCH) < first(XsStateType.NODE));
      assert.ok(first(XsStateType.NODE) < first(XsStateType.DOMAIN));
    });

    it('quotas set by CONTROL survive; quotas given on -c win', () => {
      const h = new Harness();
      h.dom0.request(T.XS_CONTROL, nulJoin('quota', 'set', 'nodes', '77'));
      const { xs } = readState(dumpState(h.xs, noBytes), {});
      assert.equal(xs.quotas.nodes, 77);
      const { xs: xs2 } = readState(dumpState(h.xs, noBytes), { quotas: { nodes: 5 } });
      assert.equal(xs2.quotas.nodes, 5);
    });

    it('an ACL entry no longer honoured (its domain younger than the node) arrives flagged ignored', () => {
      const h = new Harness();
      h.introduce(8);
      h.dom0.write('/n', 'x');
      h.dom0.setPerms('/n', 'n0 r8');
      // Domain 8 dies: a later domain 8 must not inherit the entry (XSA-322).
      h.domainState(8, 'dead');
      assert.equal(h.xs.store.get('/n')!.perms[1].perms & 16, 0, 'not yet flagged in the tree');
      const { xs } = readState(dumpState(h.xs, noBytes), {});
      const n = xs.store.get('/n')!;
      assert.ok(n.perms[1].perms & 16, 'ignored');
    });
  });
});
