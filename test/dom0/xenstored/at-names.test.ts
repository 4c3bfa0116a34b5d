// oxenstored's Store.Path.of_string takes a path that starts with '@' as ONE name, whatever follows:
// '@x/y' is a child of the root named "@x/y", not y under @x, and '@a b' is a name too. Its events
// are reported as "/" ^ the name, which fire_single_watch parses again as an ordinary path.
// Answers recorded from Debian's 4.17.7 oxenstored (repros ocaml-at-names-*.txt).
import assert from 'node:assert/strict';
import { Harness, T, latin1, type Reply } from './harness.ts';
import { dumpState } from '../../../domains/dom0/xenstored/lu.ts';

const write = (r: { request: (t: number, p: string, tx?: number) => Reply }, path: string, value: string, tx = 0): Reply =>
  r.request(T.XS_WRITE, `${path}\0${value}`, tx);
/** The request's own messages: replies and errors by type and payload, events as 'event <path>'. */
const own = (r: Reply): string[] => r.own.map((m) =>
  m.type === T.XS_WATCH_EVENT ? `event ${latin1(m.payload).split('\0')[0]}` : `${m.type === T.XS_ERROR ? 'error' : 'reply'} ${latin1(m.payload).replace(/\0$/, '')}`);

/** DIRECTORY's names (dir() joins them with spaces, and '@a b' holds one). */
const names = (c: { request: (t: number, p: string) => Reply }, path: string): string[] =>
  latin1(c.request(T.XS_DIRECTORY, `${path}\0`).msg!.payload).split('\0').slice(0, -1);

describe('xenstored ocaml: a path starting with \'@\' is one root child', () => {
  it('"@x/y" is not y under @x; "/@x/y" is; names are listed as written, in order of their spelling', () => {
    const h = new Harness({ profile: 'ocaml' });
    const d0 = h.dom0;
    assert.equal(d0.write('@x/y', 'v1'), 'OK');
    assert.equal(d0.read('@x/y'), 'v1');
    assert.equal(d0.read('/@x/y'), 'ENOENT');
    assert.equal(d0.read('@x'), 'ENOENT');
    assert.equal(d0.write('/@x/y', 'v2'), 'OK');
    assert.equal(d0.dir('/@x'), 'y');
    assert.equal(d0.read('@x/y'), 'v1');
    for (const odd of ['@a b', '@x/', '@', '@x//z']) assert.equal(d0.write(odd, 'v'), 'OK', odd);
    assert.deepEqual(names(d0, '/'), ['@', '@a b', '@introduceDomain', '@releaseDomain', '@x', '@x/', '@x//z', '@x/y', 'local', 'tool']);
    assert.equal(d0.setPerms('@x/y', 'n0 r5'), 'OK');
    assert.equal(d0.getPerms('@x/y'), 'n0 r5');
    // RM of @x takes the nested /@x/y with it, not the root child @x/y.
    assert.equal(d0.rm('@x'), 'OK');
    assert.equal(d0.read('@x/y'), 'v1');
    assert.equal(d0.mkdir('@x/y/z'), 'OK');
    assert.equal(d0.rm('@x/y'), 'OK');
    assert.deepEqual(names(d0, '/'), ['@', '@a b', '@introduceDomain', '@releaseDomain', '@x/', '@x//z', '@x/y/z', 'local', 'tool']);
    const g = h.introduce(5, { home: false });
    assert.equal(g.read('@x/'), 'EACCES');
    assert.equal(g.write('@g/h', 'w'), 'EACCES');
  });

  it('events: a watch on / hears "/" ^ name when the nested path it spells is readable; one that does not parse is EIO after the reply', () => {
    const h = new Harness({ profile: 'ocaml' });
    const a = h.dom0;
    assert.equal(a.watch('/', 'top'), 'OK');
    a.events();
    // Nothing at /@x: no ACL found, nobody hears it (dom0 included). The '@x/y' watch never fires.
    assert.equal(h.socket('B').watch('@x/y', 'sp'), 'OK');
    assert.deepEqual(own(write(a, '@x/y', 'v1')), ['reply OK']);
    assert.deepEqual(own(write(a, '@x', 'v0')), ['reply OK', 'event /@x']);
    assert.deepEqual(own(write(a, '@x/y', 'v2')), ['reply OK', 'event /@x/y']);
    assert.deepEqual(own(write(a, '@a b', 'v3')), ['reply OK', 'error EIO']);
    assert.equal(a.read('@a b'), 'v3');
    assert.deepEqual(own(write(a, '@x//z', 'v6')), ['reply OK', 'error EIO']);
    assert.deepEqual(own(a.request(T.XS_RM, '@x//z\0')), ['reply OK', 'error EIO']);
    assert.deepEqual(own(a.request(T.XS_MKDIR, '@m/n\0')), ['reply OK']);
    // With no watch on / nothing raises.
    const b = h.socket('other');
    assert.deepEqual(own(write(b, '@c d', 'v')), ['reply OK', 'error EIO']);
    assert.equal(a.unwatch('/', 'top'), 'OK');
    assert.deepEqual(own(write(b, '@e f', 'v')), ['reply OK']);
  });

  it('a commit whose events raise is applied, answers EINVAL, and sends none of the events after that one', () => {
    const h = new Harness({ profile: 'ocaml' });
    const a = h.dom0;
    const b = h.socket('B');
    assert.equal(a.watch('/', 'top'), 'OK');
    a.events();
    const tx = b.txStart();
    assert.equal(b.write('@a b', 'v3', tx), 'OK');
    assert.equal(b.write('/tool/q', 'v', tx), 'OK');
    assert.equal(b.commit(tx), 'EINVAL');
    assert.equal(a.read('@a b'), 'v3');
    assert.equal(a.read('/tool/q'), 'v');
    assert.deepEqual(a.eventStrings(), []);
  });

  it('a state dump (a restarted daemon) keeps them: recorded under the name as written, read back as one root child', () => {
    const h = new Harness({ profile: 'ocaml' });
    const d0 = h.dom0;
    assert.equal(d0.write('@x/y', 'v'), 'OK');
    assert.equal(d0.setPerms('@x/y', 'n0 r5'), 'OK');
    assert.equal(d0.write('/@x/z', 'w'), 'OK');
    const io = { input: (): Uint8Array => new Uint8Array(0), output: () => ({ data: new Uint8Array(0), respLen: 0 }) };
    const h2 = new Harness({ profile: 'ocaml', restoreFrom: dumpState(h.xs, io) });
    assert.equal(h2.dom0.read('@x/y'), 'v');
    assert.equal(h2.dom0.getPerms('@x/y'), 'n0 r5');
    assert.equal(h2.dom0.dir('/@x'), 'z');
    assert.deepEqual(names(h2.dom0, '/').filter((n) => n.startsWith('@x')), ['@x', '@x/y']);
  });
});
