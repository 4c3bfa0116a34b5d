// The xenstore state stream (docs/designs/xenstore-migration.md, xenstore_state.h): every record
// round-trips, the bytes are laid out as C's structs lay them out, and a hostile stream gives a
// clear XsStateError, never a crash.
import assert from 'node:assert/strict';
import {
  decodeState, encodeState, XsStateError, type XsStateRecord, XsStateType, XsStateWriter,
} from '../../../domains/dom0/xenstored/xenstore-state.ts';

const b = (...xs: number[]): Uint8Array => Uint8Array.from(xs);
const latin1 = (u: Uint8Array): string => Buffer.from(u).toString('latin1');

const RECORDS: { name: string; version: number; record: XsStateRecord }[] = [
  { name: 'GLOBAL_DATA', version: 1, record: { type: XsStateType.GLOBAL, socketFd: 7, evtchnFd: -1 } },
  {
    name: 'CONNECTION_DATA, ring with a target and pending bytes', version: 1,
    record: { type: XsStateType.CONN, connId: 3, spec: { kind: 'ring', domid: 5, tdomid: 2, evtchn: 17 }, inData: b(1, 2, 3), outRespLen: 2, outData: b(9, 8, 7, 6, 5) },
  },
  {
    name: 'CONNECTION_DATA, socket', version: 1,
    record: { type: XsStateType.CONN, connId: 1, spec: { kind: 'socket', fd: 12 }, inData: b(), outRespLen: 0, outData: b() },
  },
  {
    name: 'CONNECTION_DATA with unique-id', version: 2,
    record: { type: XsStateType.CONN, connId: 4, spec: { kind: 'ring', domid: 9, tdomid: 0x7ff4, evtchn: 3 }, inData: b(1), outRespLen: 0, outData: b(), uniqueId: 0x1234567890abcdefn },
  },
  { name: 'WATCH_DATA, relative path', version: 1, record: { type: XsStateType.WATCH, connId: 3, path: 'device', token: 'tok' } },
  { name: 'WATCH_DATA_EXTENDED', version: 2, record: { type: XsStateType.WATCH_EXT, connId: 3, path: '/local', token: '', depth: 2 } },
  { name: 'TRANSACTION_DATA', version: 1, record: { type: XsStateType.TA, connId: 3, txId: 42 } },
  {
    name: 'NODE_DATA with an ignored entry and NULs in the value', version: 1,
    record: {
      type: XsStateType.NODE, connId: 0, txId: 0, access: 0, path: '/local/domain/5', value: 'a\0b\xff',
      perms: [{ access: 'n', ignore: false, domid: 0 }, { access: 'r', ignore: false, domid: 5 }, { access: 'b', ignore: true, domid: 7 }],
    },
  },
  {
    name: 'NODE_DATA of a transaction', version: 1,
    record: { type: XsStateType.NODE, connId: 2, txId: 1, access: 3, path: '/x', value: '', perms: [{ access: 'w', ignore: false, domid: 1 }] },
  },
  {
    name: 'GLOBAL_QUOTA_DATA', version: 1,
    record: { type: XsStateType.GLB_QUOTA, domain: [{ name: 'nodes', value: 1000 }, { name: 'soft-memory', value: 0 }], global: [{ name: 'x-impl', value: 5 }] },
  },
  { name: 'DOMAIN_DATA v2 with features', version: 2, record: { type: XsStateType.DOMAIN, domid: 5, features: 3, quotas: [{ name: 'watches', value: 128 }] } },
  { name: 'DOMAIN_DATA v1 (no features)', version: 1, record: { type: XsStateType.DOMAIN, domid: 0, features: 0, quotas: [] } },
  { name: 'an unknown record type, kept as it came', version: 1, record: { type: 77, unknown: true, body: b(1, 2, 3, 4, 5, 6, 7, 8) } },
];

