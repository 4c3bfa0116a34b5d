// Watches. Profile 'c' = C xenstored 4.17, 'ocaml' = oxenstored 4.17; expectations checked on
// Debian's 4.17.7 daemons (../shared/oracle) where the two differ.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { type Client, Harness, T, latin1, type Reply } from './harness.ts';

const PROFILES = ['c', 'ocaml'] as const;

/** What a request delivered to its sender, in order: 'reply' or 'event <path> <token>'. */
function order(r: Reply): string[] {
  return r.own.map((m) => {
    if (m.type !== T.XS_WATCH_EVENT) return 'reply';
    const [p, t] = latin1(m.payload).split('\0');
    return `event ${p} ${t}`;
  });
}

const write = (c: Client, path: string, value: string): Reply =>
  c.request(T.XS_WRITE, Buffer.concat([Buffer.from(`${path}\0`), Buffer.from(value)]));

describe('xenstored watches', () => {
  describe('registration and the initial event', () => {
    for (const profile of PROFILES) {
      it(`${profile}: WATCH replies OK, then always sends one event with the watched path`, () => {
        const h = new Harness({ profile });
        const g = h.introduce(1);
        const cases: [Client, string][] = [
          [h.dom0, '/missing/deep'],
          [h.dom0, '/tool'],
          [h.dom0, '@introduceDomain'],
          [h.dom0, '@whatever'],
          [g, '/tool/xenstored'], // unreadable for the guest
          [g, 'relative/missing'],
          [g, '/'],
        ];
        for (const [c, path] of cases) {
          const r = c.request(T.XS_WATCH, `${path}\0tok\0`);
          assert.deepEqual(order(r), ['reply', `event ${path} tok`], `${c.name} ${path}`);
          assert.equal(r.payload, 'OK\0');
          assert.deepEqual(c.eventStrings(), [`${path} tok`]);
        }
      });

      it(`${profile}: the same path and token again is EEXIST (relative or absolute spelling); UNWATCH of an unknown watch is ENOENT`, () => {
        const h = new Harness({ profile });
        assert.equal(h.dom0.watch('/local/domain/0/x', 't'), 'OK');
        assert.equal(h.dom0.watch('/local/domain/0/x', 't'), 'EEXIST');
        assert.equal(h.dom0.watch('x', 't'), 'EEXIST');
        assert.equal(h.dom0.watch('/local/domain/0/x', 't2'), 'OK');
        assert.equal(h.dom0.unwatch('/local/domain/0/x', 'nosuch'), 'ENOENT');
        assert.equal(h.dom0.unwatch('x', 't2'), 'OK'); // canonical path + token
        h.dom0.events();
        assert.equal(h.socket().write('/local/domain/0/x', 'v'), 'OK');
        assert.deepEqual(h.dom0.eventStrings(), ['/local/domain/0/x t']);
      });
    }
  });

  describe('which changes fire', () => {
    for (const profile of PROFILES) {
      it(`${profile}: the node and everything below it (path components, not string prefixes)`, () => {
        const h = new Harness({ profile });
        const w = h.socket('w');
        const d = h.socket('d');
        assert.equal(w.watch('/y', 'y'), 'OK');
        w.events();
        const CASES: [string, () => string, string[]][] = [
          ['write /y', () => d.write('/y', '1'), ['/y y']],
          ['write the same value again', () => d.write('/y', '1'), ['/y y']],
          ['create /y/a/b (ancestors silently)', () => d.write('/y/a/b', 'x'), ['/y/a/b y']],
          ['mkdir of an existing node', () => d.mkdir('/y/a'), []],
          ['mkdir of a new node', () => d.mkdir('/y/m'), ['/y/m y']],
          ['write /yy (a string prefix only)', () => d.write('/yy', '1'), []],
          ['write / ', () => d.write('/', ''), []],
          ['set perms', () => d.setPerms('/y/a', 'n0 r1'), ['/y/a y']],
          ['rm of a missing leaf', () => d.rm('/y/nope'), []],
          ['rm /y/a', () => d.rm('/y/a'), ['/y/a y']],
        ];
        for (const [what, act, want] of CASES) {
          assert.equal(act(), 'OK', what);
          assert.deepEqual(w.eventStrings(), want, what);
        }
      });

      it(`${profile}: a watch on / sees every node, but not @introduceDomain / @releaseDomain`, () => {
        const h = new Harness({ profile });
        const w = h.socket('w');
        assert.equal(w.watch('/', 'root'), 'OK');
        assert.equal(w.watch('@introduceDomain', 'intro'), 'OK');
        assert.equal(w.watch('@releaseDomain', 'rel'), 'OK');
        w.events();
        assert.equal(h.dom0.write('/deep/er/node', 'x'), 'OK');
        assert.deepEqual(w.eventStrings(), ['/deep/er/node root']);
        h.introduce(7, { home: false });
        assert.deepEqual(w.eventStrings(), ['@introduceDomain intro']);
        assert.equal(h.release(7), 'OK');
        assert.deepEqual(w.eventStrings(), ['@releaseDomain rel']);
      });

      it(`${profile}: relative watches report relative paths`, () => {
        const h = new Harness({ profile });
        const g = h.introduce(1, { data: true });
        assert.equal(g.watch('data', 'rel'), 'OK');
        assert.equal(h.dom0.watch('reld0', 'r0'), 'OK');
        assert.deepEqual([g.eventStrings(), h.dom0.eventStrings()], [['data rel'], ['reld0 r0']]);
        assert.equal(h.dom0.write('/local/domain/1/data/k', 'v'), 'OK');
        assert.equal(h.socket().write('/local/domain/0/reld0/x', 'v'), 'OK');
        assert.deepEqual(g.eventStrings(), ['data/k rel']);
        assert.deepEqual(h.dom0.eventStrings(), ['reld0/x r0']);
        // An absolute watch on the same node reports absolute paths.
        assert.equal(g.watch('/local/domain/1/data', 'abs'), 'OK');
        g.events();
        assert.equal(g.write('data/k', 'w'), 'OK');
        assert.deepEqual(g.eventStrings().sort(), ['/local/domain/1/data/k abs', 'data/k rel']);
      });
    }
  });

  describe('removal above a watched node', () => {
    function setup(profile: 'c' | 'ocaml'): { h: Harness; g: Client } {
      const h = new Harness({ profile });
      const g = h.introduce(1);
      assert.equal(h.dom0.write('/r/a/b/c', 'x'), 'OK');
      for (const p of ['/r', '/r/a', '/r/a/b', '/r/a/b/c']) assert.equal(h.dom0.setPerms(p, 'r0'), 'OK');
      for (const [p, t] of [['/r/a/b', 'wb'], ['/r/a/b/c', 'wc'], ['/r/a/b/none', 'wn'], ['/r', 'wr']]) {
        assert.equal(h.dom0.watch(p, t), 'OK');
      }
      assert.equal(g.watch('/r/a/b', 'gb'), 'OK');
      h.drainAll();
      return { h, g };
    }

    it('c: each watch fires once, with its own path; removed descendants first, then the reply', () => {
      const { h, g } = setup('c');
      const r = h.dom0.request(T.XS_RM, '/r/a\0');
      assert.deepEqual(order(r), ['event /r/a/b/c wc', 'event /r/a/b wb', 'event /r/a wr', 'reply']);
      assert.deepEqual(g.eventStrings(), ['/r/a/b gb']);
    });

    it('ocaml: every watch at or below the removed node fires (even on missing nodes), after the reply', () => {
      const { h, g } = setup('ocaml');
      const r = h.dom0.request(T.XS_RM, '/r/a\0');
      const got = order(r);
      assert.equal(got[0], 'reply');
      assert.deepEqual(new Set(got.slice(1)), new Set([
        'event /r/a wr', 'event /r/a/b wb', 'event /r/a/b/c wc', 'event /r/a/b/none wn',
      ]));
      assert.equal(got.length, 5);
      assert.deepEqual(g.eventStrings(), ['/r/a/b gb']);
    });
  });

  describe('a transaction\'s events at commit', () => {
    it('c: one event per node; a later non-exact event clears the exactness of a removed child\'s (repro c-d22)', () => {
      const h = new Harness({ profile: 'c' });
      const d0 = h.dom0;
      assert.equal(d0.write('/tool/xenstored', ''), 'OK');
      const w = h.socket('watcher');
      assert.equal(w.watch('/tool', 'tok'), 'OK');
      w.events();
      const tx = d0.txStart();
      assert.equal(d0.rm('/tool', tx), 'OK');
      assert.equal(d0.mkdir('/tool/xenstored', tx), 'OK');
      assert.equal(d0.commit(tx), 'OK');
      assert.deepEqual(w.eventStrings(), ['/tool tok', '/tool/xenstored tok']);
      // Removed only: the child's event stays exact, for watches on itself alone.
      const tx2 = d0.txStart();
      assert.equal(d0.rm('/tool', tx2), 'OK');
      assert.equal(d0.commit(tx2), 'OK');
      assert.deepEqual(w.eventStrings(), ['/tool tok']);
    });

    it('c: nodes are written and their watches fired one by one, in first-access order: a parent changed later is still the old one for a child\'s event (repro c-d26)', () => {
      for (const [first, heard] of [['child', false], ['parent', true]] as const) {
        const h = new Harness({ profile: 'c' });
        const d0 = h.dom0;
        assert.equal(d0.write('/r/domain', ''), 'OK');
        assert.equal(d0.setPerms('/r', 'n0'), 'OK');
        const g = h.introduce(5);
        assert.equal(g.watch('/r/domain', 'tok'), 'OK');
        g.events();
        const tx = d0.txStart();
        const writeChild = (): void => assert.equal(d0.write('/r/domain', 'w', tx), 'OK');
        const openParent = (): void => assert.equal(d0.setPerms('/r', 'b6', tx), 'OK');
        if (first === 'child') { writeChild(); openParent(); } else { openParent(); writeChild(); }
        assert.equal(d0.commit(tx), 'OK');
        assert.deepEqual(g.eventStrings(), heard ? ['/r/domain tok'] : [], `${first} first`);
      }
    });

    it('ocaml: an RM\'s watches below the removed node are judged in the start tree only (repro ocaml-o38)', () => {
      const h = new Harness({ profile: 'ocaml' });
      const d0 = h.dom0;
      const tx = d0.txStart();
      assert.equal(d0.write('/local/domain/6/data', '', tx), 'OK');
      assert.equal(d0.watch('/local/domain/6/data', 't2'), 'OK');
      d0.events();
      assert.equal(d0.rm('/local/domain', tx), 'OK');
      assert.equal(d0.write('/local/domain/6/data', 'w', tx), 'OK');
      assert.equal(d0.commit(tx), 'OK');
      // The two WRITEs; not the RM: /local/domain/6 was not there when the transaction started.
      assert.deepEqual(d0.eventStrings(), ['/local/domain/6/data t2', '/local/domain/6/data t2']);
    });
  });

  describe('order', () => {
    it('c: one connection\'s watches fire in registration order', () => {
      const h = new Harness({ profile: 'c' });
      const w = h.socket('w');
      for (const t of ['t1', 't2', 't3']) assert.equal(w.watch('/x', t), 'OK');
      for (const p of ['/y/z', '/', '/y']) assert.equal(w.watch(p, `tok${p}`), 'OK');
      w.events();
      assert.equal(h.dom0.write('/x', 'v'), 'OK');
      assert.deepEqual(w.eventStrings(), ['/x t1', '/x t2', '/x t3', '/x tok/']);
      assert.equal(h.dom0.write('/y/z/q', 'v'), 'OK');
      assert.deepEqual(w.eventStrings(), ['/y/z/q tok/y/z', '/y/z/q tok/', '/y/z/q tok/y']);
    });

    it('ocaml: same path newest first; different paths from the root down', () => {
      const h = new Harness({ profile: 'ocaml' });
      const w = h.socket('w');
      for (const t of ['t1', 't2', 't3']) assert.equal(w.watch('/x', t), 'OK');
      w.events();
      assert.equal(h.dom0.write('/x', 'v'), 'OK');
      assert.deepEqual(w.eventStrings(), ['/x t3', '/x t2', '/x t1']);
      for (const regs of [['/y/z', '/', '/y'], ['/y', '/y/z', '/'], ['/', '/y/z', '/y']]) {
        const c = h.socket();
        for (const p of regs) assert.equal(c.watch(p, `tok${p}`), 'OK');
        c.events();
        assert.equal(h.dom0.write('/y/z/q', 'v'), 'OK');
        assert.deepEqual(c.eventStrings(), ['/y/z/q tok/', '/y/z/q tok/y', '/y/z/q tok/y/z'], `registered ${regs.join(' ')}`);
      }
    });

    it('c: events caused by a request reach its sender before the reply', () => {
      const h = new Harness({ profile: 'c' });
      for (const t of ['t1', 't2']) assert.equal(h.dom0.watch('/x', t), 'OK');
      h.dom0.events();
      assert.deepEqual(order(write(h.dom0, '/x', 'v')), ['event /x t1', 'event /x t2', 'reply']);
    });

    it('ocaml: events caused by a request reach its sender after the reply', () => {
      const h = new Harness({ profile: 'ocaml' });
      for (const t of ['t1', 't2']) assert.equal(h.dom0.watch('/x', t), 'OK');
      h.dom0.events();
      assert.deepEqual(order(write(h.dom0, '/x', 'v')), ['reply', 'event /x t2', 'event /x t1']);
    });

    for (const profile of PROFILES) {
      it(`${profile}: a commit sends its events before the reply`, () => {
        const h = new Harness({ profile });
        for (const t of ['t1', 't2']) assert.equal(h.dom0.watch('/x', t), 'OK');
        h.dom0.events();
        const t = h.dom0.txStart();
        assert.deepEqual(order(h.dom0.request(T.XS_WRITE, '/x\0in-tx', t)), ['reply']);
        const events = profile === 'c' ? ['event /x t1', 'event /x t2'] : ['event /x t2', 'event /x t1'];
        assert.deepEqual(order(h.dom0.request(T.XS_TRANSACTION_END, 'T\0', t)), [...events, 'reply']);
      });
    }
  });

  describe('@introduceDomain and @releaseDomain', () => {
    for (const profile of PROFILES) {
      it(`${profile}: dom0 sees INTRODUCE and RELEASE; a guest needs read permission on the special node`, () => {
        const h = new Harness({ profile });
        const g1 = h.introduce(1);
        for (const c of [h.dom0, g1]) {
          assert.equal(c.watch('@introduceDomain', 'i'), 'OK');
          assert.equal(c.watch('@releaseDomain', 'r'), 'OK');
        }
        h.drainAll();
        h.introduce(3, { home: false });
        assert.deepEqual(h.dom0.eventStrings(), ['@introduceDomain i']);
        assert.deepEqual(g1.eventStrings(), []);
        assert.equal(h.release(3), 'OK');
        assert.deepEqual(h.dom0.eventStrings(), ['@releaseDomain r']);
        assert.deepEqual(g1.eventStrings(), []);

        // C answers a refused SET_PERMS of a special node with the errno its last request left
        // (here ENOENT, from creating the homes); oxenstored with EACCES. See the oracle replay below.
        assert.equal(g1.setPerms('@introduceDomain', 'n1'), profile === 'c' ? 'ENOENT' : 'EACCES');
        assert.equal(h.dom0.setPerms('@introduceDomain', 'n0 r1'), 'OK');
        assert.equal(h.dom0.setPerms('@releaseDomain', 'n0 r1'), 'OK');
        h.introduce(4, { home: false });
        assert.deepEqual(g1.eventStrings(), ['@introduceDomain i']);
        assert.equal(h.release(4), 'OK');
        assert.deepEqual(g1.eventStrings(), ['@releaseDomain r']);
      });
    }

    for (const profile of PROFILES) {
      it(`${profile}: GET_PERMS / SET_PERMS of the special nodes from dom0 and a guest, reply for reply as the oracle answered`, () => {
        // special-perms-oracle-*.txt: test/interop/xs-special-perms-probe.py against Debian's 4.17.7
        // daemons. C: GET_PERMS is EINVAL for everyone; a refused SET_PERMS answers the errno left by
        // the daemon's last request (ENOENT at start and after a node is created, else the last
        // error answered, whoever asked); the owner may set them. oxenstored: real nodes, EACCES.
        const transcript = readFileSync(new URL(`special-perms-oracle-${profile}.txt`, import.meta.url), 'latin1');
        const h = new Harness({ profile });
        const clients: Record<string, Client> = { D: h.dom0 };
        let asked: { who: string; line: string; reply?: Reply } | undefined;
        let requests = 0;
        let replies = 0;
        const unrepr = (s: string): string => s.replace(/\\x([0-9a-f]{2})|\\(.)/g, (_, hex: string | undefined, c: string | undefined) => (hex ? String.fromCharCode(parseInt(hex, 16)) : c!));
        for (const line of transcript.split('\n')) {
          const req = /^([DG]) >> (\w+) +rid=\d+ tx=0 '(.*)'$/.exec(line);
          if (req) {
            const [, who, op, payload] = req;
            // The guest is INTRODUCEd as the probe did (no home), and answers from its ring.
            if (op === 'INTRODUCE') {
              clients.G = h.introduce(5, { home: false });
              asked = undefined;
              continue;
            }
            requests++;
            asked = { who, line, reply: clients[who].request(T[`XS_${op}` as keyof typeof T] as number, unrepr(payload)) };
            continue;
          }
          const rep = /^ {2}([DG]) << (\w+) +rid=\d+ tx=0 '(.*)'$/.exec(line);
          if (!rep || asked === undefined) continue;
          const [, who, type, payload] = rep;
          assert.equal(who, asked.who, asked.line);
          const r = asked.reply!;
          assert.equal(`${T[r.msg!.type].replace(/^XS_/, '')} ${latin1(r.msg!.payload)}`, `${type} ${unrepr(payload)}`, asked.line);
          replies++;
        }
        assert.ok(requests > 40 && replies === requests, `every request of the transcript answered as there (${replies} of ${requests})`);
      });
    }

    it("c: RELEASE takes the domain out of the special ACLs before @releaseDomain fires (an owner becomes dom0): a guest whose target is dom0 then hears it (repro c-d24)", () => {
      for (const [owner, hears] of [[5, true], [7, false]] as const) {
        const h = new Harness({ profile: 'c' });
        h.introduce(5);
        const g6 = h.introduce(6);
        assert.equal(g6.watch('@releaseDomain', 't1'), 'OK');
        assert.equal(h.dom0.setPerms('@releaseDomain', `w${owner} n5`), 'OK');
        assert.equal(h.dom0.request(T.XS_SET_TARGET, '6\x000\x00').error ?? 'OK', 'OK');
        h.drainAll();
        assert.equal(h.release(5), 'OK');
        assert.deepEqual(g6.eventStrings(), hears ? ['@releaseDomain t1'] : [], `owner ${owner}`);
      }
    });

    it('ocaml: INTRODUCE and RELEASE inside a transaction judge the special events in its tree (repro ocaml-o47)', () => {
      const h = new Harness({ profile: 'ocaml' });
      const d0 = h.dom0;
      const g = h.introduce(5);
      assert.equal(g.watch('@introduceDomain', 'ti'), 'OK');
      assert.equal(g.watch('@releaseDomain', 'tr'), 'OK');
      g.events();
      const tx = d0.txStart();
      assert.equal(d0.setPerms('@introduceDomain', 'n0 r5', tx), 'OK');
      assert.equal(d0.setPerms('@releaseDomain', 'n0 r5', tx), 'OK');
      assert.equal(d0.request(T.XS_INTRODUCE, Harness.introducePayload(7), tx).error ?? 'OK', 'OK');
      assert.equal(d0.request(T.XS_RELEASE, '7\0', tx).error ?? 'OK', 'OK');
      assert.deepEqual(g.eventStrings(), ['@introduceDomain ti', '@releaseDomain tr']);
      assert.equal(d0.abort(tx), 'OK');
      // Outside it the special nodes are as they were: guest 5 hears nothing.
      h.introduce(8);
      assert.equal(h.release(8), 'OK');
      assert.deepEqual(g.eventStrings(), []);
    });

    it('c: SET_PERMS of an unknown @ name answers the stale errno, which checks before the handler and errors returned as values leave alone (repro c-edge-stale-errno.txt)', () => {
      const h = new Harness({ profile: 'c' });
      const d0 = h.dom0;
      const g = h.introduce(5);
      assert.equal(g.read('/tool/xenstored'), 'EACCES');
      assert.equal(d0.request(T.XS_WATCH, '/a\0').error, 'EINVAL');
      assert.equal(d0.request(99, 'x\0').error, 'ENOSYS');
      assert.equal(d0.unwatch('/zz', 'tok'), 'ENOENT');
      assert.equal(d0.request(T.XS_TRANSACTION_END, 'T\0', 77).error, 'ENOENT');
      assert.equal(d0.setPerms('@bogus', 'n0'), 'EACCES');
      assert.equal(d0.read('/local/domain/5/x/y'), 'ENOENT');
      assert.equal(d0.setPerms('@bogus', 'n0'), 'ENOENT');
    });

    it('c: GET_PERMS of a special node is EINVAL in 4.17, even for dom0', () => {
      const h = new Harness({ profile: 'c' });
      assert.equal(h.dom0.setPerms('@introduceDomain', 'n0 r1'), 'OK');
      assert.equal(h.dom0.getPerms('@introduceDomain'), 'EINVAL');
      assert.equal(h.dom0.getPerms('@releaseDomain'), 'EINVAL');
    });

    it('ocaml: GET_PERMS of a special node works for readers', () => {
      const h = new Harness({ profile: 'ocaml' });
      const g1 = h.introduce(1);
      const g3 = h.introduce(3);
      assert.equal(h.dom0.setPerms('@introduceDomain', 'n0 r1'), 'OK');
      assert.equal(g1.getPerms('@introduceDomain'), 'n0 r1');
      assert.equal(g3.getPerms('@introduceDomain'), 'EACCES');
    });

    it('c: a shutdown fires @releaseDomain once until RESUME; death fires it and releases the domain', () => {
      const h = new Harness({ profile: 'c' });
      h.introduce(5);
      assert.equal(h.dom0.watch('@releaseDomain', 'r'), 'OK');
      h.dom0.events();
      h.domainState(5, 'shutdown');
      assert.deepEqual(h.dom0.eventStrings(), ['@releaseDomain r']);
      h.domainState(5, 'shutdown');
      assert.deepEqual(h.dom0.eventStrings(), []);
      assert.equal(h.dom0.request(T.XS_RESUME, '5\0').error, undefined);
      h.domainState(5, 'shutdown');
      assert.deepEqual(h.dom0.eventStrings(), ['@releaseDomain r']);
      h.domainState(5, 'dead');
      assert.deepEqual(h.dom0.eventStrings(), ['@releaseDomain r']);
      assert.equal(h.dom0.request(T.XS_IS_DOMAIN_INTRODUCED, '5\0').payload, 'F\0');
    });

    it('ocaml: @releaseDomain fires on every scan that finds the domain shut down', () => {
      const h = new Harness({ profile: 'ocaml' });
      h.introduce(5);
      assert.equal(h.dom0.watch('@releaseDomain', 'r'), 'OK');
      h.dom0.events();
      h.domainState(5, 'shutdown');
      h.domainState(5, 'shutdown');
      assert.deepEqual(h.dom0.eventStrings(), ['@releaseDomain r', '@releaseDomain r']);
    });
  });

  describe('RESET_WATCHES', () => {
    for (const profile of PROFILES) {
      const unknown = profile === 'c' ? 'ENOENT' : 'EIO';
      it(`${profile}: drops the caller's watches and transactions, nobody else's`, () => {
        const h = new Harness({ profile });
        const g = h.introduce(1, { data: true });
        const other = h.socket('other');
        assert.equal(other.watch('/local/domain/1/data', 'o'), 'OK');
        const t = g.txStart();
        assert.equal(g.write('data/in-tx', 'v', t), 'OK');
        assert.equal(g.watch('data', 'rw'), 'OK');
        const otherTx = other.txStart();
        h.drainAll();
        assert.equal(g.request(T.XS_RESET_WATCHES, '\0').payload, 'OK\0');
        assert.equal(h.dom0.write('/local/domain/1/data/k', 'v2'), 'OK');
        assert.deepEqual(g.events(), []);
        assert.deepEqual(other.eventStrings(), ['/local/domain/1/data/k o']);
        assert.equal(g.read('data/k', t), unknown);
        assert.equal(g.commit(t), unknown);
        assert.equal(h.dom0.read('/local/domain/1/data/in-tx'), 'ENOENT');
        assert.equal(g.txStartResult(), '2'); // ids go on
        assert.equal(other.commit(otherTx), 'OK');
      });
    }

    it('c: sent with a tx_id it still succeeds and the transaction is gone (XSA-484)', () => {
      const h = new Harness({ profile: 'c' });
      const t = h.dom0.txStart();
      assert.equal(h.dom0.request(T.XS_RESET_WATCHES, '\0', t).payload, 'OK\0');
      assert.equal(h.dom0.commit(t), 'ENOENT');
    });

    it('c: it frees the watch quota (XSA-330)', () => {
      const h = new Harness({ profile: 'c' });
      const g = h.introduce(1, { data: true });
      for (let round = 0; round < 2; round++) {
        for (let i = 0; i < 129; i++) assert.equal(g.watch('data', `t${i}`), 'OK');
        assert.equal(g.watch('data', 'one-too-many'), 'E2BIG');
        assert.equal(g.request(T.XS_RESET_WATCHES, '\0').error, undefined);
      }
    });
  });

  describe('who gets an event (XSA-115)', () => {
    for (const profile of PROFILES) {
      it(`${profile}: a guest hears about nodes it may read, or whose parent it may read`, () => {
        const h = new Harness({ profile });
        const g = h.introduce(1);
        const d = h.dom0;
        assert.equal(d.write('/w/secret/deeper', 's'), 'OK');
        assert.equal(d.setPerms('/w', 'n0 r1'), 'OK');
        assert.equal(d.write('/hidden', 'h'), 'OK');
        assert.equal(g.watch('/w', 'tw'), 'OK');
        assert.equal(g.watch('/hidden', 'th'), 'OK');
        assert.equal(g.watch('/', 'all'), 'OK');
        g.events();
        const STEPS: [string, () => string, string[]][] = [
          ['unreadable child of a readable node', () => d.write('/w/secret', 's2'), ['/w/secret tw', '/w/secret all']],
          ['unreadable grandchild', () => d.write('/w/secret/deeper', 's2'), []],
          ['unreadable node, unreadable parent', () => d.write('/hidden', 'h2'), []],
          ['ACL change granting read', () => d.setPerms('/w/secret', 'n0 r1'), ['/w/secret tw', '/w/secret all']],
          ['grandchild, parent now readable', () => d.write('/w/secret/deeper', 's3'), ['/w/secret/deeper tw', '/w/secret/deeper all']],
          ['ACL change revoking read (old ACL counts)', () => d.setPerms('/w/secret', 'n0'), ['/w/secret tw', '/w/secret all']],
          ['ACL change revoking read on /w', () => d.setPerms('/w', 'n0'), ['/w tw', '/w all']],
          ['after the revocation', () => d.write('/w/secret', 's4'), []],
          ['removal of an unreadable subtree', () => d.rm('/hidden'), []],
        ];
        for (const [what, act, want] of STEPS) {
          assert.equal(act(), 'OK', what);
          assert.deepEqual(g.eventStrings().sort(), [...want].sort(), what);
        }
      });
    }

    it('c: IS_DOMAIN_INTRODUCED is for dom0 only', () => {
      const h = new Harness({ profile: 'c' });
      const g = h.introduce(1);
      assert.equal(g.request(T.XS_IS_DOMAIN_INTRODUCED, '1\0').error, 'EACCES');
      assert.equal(h.dom0.request(T.XS_IS_DOMAIN_INTRODUCED, '1\0').payload, 'T\0');
    });

    it('c: an event that does not fit in a message is dropped (XSA-324)', () => {
      const h = new Harness({ profile: 'c' });
      const w = h.socket('w');
      const token = 'T'.repeat(4000);
      assert.equal(w.watch('/a', token), 'OK');
      assert.equal(w.events().length, 1);
      assert.equal(h.dom0.write(`/a/${'c'.repeat(100)}`, 'v'), 'OK');
      assert.deepEqual(w.events(), []);
      assert.equal(h.dom0.write('/a', 'v'), 'OK');
      assert.deepEqual(w.events(), [['/a', token]]);
    });
  });
});
