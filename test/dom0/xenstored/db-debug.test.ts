// oxenstored's SIGUSR1 debug dump (profile ocaml): the tree in db.debug, as Debian's oxenstored 4.17
// writes it. EXPECTED is the file the real daemon wrote (through ../shared/oracle) after the same
// four requests: descending child order, OCaml-escaped values and ACLs (NUL as \000).
import assert from 'node:assert/strict';
import { dbDebug, ocamlEscaped } from '../../../domains/dom0/xenstored/db-debug.ts';
import { Harness } from './harness.ts';

const bytes = (from: number, to: number): Buffer => Buffer.from(Array.from({ length: to - from }, (_, i) => from + i));

describe('xenstored (profile ocaml): the SIGUSR1 debug dump (db.debug)', () => {
  it('is what oxenstored 4.17 writes for the same tree', () => {
    const h = new Harness({ profile: 'ocaml' });
    assert.equal(h.dom0.write('/v1', bytes(1, 128)), 'OK');
    assert.equal(h.dom0.write('/v2', Buffer.concat([bytes(128, 256), Buffer.from([0])])), 'OK');
    assert.equal(h.dom0.write('/z/y/x', "'"), 'OK');
    assert.equal(h.dom0.setPerms('/z/y', 'b3 r0'), 'OK');
    const EXPECTED = [
    '/{n0}',
    '/z{n0}',
    'z/y{b3\\000r0}',
    'z/y/x{n0} = \'',
    '/v2{n0} = \\128\\129\\130\\131\\132\\133\\134\\135\\136\\137\\138\\139\\140\\141\\142\\143\\144\\145\\146\\147\\148\\149\\150\\151\\152\\153\\154\\155\\156\\157\\158\\159\\160\\161\\162\\163\\164\\165\\166\\167\\168\\169\\170\\171\\172\\173\\174\\175\\176\\177\\178\\179\\180\\181\\182\\183\\184\\185\\186\\187\\188\\189\\190\\191\\192\\193\\194\\195\\196\\197\\198\\199\\200\\201\\202\\203\\204\\205\\206\\207\\208\\209\\210\\211\\212\\213\\214\\215\\216\\217\\218\\219\\220\\221\\222\\223\\224\\225\\226\\227\\228\\229\\230\\231\\232\\233\\234\\235\\236\\237\\238\\239\\240\\241\\242\\243\\244\\245\\246\\247\\248\\249\\250\\251\\252\\253\\254\\255\\000',
    '/v1{n0} = \\001\\002\\003\\004\\005\\006\\007\\b\\t\\n\\011\\012\\r\\014\\015\\016\\017\\018\\019\\020\\021\\022\\023\\024\\025\\026\\027\\028\\029\\030\\031 !\\"#$%&\'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\\\]^_`abcdefghijklmnopqrstuvwxyz{|}~\\127',
    '/tool{n0}',
    'tool/xenstored{n0} = /usr/lib/xen-4.17/bin/oxenstored',
    '/local{n0}',
    '/@releaseDomain{n0}',
    '/@introduceDomain{n0}',
    ];
    assert.deepEqual(dbDebug(h.xs.store).split('\n'), [...EXPECTED, '']);
  });

  const ESCAPES: readonly [string, string][] = [
    ['plain', 'plain'], ['a"b', 'a\\"b'], ['a\\b', 'a\\\\b'], ['\n\t\r\b', '\\n\\t\\r\\b'],
    ['\0', '\\000'], ['\x7f', '\\127'], ['\xff', '\\255'], ["'", "'"],
  ];
  for (const [raw, want] of ESCAPES) {
    it(`escapes ${JSON.stringify(raw)} as OCaml's String.escaped: ${want}`, () => assert.equal(ocamlEscaped(raw), want));
  }
});
