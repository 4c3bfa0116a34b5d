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
import { decodeState, XsStateType } from '../../../domains/dom0/xenstored/xenstore-state.ts';
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
    it('a 100k-node tree comes back identical: values, ACLs (ignored entries too), child order; generations in stream order as C gives them', function () {
      this.timeout(120_000);
      const h = new Harness();
      h.introduce(5);
      const xs = h.xs;
      for (let i = 0; i < 1000; i++) {
        h.dom0.mkdir(`/big/d${i}`);
        for (let j = 0; j < 99; j++) h.dom0.write(`/big/d${i}/n${j}`, `${i}.${j}\0`);
        if (i % 100 === 0) h.dom0.setPerms(`/big/d${i}`, `n5 r0 w9`);
      }
      assert.ok(xs.store.size > 100_000, `${xs.store.size} nodes`);
      const bytes = dumpState(xs, noBytes);
      const { xs: back } = readState(bytes, {});
      assert.deepEqual(tree(back), tree(xs));
      // C's read_state_node: ++generation per node in stream order (pre-order), none kept.
      const gens = [...back.store.walk('/')].map(([, n]) => n.gen);
      for (let i = 1; i < gens.length; i++) assert.ok(gens[i] > gens[i - 1], `generation order at node ${i}`);
      assert.deepEqual([...back.domains.keys()].sort(), [...xs.domains.keys()].sort());
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