describe('xenstore state stream (xenstore-migration.md)', () => {
  describe('every record round-trips', () => {
    for (const { name, version, record } of RECORDS) {
      for (const bigEndian of [false, true]) {
        it(`${name}${bigEndian ? ' (big endian)' : ''}`, () => {
          const bytes = encodeState({ version, bigEndian, records: [record] });
          assert.equal(bytes.length % 8, 0, 'records are 8-byte multiples');
          const back = decodeState(bytes);
          assert.equal(back.version, version);
          assert.equal(back.bigEndian, bigEndian);
          assert.deepEqual(back.records, [record]);
        });
      }
    }
  });

  it('the header: "xenstore", the version big-endian, flags 0 for little endian; END closes it', () => {
    const bytes = encodeState({ version: 1, records: [] });
    assert.deepEqual([...bytes], [...Buffer.from('xenstore'), 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('NODE_DATA is laid out as struct xs_state_node: header, perms, path with NUL, value, zero padding', () => {
    const bytes = encodeState({ version: 1, records: [{
      type: XsStateType.NODE, connId: 0, txId: 0, access: 0, path: '/a', value: 'xy',
      perms: [{ access: 'b', ignore: true, domid: 0x102 }],
    }] });
    const rec = [...bytes.subarray(16, bytes.length - 8)];
    assert.deepEqual(rec, [
      5, 0, 0, 0, 32, 0, 0, 0, // type NODE, length 16 + 4 + 3 + 2 = 25 padded to 32
      0, 0, 0, 0, 0, 0, 0, 0, // conn-id, tx-id
      3, 0, 2, 0, 0, 0, 1, 0, // path-len (with NUL), value-len, access, perm-count
      0x62, 1, 2, 1, // 'b', ignore, domid 0x102
      0x2f, 0x61, 0, 0x78, 0x79, 0, 0, 0, // "/a\0" "xy", then padding
      0, 0, 0, 0, // (to the 8-byte multiple)
    ]);
  });

  it('CONNECTION_DATA is laid out as struct xs_state_connection (ring spec, lengths, data)', () => {
    const bytes = encodeState({ version: 1, records: [{
      type: XsStateType.CONN, connId: 1, spec: { kind: 'ring', domid: 3, tdomid: 0x7ff4, evtchn: 9 }, inData: b(0xaa), outRespLen: 0, outData: b(0xbb, 0xcc),
    }] });
    assert.deepEqual([...bytes.subarray(16, 16 + 8 + 24)], [
      2, 0, 0, 0, 32, 0, 0, 0, // type CONN, length 24 + 3 bytes of data, padded
      1, 0, 0, 0, 0, 0, 0, 0, // conn-id 1, conn-type ring, fields 0
      3, 0, 0xf4, 0x7f, 9, 0, 0, 0, // domid, tdomid DOMID_INVALID, evtchn
      1, 0, 0, 0, 2, 0, 0, 0, // in-data-len, out-resp-len, out-data-len
    ]);
    assert.deepEqual([...bytes.subarray(16 + 8 + 24, 16 + 8 + 27)], [0xaa, 0xbb, 0xcc]);
  });

  describe('a hostile stream is refused with a clear error', () => {
    const good = encodeState({ version: 1, records: RECORDS.filter((r) => r.version === 1).map((r) => r.record) });
    const le32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
    const hdr = [...Buffer.from('xenstore'), 0, 0, 0, 1, 0, 0, 0, 0];
    const cases: [string, Uint8Array, RegExp][] = [
      ['empty', b(), /shorter than its 16-byte header/],
      ['another ident', Buffer.concat([Buffer.from('xenstorX'), good.subarray(8)]), /not a xenstore state stream/],
      ['version 3', Uint8Array.from([...Buffer.from('xenstore'), 0, 0, 0, 3, 0, 0, 0, 0]), /unsupported state stream version 3/],
      ['reserved flags', Uint8Array.from([...Buffer.from('xenstore'), 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), /reserved flag bits/],
      ['no END', good.subarray(0, good.length - 8), /without an END record/],
      ['a length past the end', Uint8Array.from([...hdr, ...le32(5), ...le32(0xfffffff0)]), /runs past the stream's end/],
      ['a path without its NUL', Uint8Array.from([...hdr, ...le32(3), ...le32(16), ...le32(1), 2, 0, 1, 0, 0x61, 0x62, 0x63, 0, 0, 0, 0, 0, ...le32(0), ...le32(0)]), /wpath is not a string/],
      ['WATCH_DATA_EXTENDED in version 1', Uint8Array.from([...hdr, ...le32(8), ...le32(16), ...le32(1), 2, 0, 1, 0, 0xff, 0xff, 0, 0, 0x61, 0, 0, 0, ...le32(0), ...le32(0)]), /WATCH_DATA_EXTENDED in a version 1 stream/],
      ['perm count past the record', Uint8Array.from([...hdr, ...le32(5), ...le32(16), 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0xff, 0xff, ...le32(0), ...le32(0)]), /perm runs past the record's end/],
      ['a bad permission letter', Uint8Array.from([...hdr, ...le32(5), ...le32(24), 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0, 0x78, 0, 0, 0, 0x2f, 0, 0, 0, ...le32(0), ...le32(0)]), /has letter 0x78/],
      ['conn-id 0', Uint8Array.from([...hdr, ...le32(2), ...le32(24), ...le32(0), 1, 0, 0, 0, ...new Array(16).fill(0), ...le32(0), ...le32(0)]), /conn-id 0/],
      ['out-resp-len beyond out-data', Uint8Array.from([...hdr, ...le32(2), ...le32(24), ...le32(1), 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 1, 0, 0, 0, ...le32(0), ...le32(0)]), /out-resp-len 5 exceeds/],
    ];
    for (const [name, bytes, msg] of cases) {
      it(name, () => assert.throws(() => decodeState(bytes), (e: unknown) => e instanceof XsStateError && msg.test(e.message)));
    }

    it('any byte changed, or the stream cut anywhere: a state or an XsStateError, nothing else', () => {
      // Deterministic mutations of a stream holding every version-1 record.
      let seed = 12345;
      const rnd = (): number => {
        seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
        return (seed >>> 0) / 0x100000000;
      };
      for (let i = 0; i < 3000; i++) {
        const m = Uint8Array.from(good);
        const n = 1 + Math.floor(rnd() * 4);
        for (let j = 0; j < n; j++) m[Math.floor(rnd() * m.length)] = Math.floor(rnd() * 256);
        const cut = rnd() < 0.3 ? m.subarray(0, Math.floor(rnd() * m.length)) : m;
        try {
          decodeState(cut, { maxRecords: 1000 });
        } catch (e) {
          if (!(e instanceof XsStateError)) throw new Error(`mutation ${i}: ${String(e)}`);
        }
      }
    });
  });

  it('the writer refuses what the format cannot carry', () => {
    assert.throws(() => encodeState({ version: 1, records: [{ type: XsStateType.WATCH_EXT, connId: 1, path: '/', token: 't', depth: 1 }] }), /needs stream version 2/);
    assert.throws(() => encodeState({ version: 1, records: [{ type: XsStateType.NODE, connId: 0, txId: 0, access: 0, path: '/x', value: 'v'.repeat(70000), perms: [] }] }), /value-len 70000 does not fit 16 bits/);
    assert.throws(() => encodeState({ version: 1, records: [{ type: XsStateType.CONN, connId: 0, spec: { kind: 'socket', fd: 1 }, inData: b(), outRespLen: 0, outData: b() }] }), /non-zero/);
  });

  it('a node written under its parent (nodeUnder) is the same bytes as one written with its whole path, in either byte order', () => {
    const acl = [{ access: 'n', ignore: false, domid: 0 }, { access: 'r', ignore: true, domid: 300 }] as const;
    const other = [{ access: 'b', ignore: false, domid: 5 }] as const;
    for (const bigEndian of [false, true]) {
      const a = new XsStateWriter(1, bigEndian, 64);
      const root = a.node('/', '', acl);
      const local = a.nodeUnder(root, 'local', 'v', other);
      const long = a.nodeUnder(local, 'x'.repeat(40), 'y'.repeat(100), acl);
      a.nodeUnder(long, 'leaf', '\0\xff', other);
      const b = new XsStateWriter(1, bigEndian, 64);
      b.node('/', '', acl);
      b.node('/local', 'v', other);
      b.node(`/local/${'x'.repeat(40)}`, 'y'.repeat(100), acl);
      b.node(`/local/${'x'.repeat(40)}/leaf`, '\0\xff', other);
      assert.equal(latin1(a.finish()), latin1(b.finish()));
    }
    const w = new XsStateWriter(1);
    assert.throws(() => w.nodeUnder(w.node('/', '', acl), 'a\0b', '', acl), /node name holds a NUL/);
  });

  it('values are bytes: every byte value survives', () => {
    const value = latin1(Uint8Array.from({ length: 256 }, (_, i) => i));
    const bytes = encodeState({ version: 1, records: [{ type: XsStateType.NODE, connId: 0, txId: 0, access: 0, path: '/v', value, perms: [{ access: 'n', ignore: false, domid: 0 }] }] });
    const r = decodeState(bytes).records[0];
    assert.ok(!('unknown' in r) && r.type === XsStateType.NODE);
    assert.equal(r.value, value);
  });
});
