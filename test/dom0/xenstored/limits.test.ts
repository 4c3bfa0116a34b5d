// C xenstored 4.17's resource limits beyond the per-count quotas (quotas.test.ts): the memory
// quota (-Q memory= hard, -q memory= soft), XSA-326's charging of queued watch events, the
// watch-event timeout (-w watch-event=), the write-rate limiter (compile-time constants), and the
// seed's per-domain request rate (an option, not Xen).
//
// Each test drives the daemon with its ring transport (domain-ring.ts) and a raw guest on the page,
// on a virtual clock (the daemon's clockMs and timer), and states beside it what the real daemon
// answered: Debian's xenstored 4.17.7 on ../shared/oracle with fake guests on the shim's rings,
// transcript in limits-oracle.txt (test/interop/xs-limits-probe.py PART, options in its title).
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Store } from '../../../domains/dom0/xenstored/store.ts';
import { XenstoreDomainInterface as I, XsdSockmsgType as T, nulJoin } from '../../../hypervisor/public/io/xs_wire.ts';
import { type Guest, Rig, idx } from './ring-rig.ts';
import { property } from '../../helpers/property.ts';

const ORACLE = readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), 'limits-oracle.txt'), 'latin1');

/** The oracle's line that starts with `prefix` (the tests quote it, so it must be there). */
function oracle(prefix: string): string {
  const line = ORACLE.split('\n').find((l) => l.startsWith(prefix));
  assert.ok(line !== undefined, `limits-oracle.txt has no line starting "${prefix}"`);
  return line;
}

const x200 = 'x'.repeat(200);

