// Node permissions (C xenstored 4.17, profile 'c'), as seen by two introduced guests and dom0.
//
// Guests 1 and 2 are introduced with homes prepared as libxl does (/local/domain/N, `n0 rN`).
// Every node under test is /t/k with value 'v' and one child 'kid', below /t (`n0`, so the
// parent never grants anything), with the ACL of the row. Expected results were checked against
// Debian's xenstored 4.17.7 (../shared/oracle, fake guests over ring files).
//
// ACL notation: entry 0 is the owner and the default for unlisted domains; later entries give
// `r`ead, `w`rite, `b`oth or `n`one to one domain; the first entry naming a domain wins; the owner
// (and dom0) may do everything, including SET_PERMS.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Harness, type Client, type Result } from './harness.ts';
import { property } from '../../helpers/property.ts';

type Right = '-' | 'r' | 'w' | 'rw' | 'o';

/** ACL -> what guest 1 and guest 2 may do with the node. */
const ACLS: readonly (readonly [acl: string, g1: Right, g2: Right])[] = [
  ['n0', '-', '-'],
  ['r0', 'r', 'r'],
  ['w0', 'w', 'w'],
  ['b0', 'rw', 'rw'],
  ['n0 r1', 'r', '-'],
  ['n0 w1', 'w', '-'],
  ['n0 b1', 'rw', '-'],
  ['n1', 'o', '-'],
  ['n2', '-', 'o'],
  ['r1', 'o', 'r'],
  ['n1 r2', 'o', 'r'],
  ['n0 r1 b2', 'r', 'rw'],
  ['b0 n1', '-', 'rw'],
  ['r2 n1', '-', 'o'],
  ['n0 r1 w1', 'r', '-'],
  ['n0 b3', '-', '-'],
  ['n0 r1 r2', 'r', 'r'],
];

const can = (right: Right, need: 'r' | 'w' | 'o'): boolean =>
  right === 'o' || (need !== 'o' && right.includes(need));

/**
 * Operation -> the right it needs and its result with that right; without it the result is
 * EACCES (for WATCH: no event). `acl` is the row's ACL (GET_PERMS returns it).
 */
const OPS: readonly {
  readonly op: string;
  readonly need: 'r' | 'w' | 'o';
  readonly ok: (acl: string) => string;
  readonly run: (c: Client, h: Harness, acl: string) => Result;
}[] = [
  { op: 'READ', need: 'r', ok: () => 'v', run: (c) => c.read('/t/k') },
  { op: 'WRITE existing', need: 'w', ok: () => 'OK', run: (c) => c.write('/t/k', 'new') },
  { op: 'WRITE creating a child', need: 'w', ok: () => 'OK', run: (c) => c.write('/t/k/c', 'c') },
  { op: 'MKDIR creating a child', need: 'w', ok: () => 'OK', run: (c) => c.mkdir('/t/k/m') },
  { op: 'MKDIR existing', need: 'w', ok: () => 'OK', run: (c) => c.mkdir('/t/k') },
  { op: 'RM', need: 'w', ok: () => 'OK', run: (c) => c.rm('/t/k') },
  { op: 'RM missing child', need: 'w', ok: () => 'OK', run: (c) => c.rm('/t/k/missing') },
  { op: 'DIRECTORY', need: 'r', ok: () => 'kid', run: (c) => c.dir('/t/k') },
  { op: 'GET_PERMS', need: 'r', ok: (acl) => acl, run: (c) => c.getPerms('/t/k') },
  { op: 'SET_PERMS (same owner)', need: 'o', ok: () => 'OK', run: (c, _h, acl) => c.setPerms('/t/k', acl) },
  { op: 'READ missing child', need: 'r', ok: () => 'ENOENT', run: (c) => c.read('/t/k/missing') },
  {
    op: 'WATCH event delivery',
    need: 'r',
    ok: () => 'event',
    run: (c, h) => {
      c.watch('/t/k', 'tok');
      c.events(); // the initial event always comes
      h.dom0.write('/t/k', 'changed');
      const ev = c.eventStrings();
      c.unwatch('/t/k', 'tok');
      return ev.length === 0 ? 'none' : ev.join(',') === '/t/k tok' ? 'event' : ev.join(',');
    },
  },
];