describe('xenstored limits of C 4.17 (memory quota, XSA-326, watch-event timeout, write-rate limiter)', () => {
  describe('memory quota', () => {
    it('CONTROL quota / quota-soft print the memory rows as 4.17 does (-Q memory=8192 -q memory=4096)', () => {
      const rig = new Rig({ quotas: { memory: 8192, memorySoft: 4096 } });
      const a = ORACLE.indexOf('Quota settings:\nnodes');
      const b = ORACLE.indexOf('CONTROL\nQuota settings:\nmemory');
      const hard = ORACLE.slice(a, b);
      const soft = ORACLE.slice(b + 'CONTROL\n'.length, ORACLE.indexOf('## guest 3 fresh'));
      assert.equal(`${rig.d0(T.XS_CONTROL, 'quota')}`, hard);
      assert.equal(`${rig.d0(T.XS_CONTROL, 'quota-soft')}`, soft);
    });

    it("a fresh daemon charges dom0 its three nodes' records and paths (oracle: quota 0 -> memory 132)", () => {
      const rig = new Rig();
      const at = ORACLE.indexOf('## fresh daemon (defaults)');
      const want = ORACLE.slice(ORACLE.indexOf('\n', at) + 1).replace(/\n$/, '');
      assert.equal(`${rig.d0(T.XS_CONTROL, 'quota', '0')}`, `${want}\n`);
    });

    it('a node write that would reach -Q memory= is EIO, and nothing is written (oracle: n31 at 7952 + 255)', () => {
      const rig = new Rig({ quotas: { memory: 8192, memorySoft: 4096 } });
      const g = rig.guest(3);
      // oracle: "guest 3 fresh: ... memory : 47" (record 24 + 8 for one ACL entry, path 15).
      assert.equal(rig.memory(3), 47);
      const got: string[] = [];
      for (let i = 0; i < 32; i++) got.push(`${g.write(`/local/domain/3/n${String(i).padStart(2, '0')}`, x200)} ${rig.memory(3)}`);
      // oracle: n00 -> 302 ... n30 -> 7952 (255 bytes each: 232-byte record, 19-byte path, 4 in the parent)
      assert.deepEqual(got.slice(0, 31), Array.from({ length: 31 }, (_, i) => `OK ${47 + 255 * (i + 1)}`));
      assert.match(oracle('write n31 -> '), /ERROR EIO/);
      assert.equal(got[31], 'EIO 7952');
      assert.equal(rig.d0(T.XS_DIRECTORY, '/local/domain/3').split('\0').length, 31);
      // oracle: "small write after -> WRITE OK ... 8004", "watch after -> WATCH OK ... 8024"
      assert.match(oracle('small write after'), /WRITE OK .* 8004 \|$/);
      assert.equal(`${g.write('/local/domain/3/s', 'x')} ${rig.memory(3)}`, 'OK 8004');
      assert.match(oracle('watch after'), /WATCH OK .* 8024 \|$/);
      assert.equal(`${g.request(T.XS_WATCH, nulJoin('/local/domain/3/w', 'tok'))} ${rig.memory(3)}`, 'OK 8024');
      g.take();
      // oracle: dom0 writing into the guest's home is charged to the guest (the new node's owner).
      assert.match(oracle("dom0 writes 1000 bytes into the guest's home"), /-> ERROR /);
      assert.equal(rig.write('/local/domain/3/big', 'y'.repeat(1000)), 'EIO');
    });

    it('the boundary is "at or over": a write landing exactly on the quota fails (oracle: 302 EIO, 303 OK)', () => {
      const rig = new Rig();
      const g = rig.guest(3);
      rig.setMemoryQuota(302);
      assert.match(oracle('quota 302: guest writes n00'), /ERROR b'EIO\\x00' .* 47 \|$/);
      assert.equal(`${g.write('/local/domain/3/n00', x200)} ${rig.memory(3)}`, 'EIO 47');
      rig.setMemoryQuota(303);
      assert.match(oracle('quota 303: guest writes n00'), /WRITE b'OK\\x00' .* 302 \|$/);
      assert.equal(`${g.write('/local/domain/3/n00', x200)} ${rig.memory(3)}`, 'OK 302');
    });

    it('a watch is charged its path and token: ENOMEM at the quota (oracle: 322 ENOMEM, 323 OK)', () => {
      const rig = new Rig();
      const g = rig.guest(3);
      assert.equal(g.write('/local/domain/3/n00', x200), 'OK');
      rig.setMemoryQuota(322);
      assert.match(oracle('quota 322: guest watches'), /ERROR b'ENOMEM\\x00' .* 302 \|$/);
      assert.equal(`${g.request(T.XS_WATCH, nulJoin('/local/domain/3/w', 'tok'))} ${rig.memory(3)}`, 'ENOMEM 302');
      rig.setMemoryQuota(323);
      assert.match(oracle('quota 323: guest watches'), /WATCH b'OK\\x00' .* 322 \|$/);
      assert.equal(`${g.request(T.XS_WATCH, nulJoin('/local/domain/3/w', 'tok'))} ${rig.memory(3)}`, 'OK 322');
    });

    it('at or over the hard quota the guest is not read from until its memory is below it again (oracle: no reply within 5 s at quota 200, read once raised)', () => {
      const rig = new Rig();
      const g = rig.guest(3);
      assert.equal(g.write('/local/domain/3/n00', x200), 'OK');
      assert.equal(g.request(T.XS_WATCH, nulJoin('/local/domain/3/w', 'tok')), 'OK');
      g.take();
      rig.setMemoryQuota(200);
      assert.match(oracle('quota 200 (below use)'), /-> NONE b'' /);
      const cons = idx(g.page, I.req_cons);
      assert.equal(g.write('/local/domain/3/n00', 'x'), 'NOREPLY');
      assert.equal(idx(g.page, I.req_cons), cons, 'the request stays in req[]');
      rig.advance(60_000);
      assert.equal(g.take().length, 0);
      // oracle: dom0's writes into the guest's home fail meanwhile, its own RM is not read either.
      assert.match(oracle('quota 120: dom0 writes /local/domain/3/d0'), /ERROR b'EIO\\x00'/);
      rig.setMemoryQuota(120);
      assert.equal(rig.write('/local/domain/3/d0', 'z'), 'EIO');
      // Raising the quota: the next batch of the daemon reads the held request.
      rig.setMemoryQuota(1000);
      assert.deepEqual(g.take().map((m) => m.payload), ['OK']);
      assert.equal(rig.memory(3), 47 + 24 + 8 + 1 + 19 + 4 + 20);
    });

    it('a reply longer than 16 bytes is charged with the check: ENOMEM at the quota (oracle: 518 ENOMEM, 519 the value)', () => {
      const rig = new Rig();
      const g = rig.guest(3);
      assert.equal(`${g.write('/local/domain/3/n00', x200)} ${rig.memory(3)}`, 'OK 302');
      rig.setMemoryQuota(518);
      assert.match(oracle('quota 518: guest reads n00'), /ERROR b'ENOMEM\\x00'/);
      assert.equal(g.request(T.XS_READ, nulJoin('/local/domain/3/n00')), 'ENOMEM');
      rig.setMemoryQuota(519);
      assert.match(oracle('quota 519: guest reads n00'), /READ b'xxxxxxxx'/);
      assert.equal(g.request(T.XS_READ, nulJoin('/local/domain/3/n00')), x200);
      // Up to 16 bytes a reply is never refused, even over the quota.
      rig.setMemoryQuota(303);
      assert.match(oracle('quota 303: guest lists its home'), /DIRECTORY b'n00\\x00'/);
      assert.equal(g.request(T.XS_DIRECTORY, nulJoin('/local/domain/3')), 'n00');
    });

    it("a transaction's node copies are charged to the guest: EIO inside, ENOMEM at commit (oracle: 353, 609, 865, EIO)", () => {
      const rig = new Rig();
      const g = rig.guest(3);
      rig.setMemoryQuota(1000);
      // The oracle's transaction started at a two-digit generation: get there (dom0's own nodes).
      for (let i = 0; i < 20; i++) assert.equal(rig.write('/scratch', String(i)), 'OK');
      const tx = Number(g.request(T.XS_TRANSACTION_START, nulJoin('')));
      assert.ok(tx > 0);
      const got: string[] = [];
      for (let i = 0; i < 4; i++) got.push(`${g.write(`/local/domain/3/t${i}`, x200, tx)} ${rig.memory(3)}`);
      // Copies live under "<generation>/<path>": the oracle's generation had 2 digits, as here.
      const prefix = rig.daemon.xs.connections.get(rig.daemon.xs.domainConnection(3)!)!.transactions.get(tx)!.keyPrefix;
      assert.equal(prefix.length, 3);
      for (const [i, want] of [[0, 353], [1, 609], [2, 865]] as const) {
        assert.match(oracle(`  tx write t${i} ->`), new RegExp(`WRITE b'OK\\\\x00' .* ${want} \\|$`));
        assert.equal(got[i], `OK ${want}`);
      }
      assert.match(oracle('  tx write t3 ->'), /ERROR b'EIO\\x00' .* 865 \|$/);
      assert.equal(got[3], 'EIO 865');
      assert.match(oracle('  commit ->'), /'ENOMEM\\x00'.* 47 \|$/);
      assert.equal(`${g.request(T.XS_TRANSACTION_END, nulJoin('T'), tx)} ${rig.memory(3)}`, 'ENOMEM 47');
    });

    it('-q memory= (soft) only logs, once per crossing and at most every 10 s (modelled from the source: syslog is not observable on the oracle)', () => {
      const rig = new Rig({ quotas: { memory: 0, memorySoft: 600 } });
      const g = rig.guest(3);
      rig.advance(10_000);
      for (let i = 0; i < 4; i++) assert.equal(g.write(`/local/domain/3/n${i}`, x200), 'OK');
      assert.deepEqual(rig.syslog, ['warning: Domain 3 exceeds soft memory quota']);
      for (const n of ['n0', 'n1', 'n2']) assert.equal(g.request(T.XS_RM, nulJoin(`/local/domain/3/${n}`)), 'OK');
      assert.equal(g.write('/local/domain/3/s', 'x'), 'OK');
      assert.equal(rig.syslog.length, 1, 'a crossing back within 10 s is not reported');
      rig.advance(10_000);
      assert.equal(g.write('/local/domain/3/s', 'y'), 'OK');
      assert.deepEqual(rig.syslog.slice(1), ['info: Domain 3 below soft memory quota again']);
    });

    it('the per-owner node charge kept as the tree changes equals a recount of the tree (any mix of writes, mkdirs, rms, ACL changes, commits)', () => {
      const op = fc.oneof(
        fc.record({ k: fc.constant('write'), who: fc.constantFrom(0, 3), p: fc.constantFrom('a', 'a/b', 'a/b/c', 'd', 'd/e'), v: fc.string({ maxLength: 40 }) }),
        fc.record({ k: fc.constant('mkdir'), who: fc.constantFrom(0, 3), p: fc.constantFrom('a', 'f/g/h', 'd') }),
        fc.record({ k: fc.constant('rm'), who: fc.constantFrom(0, 3), p: fc.constantFrom('a', 'a/b', 'd', 'f') }),
        fc.record({ k: fc.constant('chown'), p: fc.constantFrom('a', 'a/b', 'd'), acl: fc.constantFrom(['n0'], ['n3'], ['n3', 'r0', 'b4'], ['n0', 'r3']) }),
        fc.record({ k: fc.constant('tx'), p: fc.constantFrom('a/t', 'd/t', 'x/y'), v: fc.string({ maxLength: 10 }) }),
      );
      fc.assert(fc.property(fc.array(op, { maxLength: 30 }), (ops) => {
        const rig = new Rig();
        const g = rig.guest(3);
        const home = '/local/domain/3';
        for (const o of ops) {
          const full = `${home}/${o.p}`;
          if (o.k === 'write') {
            if (o.who === 0) rig.write(full, o.v);
            else g.write(full, o.v);
          } else if (o.k === 'mkdir') {
            if (o.who === 0) rig.d0(T.XS_MKDIR, full);
            else g.request(T.XS_MKDIR, nulJoin(full));
          } else if (o.k === 'rm') {
            if (o.who === 0) rig.d0(T.XS_RM, full);
            else g.request(T.XS_RM, nulJoin(full));
          } else if (o.k === 'chown') {
            rig.d0(T.XS_SET_PERMS, full, ...o.acl);
          } else {
            const tx = Number(g.request(T.XS_TRANSACTION_START, nulJoin('')));
            g.write(full, o.v, tx);
            g.request(T.XS_TRANSACTION_END, nulJoin('T'), tx);
          }
        }
        const store = rig.daemon.xs.store;
        const recount = new Map<number, number>();
        for (const [p, n] of store.walk('/')) {
          const owner = n.perms[0].id;
          recount.set(owner, (recount.get(owner) ?? 0) + Store.recordMemory(p, n.value, n.perms, Store.childBytes(n)));
        }
        assert.deepEqual(new Map([...store.memory].sort()), new Map([...recount].sort()));
      }), property(150));
    });

    it('profile ocaml has no memory quota (oxenstored 4.17: quota-maxsize and maxentity only)', () => {
      const rig = new Rig({ profile: 'ocaml', quotas: { memory: 100 } });
      const g = rig.guest(3);
      for (let i = 0; i < 3; i++) assert.equal(g.write(`/local/domain/3/n${i}`, x200), 'OK');
    });
  });

  describe('XSA-326: queued output charged to the domain', () => {
    it('events that would reach the hard quota are dropped; what was queued is delivered (oracle: 202 events, memory stuck at 8173)', () => {
      const rig = new Rig({ quotas: { memory: 8192 } });
      const g = rig.guest(4);
      const pub = rig.pubDir(4);
      assert.equal(g.watch(pub, 'tok'), 'OK 1');
      assert.match(oracle('after watch:'), / 73 \|$/);
      assert.equal(rig.memory(4), 73);
      const seen: number[] = [];
      for (let i = 0; i < 400; i++) {
        assert.equal(rig.write(`${pub}/e${String(i).padStart(3, '0')}`, 'v'), 'OK');
        if (i % 40 === 39) seen.push(rig.memory(4));
      }
      // oracle: 45 bytes per queued event (29 payload + 16 header); 22 fit rsp[] (the 23rd in part
      // stays charged until written whole).
      const want = [883, 2683, 4483, 6283, 8083, 8173, 8173, 8173, 8173, 8173];
      for (let k = 0; k < want.length; k++) assert.match(oracle(`dom0 wrote ${String(40 * (k + 1)).padStart(3)} nodes`), new RegExp(` ${want[k]} \\|$`));
      assert.deepEqual(seen, want);
      let events = 0;
      for (let n = g.events(); n > 0; n = g.events()) events += n;
      assert.match(oracle('guest reads its events: 202'), /202/);
      assert.equal(events, 202);
      assert.equal(rig.memory(4), 73);
    });

    it('an event identical to one still queued is dropped: a guest that does not read holds one per node (oracle: memory 503, 33 events read)', () => {
      const rig = new Rig();
      const g = rig.guest(7);
      const pub = rig.pubDir(7);
      assert.equal(g.watch(pub, 'tok'), 'OK 1');
      for (let r = 0; r < 60; r++) for (let i = 0; i < 10; i++) assert.equal(rig.write(`${pub}/d${i}`, `v${r}`), 'OK');
      // 73 + 10 queued events of 43 bytes (27 payload + 16 header); the ones in rsp[] are not queued.
      assert.match(oracle('dom0 rewrote 10 nodes 60 times:'), / 503 \|$/);
      assert.equal(rig.memory(7), 503);
      let events = 0;
      for (let n = g.events(); n > 0; n = g.events()) events += n;
      assert.match(oracle('guest reads its events: 33'), /33$/);
      assert.equal(events, 33);
      assert.equal(rig.memory(7), 73);
      // Sent events no longer count as duplicates.
      for (let i = 0; i < 10; i++) assert.equal(rig.write(`${pub}/d${i}`, 'again'), 'OK');
      assert.match(oracle('dom0 rewrites the 10 nodes once more; guest reads: 10'), /10$/);
      assert.equal(g.events(), 10);
    });

    it('special events are never merged, and an event dropped at the memory quota is not held as pending', () => {
      const rig = new Rig({ quotas: { memory: 600 } });
      const g = rig.guest(7);
      const pub = rig.pubDir(7);
      assert.equal(g.watch(pub, 'tok'), 'OK 1');
      // The guest may know of introductions (SET_PERMS on the special node, as a toolstack can).
      assert.equal(rig.d0(T.XS_SET_PERMS, '@introduceDomain', 'n0', 'r7'), 'OK');
      assert.equal(g.watch('@introduceDomain', 'i'), 'OK 1');
      // Fill rsp[] and the queue up to the quota with distinct nodes; d-last is dropped there.
      for (let i = 0; i < 40; i++) assert.equal(rig.write(`${pub}/n${i}`, 'v'), 'OK');
      const stuck = rig.memory(7);
      assert.ok(stuck < 600 && stuck > 500, `memory ${stuck} just under the quota`);
      assert.equal(rig.write(`${pub}/last`, 'v'), 'OK');
      assert.equal(rig.memory(7), stuck);
      while (g.events() > 0);
      // Room again: the dropped event was not remembered as queued, so it goes now.
      assert.equal(rig.write(`${pub}/last`, 'v2'), 'OK');
      assert.equal(g.events(), 1);
      // With rsp[] full again, two identical special events both queue (C skips '@' paths).
      for (let i = 0; i < 30; i++) assert.equal(rig.write(`${pub}/n${i}`, 'w'), 'OK');
      const before = rig.memory(7);
      rig.d0(T.XS_INTRODUCE, '9', '1009', '7');
      rig.d0(T.XS_RELEASE, '9');
      rig.d0(T.XS_INTRODUCE, '9', '1009', '7');
      assert.equal(rig.memory(7), before + 2 * (16 + '@introduceDomain\0i\0'.length));
      let events = 0;
      for (let n = g.events(); n > 0; n = g.events()) events += n;
      assert.equal(events, 32);
    });

    it('profile ocaml does not charge or drop queued events', () => {
      const rig = new Rig({ profile: 'ocaml', quotas: { memory: 1000 } });
      const g = rig.guest(4);
      const pub = rig.pubDir(4);
      assert.equal(g.request(T.XS_WATCH, nulJoin(pub, 'tok')), 'OK');
      g.events();
      for (let i = 0; i < 100; i++) assert.equal(rig.write(`${pub}/e${i}`, 'v'), 'OK');
      let events = 0;
      for (let n = g.events(); n > 0; n = g.events()) events += n;
      assert.equal(events, 100);
    });
  });

  describe('watch-event timeout (-w watch-event=N)', () => {
    it('an unsent event is dropped N seconds after it was queued; one started into the ring is kept (oracle: 1783 -> 118, 23 events read)', () => {
      const rig = new Rig({ quotas: { watchEventTimeout: 1 } });
      const g = rig.guest(5);
      const pub = rig.pubDir(5);
      assert.equal(g.watch(pub, 'tok'), 'OK 1');
      for (let i = 0; i < 60; i++) assert.equal(rig.write(`${pub}/e${String(i).padStart(3, '0')}`, 'v'), 'OK');
      assert.match(oracle('dom0 wrote 60 nodes:'), / 1783 \|$/);
      assert.equal(rig.memory(5), 1783);
      rig.advance(999);
      assert.equal(rig.memory(5), 1783, 'nothing dropped before the timeout');
      rig.advance(1501);
      assert.match(oracle('2.5 s later:'), / 118 \|$/);
      assert.equal(rig.memory(5), 118);
      let events = 0;
      for (let n = g.events(); n > 0; n = g.events()) events += n;
      assert.match(oracle('guest reads its events: 23'), /23/);
      assert.equal(events, 23);
      assert.equal(rig.memory(5), 73);
    });

    it('4.17 default: 20 s; dom0 is exempt', () => {
      const rig = new Rig();
      assert.equal(rig.daemon.xs.quotas.watchEventTimeout, 20);
      const g = rig.guest(5);
      const pub = rig.pubDir(5);
      assert.equal(g.request(T.XS_WATCH, nulJoin(pub, 'tok')), 'OK');
      g.events();
      for (let i = 0; i < 60; i++) rig.write(`${pub}/e${String(i).padStart(3, '0')}`, 'v');
      rig.advance(19_999);
      assert.equal(rig.memory(5), 1783);
      rig.advance(1);
      assert.equal(rig.memory(5), 118);
    });
  });

  describe('write-rate limiter (4.17 constants: 200 writes/s shared, 10 per domain, 1000 global)', () => {
    /** Rewrites one node (one debit each) until a request stays unread; the count read. */
    function burst(rig: Rig, g: Guest, max = 2000): number {
      let n = 0;
      while (n < max && g.write(`/local/domain/${g.domid}/r`, 'v') === 'OK') n++;
      return n;
    }

    it('no transaction open anywhere: no limit (oracle: 1600 rewrites at ~1650/s, as fast as the probe goes)', () => {
      const rig = new Rig();
      const g = rig.guest(6);
      assert.match(oracle('no transaction open: 1600 rewrites'), /at \d{4} writes\/s/);
      assert.equal(burst(rig, g), 2000);
    });

    it('while a transaction is open: a burst of DBURST + 1, then the shared rate (oracle: 199 writes/s sustained)', () => {
      const rig = new Rig();
      const g = rig.guest(6);
      // Created before any transaction (no debit): each rewrite below is one write access.
      assert.equal(g.write('/local/domain/6/r', 'v'), 'OK');
      assert.equal(rig.d0(T.XS_TRANSACTION_START, ''), '1');
      // Credit 10 writes from the reserve at domain creation; the write that goes into debt is read.
      assert.equal(burst(rig, g), 11);
      // Hold a request in req[], then count how many are read per second of virtual time.
      let answered = 0;
      const tick = 5;
      for (let t = 0; t < 20_000; t += tick) {
        rig.advance(tick);
        answered += g.take().filter((m) => m.type === T.XS_WRITE).length;
        if (idx(g.page, I.req_cons) === idx(g.page, I.req_prod)) g.send(T.XS_WRITE, Buffer.concat([nulJoin('/local/domain/6/r'), Buffer.from('v')]));
        if (t === 10_000 - tick) answered = 0;
      }
      assert.match(oracle('dom0 holds a transaction open:'), /at 199 writes\/s/);
      // The last 10 s: dom0's idle share reaches the reserve, so the guest gets all 200 a second.
      assert.ok(answered >= 1990 && answered <= 2000, `${answered} writes in 10 s`);
    });

    it('profile ocaml has no write-rate limiter', () => {
      const rig = new Rig({ profile: 'ocaml' });
      const g = rig.guest(6);
      assert.equal(rig.d0(T.XS_TRANSACTION_START, ''), '1');
      assert.equal(burst(rig, g, 200), 200);
    });
  });

  describe("the seed's rate limit (--seed-rate-limit N; not in Xen, off by default)", () => {
    it('off by default: nothing limits a guest without transactions', () => {
      const rig = new Rig();
      const g = rig.guest(7);
      for (let i = 0; i < 100; i++) assert.equal(g.request(T.XS_READ, nulJoin('/local/domain/7')), '');
    });

    it('20 per second per unprivileged domain: the 21st request waits 50 ms', () => {
      const rig = new Rig({ seedRateLimit: 20 });
      const g = rig.guest(7);
      const got: string[] = [];
      for (let i = 0; i < 21; i++) got.push(g.request(T.XS_READ, nulJoin('/local/domain/7')));
      assert.deepEqual(got, [...Array<string>(20).fill(''), 'NOREPLY']);
      rig.advance(49);
      assert.equal(g.take().length, 0);
      rig.advance(1);
      assert.equal(g.take().length, 1);
      // dom0 is not limited.
      for (let i = 0; i < 50; i++) assert.equal(rig.d0(T.XS_READ, '/local/domain/7'), '');
    });
  });
});