function fixture(h: Harness, acl: string): void {
  h.dom0.rm('/t/k');
  assert.equal(h.dom0.write('/t/k', 'v'), 'OK');
  assert.equal(h.dom0.write('/t/k/kid', ''), 'OK');
  assert.equal(h.dom0.setPerms('/t/k', acl), 'OK');
}

function setup(): { h: Harness; who: Record<string, Client> } {
  const h = new Harness({ profile: 'c' });
  const g1 = h.introduce(1);
  const g2 = h.introduce(2);
  assert.equal(h.dom0.mkdir('/t'), 'OK');
  return { h, who: { 'guest 1': g1, 'guest 2': g2, dom0: h.dom0 } };
}

describe('xenstored permissions (C 4.17)', () => {
  describe('matrix: node ACL x operation x connection', () => {
    for (const [acl, r1, r2] of ACLS) {
      const rights: Record<string, Right> = { 'guest 1': r1, 'guest 2': r2, dom0: 'o' };
      for (const who of ['guest 1', 'guest 2', 'dom0']) {
        it(`ACL "${acl}" as ${who} (${rights[who] === '-' ? 'no access' : rights[who]})`, () => {
          const { h, who: conns } = setup();
          const expected: Record<string, string> = {};
          const actual: Record<string, string> = {};
          for (const o of OPS) {
            fixture(h, acl);
            h.drainAll();
            expected[o.op] = can(rights[who], o.need) ? o.ok(acl) : o.op.startsWith('WATCH') ? 'none' : 'EACCES';
            actual[o.op] = o.run(conns[who], h, acl);
          }
          assert.deepEqual(actual, expected);
        });
      }
    }
  });

  describe('missing nodes: the nearest existing ancestor decides between ENOENT and EACCES', () => {
    // 4.17 errno_from_parents(): a missing node answers ENOENT only if the nearest existing
    // ancestor grants (any bit of) the access asked for; otherwise EACCES, so that an
    // unreadable parent does not leak whether a child exists.
    const CASES: readonly (readonly [acl: string, op: string, path: string, want: string])[] = [
      ['n0 r1', 'READ', '/t/k/m', 'ENOENT'],
      ['n0 r1', 'READ', '/t/k/m/deep', 'ENOENT'],
      ['n0 r1', 'DIRECTORY', '/t/k/m', 'ENOENT'],
      ['n0 r1', 'GET_PERMS', '/t/k/m', 'ENOENT'],
      ['n0 r1', 'SET_PERMS', '/t/k/m', 'EACCES'],
      ['n0 r1', 'RM', '/t/k/m', 'EACCES'],
      ['n0 r1', 'RM', '/t/k/m/deep', 'EACCES'],
      ['n0 r1', 'WRITE', '/t/k/m/deep', 'EACCES'],
      ['n0 r1', 'MKDIR', '/t/k/m/deep', 'EACCES'],
      ['n0', 'READ', '/t/k/m', 'EACCES'],
      ['n0', 'READ', '/t/k/m/deep', 'EACCES'],
      ['n0', 'DIRECTORY', '/t/k/m', 'EACCES'],
      ['n0', 'GET_PERMS', '/t/k/m', 'EACCES'],
      ['n0', 'SET_PERMS', '/t/k/m', 'EACCES'],
      ['n0', 'RM', '/t/k/m', 'EACCES'],
      ['n0', 'WRITE', '/t/k/m/deep', 'EACCES'],
      ['n0 w1', 'READ', '/t/k/m', 'EACCES'],
      ['n0 w1', 'READ', '/t/k/m/deep', 'EACCES'],
      ['n0 w1', 'DIRECTORY', '/t/k/m', 'EACCES'],
      ['n0 w1', 'GET_PERMS', '/t/k/m', 'EACCES'],
      ['n0 w1', 'SET_PERMS', '/t/k/m', 'ENOENT'],
      ['n0 w1', 'SET_PERMS', '/t/k/m/deep', 'ENOENT'],
      ['n0 w1', 'RM', '/t/k/m', 'OK'],
      ['n0 w1', 'RM', '/t/k/m/deep', 'ENOENT'],
      ['n0 w1', 'WRITE', '/t/k/m/deep', 'OK'],
      ['n0 w1', 'MKDIR', '/t/k/m/deep', 'OK'],
      ['n1', 'READ', '/t/k/m', 'ENOENT'],
      ['n1', 'SET_PERMS', '/t/k/m', 'ENOENT'],
      ['n1', 'RM', '/t/k/m', 'OK'],
      ['n1', 'RM', '/t/k/m/deep', 'ENOENT'],
      ['n1', 'WRITE', '/t/k/m/deep', 'OK'],
    ];
    for (const [acl, op, path, want] of CASES) {
      it(`guest 1, /t/k "${acl}": ${op} ${path} -> ${want}`, () => {
        const { h, who } = setup();
        fixture(h, acl);
        const g = who['guest 1'];
        const got =
          op === 'READ' ? g.read(path)
            : op === 'DIRECTORY' ? g.dir(path)
              : op === 'GET_PERMS' ? g.getPerms(path)
                : op === 'SET_PERMS' ? g.setPerms(path, 'n1')
                  : op === 'RM' ? g.rm(path)
                    : op === 'WRITE' ? g.write(path, 'x')
                      : g.mkdir(path);
        assert.equal(got, want);
      });
    }
  });

  describe('nodes a guest creates', () => {
    // construct_node(): a new node copies the nearest existing ancestor's ACL, and for an
    // unprivileged creator entry 0 (the owner) becomes the creator; dom0 keeps the ACL as is.
    const CASES: readonly (readonly [parentAcl: string, guestChild: string, dom0Child: string])[] = [
      ['n0 b1', 'n1 b1', 'n0 b1'],
      ['b0', 'b1', 'b0'],
      ['w0 r2', 'w1 r2', 'w0 r2'],
      ['n0 b1 r2', 'n1 b1 r2', 'n0 b1 r2'],
      ['b0 n2', 'b1 n2', 'b0 n2'],
    ];
    for (const [parentAcl, guestChild, dom0Child] of CASES) {
      it(`under "${parentAcl}": guest 1 creates "${guestChild}" (and intermediates), dom0 "${dom0Child}"`, () => {
        const { h, who } = setup();
        fixture(h, parentAcl);
        assert.equal(who['guest 1'].write('/t/k/c/d', 'x'), 'OK');
        assert.equal(h.dom0.getPerms('/t/k/c'), guestChild);
        assert.equal(h.dom0.getPerms('/t/k/c/d'), guestChild);
        assert.equal(h.dom0.write('/t/k/e', 'x'), 'OK');
        assert.equal(h.dom0.getPerms('/t/k/e'), dom0Child);
      });
    }
  });

  describe('SET_PERMS', () => {
    it('an unprivileged owner may change the entries but not the owner (EPERM)', () => {
      const { h, who } = setup();
      fixture(h, 'n1 b2');
      const g1 = who['guest 1'];
      assert.equal(g1.setPerms('/t/k', 'n2'), 'EPERM');
      assert.equal(g1.setPerms('/t/k', 'n0'), 'EPERM');
      assert.equal(h.dom0.getPerms('/t/k'), 'n1 b2');
      assert.equal(g1.setPerms('/t/k', 'r1 b2 w0'), 'OK');
      assert.equal(h.dom0.getPerms('/t/k'), 'r1 b2 w0');
    });

    it('read+write is not ownership: a non-owner gets EACCES', () => {
      const { h, who } = setup();
      fixture(h, 'n1 b2');
      assert.equal(who['guest 2'].setPerms('/t/k', 'r1'), 'EACCES');
      assert.equal(who['guest 2'].setPerms('/t/k', 'n2'), 'EACCES');
    });

    it('malformed ACLs are EINVAL', () => {
      const { h, who } = setup();
      fixture(h, 'n1');
      const g1 = who['guest 1'];
      assert.equal(g1.setPerms('/t/k', 'x1'), 'EINVAL');
      assert.equal(g1.setPerms('/t/k', 'r1x'), 'EINVAL');
      assert.equal(g1.request(14 /* SET_PERMS */, '/t/k\0').error, 'EINVAL');
      assert.equal(h.dom0.getPerms('/t/k'), 'n1');
    });

    it('dom0 may give a node to anyone', () => {
      const { h } = setup();
      fixture(h, 'n1');
      assert.equal(h.dom0.setPerms('/t/k', 'n2 r1'), 'OK');
      assert.equal(h.dom0.getPerms('/t/k'), 'n2 r1');
    });
  });

  describe('ACLs written inside a transaction', () => {
    it('a dir created with n0 r2 in a transaction lets guest 2 read the children written with it (libxl device dirs)', () => {
      for (const profile of ['c', 'ocaml'] as const) {
        const h = new Harness({ profile });
        const g2 = h.introduce(2);
        const d0 = h.dom0;
        const tx = d0.txStart();
        assert.equal(d0.write('/be/vbd/2/51712', '', tx), 'OK');
        assert.equal(d0.setPerms('/be/vbd/2/51712', 'n0 r2', tx), 'OK');
        assert.equal(d0.write('/be/vbd/2/51712/state', '1', tx), 'OK');
        assert.equal(d0.commit(tx), 'OK');
        // Written after domain 2 became known (a generation count taken inside the transaction in
        // C, none at all in oxenstored): the entry is not stale.
        assert.equal(d0.getPerms('/be/vbd/2/51712/state'), 'n0 r2', profile);
        assert.equal(g2.read('/be/vbd/2/51712/state'), '1', profile);
        assert.equal(d0.write('/be/vbd/2/51712/state', '2'), 'OK');
        assert.equal(g2.read('/be/vbd/2/51712/state'), '2', profile);
      }
    });
  });

  describe('domid reuse', () => {
    it('XSA-322: ACL entries of a released domain give nothing to a new domain with the same domid', () => {
      const { h, who } = setup();
      const d0 = h.dom0;
      assert.equal(d0.write('/t/s', 'secret'), 'OK');
      assert.equal(d0.setPerms('/t/s', 'n0 r2'), 'OK');
      assert.equal(d0.write('/t/s2', 'x'), 'OK');
      assert.equal(d0.setPerms('/t/s2', 'n0 r2'), 'OK');
      assert.equal(who['guest 2'].read('/t/s'), 'secret');

      assert.equal(h.release(2), 'OK');
      // A node created while domain 2 is gone inherits the entry, still stale.
      assert.equal(d0.write('/t/s2/while-gone', 'c'), 'OK');
      const g2 = h.introduce(2, { home: false });
      // C keeps listing the stale entry.
      assert.equal(d0.getPerms('/t/s'), 'n0 r2');
      assert.equal(g2.read('/t/s'), 'EACCES');
      assert.equal(g2.dir('/t/s'), 'EACCES');
      assert.equal(g2.read('/t/s2/while-gone'), 'EACCES');
      // Rewriting the value keeps the entry stale; so does inheriting it after the reuse.
      assert.equal(d0.write('/t/s', 'secret2'), 'OK');
      assert.equal(g2.read('/t/s'), 'EACCES');
      assert.equal(d0.write('/t/s2/after', 'c'), 'OK');
      assert.equal(g2.read('/t/s2/after'), 'EACCES');
      // No watch event either.
      assert.equal(g2.watch('/t/s', 'w'), 'OK');
      g2.events();
      assert.equal(d0.write('/t/s', 'secret3'), 'OK');
      assert.deepEqual(g2.events(), []);
      // Granting again, after the new domain exists, works.
      assert.equal(d0.setPerms('/t/s', 'n0 r2'), 'OK');
      g2.events();
      assert.equal(g2.read('/t/s'), 'secret3');
    });

    it('C: a node changed last just before a domain becomes known keeps that domain\'s entries; a write in an open transaction in between makes them stale (repro c-d21)', () => {
      for (const txWrite of [false, true]) {
        const h = new Harness({ profile: 'c' });
        const d0 = h.dom0;
        assert.equal(d0.write('/local/domain/5', ''), 'OK');
        assert.equal(d0.setPerms('/local/domain/5', 'n0 r5'), 'OK');
        assert.equal(d0.write('/local/domain/5/data', ''), 'OK');
        assert.equal(d0.setPerms('/local/domain/5/data', 'n5'), 'OK');
        h.introduce(5, { home: false });
        const tx = d0.txStart();
        // Deleting data/ (owned by 5) rewrites /local/domain/5: its generation is the current count.
        assert.equal(h.release(5), 'OK');
        // Uncommitted, but it takes a generation count all the same (access_node()).
        if (txWrite) assert.equal(d0.write('/local/domain/5/data', 'x', tx), 'OK');
        const g5 = h.introduce(5, { home: false });
        assert.equal(d0.write('/local/domain/5/data/p', 'w'), 'OK');
        const want = txWrite ? 'EACCES' : '';
        assert.equal(g5.read('/local/domain/5'), want, `txWrite=${txWrite}`);
        assert.equal(g5.read('/local/domain/5/data/p'), txWrite ? 'EACCES' : 'w', `txWrite=${txWrite}`);
      }
    });

    it('C: a commit, even one that fails EAGAIN, makes a released domain whose nodes it touched known again, at today\'s count: its entries stay valid (repro c-d25)', () => {
      for (const commit of [false, true]) {
        const h = new Harness({ profile: 'c' });
        const d0 = h.dom0;
        const other = h.socket('other');
        // Home n0 r6 and data/ owned by 6, as libxl makes them.
        h.introduce(6, { data: true });
        const tx = other.txStart();
        // Takes away a node domain 6 owns: the transaction's changed_domains lists domain 6.
        assert.equal(other.rm('/local/domain', tx), 'OK');
        assert.equal(h.release(6), 'OK');
        // transaction_fix_domains() runs before the conflict is found.
        if (commit) assert.equal(other.commit(tx), 'EAGAIN');
        // Created while domain 6 is known (commit) or not: the inherited r6 counts, or is stale.
        assert.equal(d0.write('/local/domain/6/data', 'x'), 'OK');
        const g6 = h.introduce(6, { home: false });
        assert.equal(g6.read('data'), commit ? 'x' : 'EACCES', `commit=${commit}`);
        assert.equal(g6.read('/local/domain/6'), commit ? '' : 'EACCES', `commit=${commit}`);
      }
    });

    it('XSA-419: nodes the released domain owned are deleted, with the events an RM fires', () => {
      const { h, who } = setup();
      const d0 = h.dom0;
      const g2 = who['guest 2'];
      assert.equal(d0.write('/t/pub', ''), 'OK');
      assert.equal(d0.setPerms('/t/pub', 'b0'), 'OK');
      assert.equal(d0.mkdir('/local/domain/2/data'), 'OK');
      assert.equal(d0.setPerms('/local/domain/2/data', 'n2'), 'OK');
      assert.equal(g2.write('/t/pub/x', 'gx'), 'OK');
      assert.equal(d0.getPerms('/t/pub/x'), 'b2');
      assert.equal(g2.write('/t/pub/x/deep', 'd'), 'OK');
      assert.equal(g2.write('data/y', 'gy'), 'OK');
      assert.equal(who['guest 1'].write('/t/pub/z', ''), 'OK');
      assert.equal(g2.write('/t/pub/z/w', 'w'), 'OK');

      const w = h.socket('watcher');
      assert.equal(w.watch('/t', 'tt'), 'OK');
      assert.equal(w.watch('/local/domain/2', 'td'), 'OK');
      assert.equal(w.watch('@releaseDomain', 'rel'), 'OK');
      w.events();

      assert.equal(h.release(2), 'OK');
      assert.deepEqual(new Set(w.eventStrings()), new Set([
        '/local/domain/2/data td', '/t/pub/x tt', '/t/pub/z/w tt', '@releaseDomain rel',
      ]));
      assert.equal(d0.read('/t/pub/x'), 'ENOENT');
      assert.equal(d0.read('/local/domain/2/data'), 'ENOENT');
      assert.equal(d0.read('/t/pub/z/w'), 'ENOENT');
      // Nodes owned by others stay, even below or above the released domain's nodes.
      assert.equal(d0.read('/local/domain/2'), '');
      assert.equal(d0.read('/t/pub/z'), '');
      assert.equal(d0.read('/t/pub'), '');
    });

    it('XSA-419: a domain that dies loses its nodes too', () => {
      const { h, who } = setup();
      assert.equal(h.dom0.write('/t/pub', ''), 'OK');
      assert.equal(h.dom0.setPerms('/t/pub', 'b0'), 'OK');
      assert.equal(who['guest 1'].write('/t/pub/g1', 'x'), 'OK');
      h.domainState(1, 'dead');
      assert.equal(h.dom0.read('/t/pub/g1'), 'ENOENT');
      assert.equal(h.xs.domainConnection(1), undefined);
    });
  });

  describe('property: guests only see and touch what their grants allow', () => {
    // A model of C 4.17's perm_for_conn() and errno_from_parents(), fed with the ACLs dom0 reads
    // back before each step: every guest result must be what the model says, and every watch
    // event a guest receives must be about a node it could read (or whose parent it could read),
    // before or after the change (XSA-115).
    const NAMES = ['a', 'b', 'c'];
    const DOMS = [0, 1, 2, 3];
    const arbAcl = fc.record({
      owner: fc.constantFrom(...DOMS),
      dflt: fc.constantFrom('n', 'r', 'w', 'b'),
      extra: fc.array(fc.tuple(fc.constantFrom('n', 'r', 'w', 'b'), fc.constantFrom(...DOMS)), { maxLength: 3 }),
    }).map(({ owner, dflt, extra }) => [`${dflt}${owner}`, ...extra.map(([l, d]) => `${l}${d}`)].join(' '));
    const arbPath = fc.array(fc.constantFrom(...NAMES), { minLength: 1, maxLength: 3 }).map((p) => `/p/${p.join('/')}`);
    const arbTree = fc.array(fc.tuple(arbPath, arbAcl), { minLength: 1, maxLength: 12 });
    type GuestOp =
      | { kind: 'READ' | 'DIRECTORY' | 'GET_PERMS' | 'WRITE' | 'MKDIR' | 'RM'; who: 1 | 2; path: string; acl?: undefined }
      | { kind: 'SET_PERMS'; who: 1 | 2; path: string; acl: string };
    type Op =
      | GuestOp
      | { kind: 'dom0 WRITE' | 'dom0 RM'; path: string }
      | { kind: 'dom0 SET_PERMS'; path: string; acl: string };
    const arbWho = fc.constantFrom<1 | 2>(1, 2);
    const arbOp: fc.Arbitrary<Op> = fc.oneof(
      fc.record({
        kind: fc.constantFrom<'READ' | 'DIRECTORY' | 'GET_PERMS' | 'WRITE' | 'MKDIR' | 'RM'>(
          'READ', 'DIRECTORY', 'GET_PERMS', 'WRITE', 'MKDIR', 'RM'),
        who: arbWho,
        path: arbPath,
      }),
      fc.record({ kind: fc.constant('SET_PERMS' as const), who: arbWho, path: arbPath, acl: arbAcl }),
      fc.record({ kind: fc.constantFrom<'dom0 WRITE' | 'dom0 RM'>('dom0 WRITE', 'dom0 RM'), path: arbPath }),
      fc.record({ kind: fc.constant('dom0 SET_PERMS' as const), path: arbPath, acl: arbAcl }),
    );

    const R = 1;
    const W = 2;
    const O = 8;
    /** perm_for_conn() for an unprivileged domain. */
    function rights(acl: string, domid: number): number {
      const es = acl.split(' ');
      const letter = (e: string): number => ({ n: 0, r: R, w: W, b: R | W })[e[0] as 'n'];
      if (Number(es[0].slice(1)) === domid) return R | W | O;
      for (const e of es.slice(1)) if (Number(e.slice(1)) === domid) return letter(e);
      return letter(es[0]);
    }

    /** Every node's ACL, as dom0 sees it. */
    function snapshot(h: Harness): Map<string, string> {
      const out = new Map<string, string>();
      const walk = (p: string): void => {
        out.set(p, h.dom0.getPerms(p));
        const kids = h.dom0.dir(p);
        if (kids === '') return;
        for (const k of kids.split(' ')) walk(p === '/' ? `/${k}` : `${p}/${k}`);
      };
      walk('/');
      return out;
    }
    const parent = (p: string): string => (p.lastIndexOf('/') <= 0 ? '/' : p.slice(0, p.lastIndexOf('/')));
    function nearest(acls: Map<string, string>, p: string): string {
      let q = parent(p);
      while (!acls.has(q)) q = parent(q);
      return q;
    }

    /** What C 4.17 answers a guest, from the ACLs before the request. */
    function expected(op: GuestOp, acls: Map<string, string>, values: Map<string, string>): string {
      const d = op.who;
      const acl = acls.get(op.path);
      const missing = (need: number, found: () => string): string =>
        rights(acls.get(nearest(acls, op.path))!, d) & need ? found() : 'EACCES';
      switch (op.kind) {
        case 'READ':
        case 'DIRECTORY':
        case 'GET_PERMS':
          if (acl === undefined) return missing(R, () => 'ENOENT');
          if (!(rights(acl, d) & R)) return 'EACCES';
          return op.kind === 'READ' ? values.get(op.path)! : op.kind === 'GET_PERMS' ? acl : '(list)';
        case 'WRITE':
        case 'MKDIR':
          if (acl === undefined) return missing(W, () => 'OK');
          return rights(acl, d) & W ? 'OK' : 'EACCES';
        case 'RM':
          if (acl === undefined) return missing(W, () => (acls.has(parent(op.path)) ? 'OK' : 'ENOENT'));
          return rights(acl, d) & W ? 'OK' : 'EACCES';
        case 'SET_PERMS': {
          if (acl === undefined) return missing(W | O, () => 'ENOENT');
          if ((rights(acl, d) & (W | O)) !== (W | O)) return 'EACCES';
          return op.acl.split(' ')[0].slice(1) === acl.split(' ')[0].slice(1) ? 'OK' : 'EPERM';
        }
      }
    }

    it('holds over random trees, ACLs and operations', () => {
      fc.assert(
        fc.property(arbTree, fc.array(arbOp, { minLength: 1, maxLength: 25 }), (tree, ops) => {
          const h = new Harness({ profile: 'c' });
          const guests = { 1: h.introduce(1), 2: h.introduce(2) } as const;
          assert.equal(h.dom0.mkdir('/p'), 'OK');
          for (const [path, acl] of tree) {
            h.dom0.write(path, `v${path}`);
            assert.equal(h.dom0.setPerms(path, acl), 'OK');
          }
          for (const g of Object.values(guests)) {
            assert.equal(g.watch('/', 'root'), 'OK');
            for (const [path] of tree) g.watch(path, `w${path}`);
          }
          h.drainAll();
          for (const op of ops) {
            const before = snapshot(h);
            const values = new Map([...before.keys()].map((p) => [p, h.dom0.read(p)]));
            let got: string;
            let want: string | undefined;
            if ('who' in op) {
              const g = guests[op.who];
              want = expected(op, before, values);
              got =
                op.kind === 'READ' ? g.read(op.path)
                  : op.kind === 'DIRECTORY' ? g.dir(op.path)
                    : op.kind === 'GET_PERMS' ? g.getPerms(op.path)
                      : op.kind === 'WRITE' ? g.write(op.path, `g${op.who}`)
                        : op.kind === 'MKDIR' ? g.mkdir(op.path)
                          : op.kind === 'RM' ? g.rm(op.path)
                            : g.setPerms(op.path, op.acl ?? '');
              if (want === '(list)') want = h.dom0.dir(op.path);
              assert.equal(got, want, `guest ${op.who} ${op.kind} ${op.path} ${op.acl ?? ''}`);
            } else if (op.kind === 'dom0 SET_PERMS') {
              if (before.has(op.path)) assert.equal(h.dom0.setPerms(op.path, op.acl), 'OK');
            } else if (op.kind === 'dom0 WRITE') {
              assert.equal(h.dom0.write(op.path, 'd0'), 'OK');
            } else {
              h.dom0.rm(op.path);
            }
            const after = snapshot(h);
            for (const [d, g] of Object.entries(guests)) {
              for (const [path] of g.events()) {
                const readable = [before, after].some((acls) =>
                  [path, parent(path)].some((p) => acls.has(p) && rights(acls.get(p)!, Number(d)) & R));
                assert.ok(readable, `guest ${d} got an event for ${path} it may not read (after ${JSON.stringify(op)})`);
              }
            }
          }
        }),
        property(150),
      );
    });
  });
});
