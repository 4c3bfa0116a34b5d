// The save/migration stream as Xen defines it (libxc stream v3, libxl stream v2, xl's save header):
// byte-exact layout, the record order xg_sr_save.c and libxl_stream_write.c produce, round trips
// through the restorer (a resent page replaces its first copy, a failover drops an unfinished
// checkpoint), every hostile input refused with the complaint Xen's restore or verify-stream-v2
// would make, and libxc's precopy loop against a guest that keeps dirtying memory.
import assert from 'node:assert/strict';
import { concat, REC_LENGTH_MAX, StreamError, frameRecord } from '../../domains/dom0/toolstack/migration/sr-record.ts';
import {
  DhdrType, LibxcRecType, PAGE_SIZE, REC_TYPE_OPTIONAL, XenDomctlPfinfo, decodeLibxcRecord, encodeDomainHeader, encodeImageHeader,
  encodeLibxcRecord, VCPU_GUEST_CONTEXT_SIZE, type LibxcRecord, type X86PvVcpuRecType,
} from '../../domains/dom0/toolstack/migration/libxc-stream.ts';
import { LibxlEmulator, LibxlRecType, encodeLibxlHeader, encodeLibxlRecord } from '../../domains/dom0/toolstack/migration/libxl-stream.ts';
import { SAVE_FILE_HEADER_SIZE, XL_OPTIONAL_DATA_MAX, encodeXlSaveHeader } from '../../domains/dom0/toolstack/migration/xl-save-header.ts';
import { SaveStreamReader, type SaveStreamEvent, type SaveStreamReaderOptions } from '../../domains/dom0/toolstack/migration/stream-reader.ts';
import { SaveStreamWriter } from '../../domains/dom0/toolstack/migration/stream-writer.ts';
import { saveImageChunks, type SaveImage } from '../../domains/dom0/toolstack/migration/save-image.ts';
import { readSaveImage } from '../../domains/dom0/toolstack/migration/restore-image.ts';
import { XlMigrateChannelError, XlMigrateMessage, checkXlMigrateMessage, xlMigrateMessageBytes, xlMigrateReportBytes } from '../../domains/dom0/toolstack/migration/xl-migrate-channel.ts';
import {
  PrecopyAborted, PrecopyPolicyDecision, SPP_MAX_ITERATIONS, sendDomainMemoryLive, simplePrecopyPolicy,
} from '../../domains/dom0/toolstack/migration/precopy.ts';
import { CONFIG, DirtyingGuest, EMULATOR, HVM_PARAMS, TSC, hvmImage, memoryHash, page, pageBytes, pages, pvImage, pvState } from '../helpers/save-image.ts';

const bytesOf = (image: SaveImage): Uint8Array => concat(saveImageChunks(image));
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const frame = (rec: LibxcRecord): Uint8Array => concat(encodeLibxcRecord(rec));
const rec = (type: number, body: Uint8Array = new Uint8Array(0)): Uint8Array => concat(frameRecord(type, [body]));

/** Every record of a stream as "layer:NAME", in order. */
function recordNames(bytes: Uint8Array, opts?: SaveStreamReaderOptions): string[] {
  const r = new SaveStreamReader(opts);
  const names = r.push(bytes).flatMap((e: SaveStreamEvent) => {
    if (!('record' in e)) return [];
    if (e.record.type === 'optional') return [`${e.layer}:optional`];
    return [`${e.layer}:${(e.layer === 'libxl' ? LibxlRecType : LibxcRecType)[e.record.type].slice('REC_TYPE_'.length)}`];
  });
  assert.equal(r.end(), 'complete');
  return names;
}

/** Collapses runs of PAGE_DATA into "PAGE_DATAxN". */
const squash = (names: string[]): string[] => names.reduce<string[]>((out, n) => {
  const last = out[out.length - 1];
  if (n === 'libxc:PAGE_DATA' && last?.startsWith('libxc:PAGE_DATA')) out[out.length - 1] = `libxc:PAGE_DATAx${Number(last.split('x').pop() ?? 1) + 1}`;
  else out.push(n === 'libxc:PAGE_DATA' ? 'libxc:PAGE_DATAx1' : n);
  return out;
}, []);

function refused(fn: () => unknown, layer: string, reason: RegExp): StreamError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert(err instanceof StreamError, `expected a StreamError, got ${err === undefined ? 'acceptance' : String(err)}`);
  assert.equal(err.layer, layer, err.message);
  assert.match(err.reason, reason);
  return err;
}

const readAll = (bytes: Uint8Array, opts?: SaveStreamReaderOptions) => readSaveImage(bytes, opts);

// A minimal valid PV libxc stream, record by record, to break one piece at a time.
const PV_HEADERS = (): Uint8Array[] => [encodeImageHeader(), encodeDomainHeader({ type: DhdrType.DHDR_TYPE_X86_PV, pageShift: 12, xenMajor: 4, xenMinor: 17 })];
const PV_INFO = () => frame({ type: LibxcRecType.REC_TYPE_X86_PV_INFO, guestWidth: 8, ptLevels: 4 });
const SDE = () => frame({ type: LibxcRecType.REC_TYPE_STATIC_DATA_END });
const P2M = () => frame({ type: LibxcRecType.REC_TYPE_X86_PV_P2M_FRAMES, startPfn: 0, endPfn: 7, p2mPfns: [7n] });
const PAGES = () => frame({ type: LibxcRecType.REC_TYPE_PAGE_DATA, pfns: [{ pfn: 1, type: 0 }], pages: [pageBytes(1)] });
const VCPU0 = () => frame({ type: LibxcRecType.REC_TYPE_X86_PV_VCPU_BASIC, vcpuId: 0, context: new Uint8Array(VCPU_GUEST_CONTEXT_SIZE[8]) });
const END = () => frame({ type: LibxcRecType.REC_TYPE_END });
const pvLibxc = (...records: Uint8Array[]): Uint8Array => concat([...PV_HEADERS(), ...records]);
const PV_OK = (): Uint8Array[] => [PV_INFO(), SDE(), P2M(), PAGES(), VCPU0(), END()];

describe('migration stream: layout, byte for byte', () => {
  it('xl save header: magic, byte order 0x01020304, STREAMv2|JSON, optional data = u32 length + config with its NUL', () => {
    const h = encodeXlSaveHeader(CONFIG);
    assert.equal(Buffer.from(h.subarray(0, 32)).toString('latin1'), 'Xen saved domain, xl format\n \0 \r');
    const v = new DataView(h.buffer, h.byteOffset);
    assert.equal(hex(h.subarray(32, 36)), '04030201');
    assert.equal(v.getUint32(36, true), 0b11);
    assert.equal(v.getUint32(40, true), 0);
    assert.equal(v.getUint32(44, true), 4 + CONFIG.length + 1);
    assert.equal(v.getUint32(48, true), CONFIG.length + 1);
    assert.equal(Buffer.from(h.subarray(52)).toString('latin1'), `${CONFIG}\0`);
    assert.equal(v.getUint32(36 + 0, true) & 1, 1);
    assert.equal(new DataView(encodeXlSaveHeader(undefined).buffer).getUint32(36, true), 0b10, 'no config: no JSON flag');
  });

  it('libxl header is big-endian "LibxlFmt", version 2; LIBXC_CONTEXT is an empty record', () => {
    assert.equal(hex(encodeLibxlHeader()), '4c6962786c466d74' + '00000002' + '00000000');
    assert.equal(hex(concat(encodeLibxlRecord({ type: LibxlRecType.REC_TYPE_LIBXC_CONTEXT }))), '01000000' + '00000000');
  });

  it('libxc image header is big-endian (marker, "XENF", version 3); the domain header little-endian', () => {
    assert.equal(hex(encodeImageHeader()), 'ffffffffffffffff' + '58454e46' + '00000003' + '0000' + '0000' + '00000000');
    assert.equal(hex(encodeDomainHeader({ type: DhdrType.DHDR_TYPE_X86_HVM, pageShift: 12, xenMajor: 4, xenMinor: 17 })),
      '02000000' + '0c00' + '0000' + '04000000' + '11000000');
  });

  it('PAGE_DATA: count, reserved, pfn words with the type in bits 63-60, then pages only for types with data', () => {
    const b = frame({ type: LibxcRecType.REC_TYPE_PAGE_DATA, pfns: [{ pfn: 0x12345, type: XenDomctlPfinfo.XEN_DOMCTL_PFINFO_L1TAB | XenDomctlPfinfo.XEN_DOMCTL_PFINFO_LPINTAB }, { pfn: 0x9, type: XenDomctlPfinfo.XEN_DOMCTL_PFINFO_XTAB }], pages: [pageBytes(1)] });
    assert.equal(hex(b.subarray(0, 32)), '01000000' + (8 + 16 + PAGE_SIZE).toString(16).padStart(4, '0').match(/../g)!.reverse().join('') + '0000'
      + '02000000' + '00000000' + '4523010000000090' + '09000000000000f0');
    assert.equal(b.length, 8 + 8 + 16 + PAGE_SIZE, 'already 8-aligned: no padding');
    assert.deepEqual(b.subarray(32), pageBytes(1));
  });

  it('records are padded with zeros to 8 bytes; TSC_INFO and HVM_PARAMS have Xen\'s struct sizes', () => {
    const emu = concat(encodeLibxlRecord({ type: LibxlRecType.REC_TYPE_EMULATOR_CONTEXT, emulatorId: LibxlEmulator.EMULATOR_QEMU_UPSTREAM, index: 0, context: new Uint8Array([1, 2, 3, 4, 5]) }));
    assert.equal(hex(emu), '03000000' + '0d000000' + '02000000' + '00000000' + '0102030405' + '000000');
    assert.equal(frame({ type: LibxcRecType.REC_TYPE_X86_TSC_INFO, ...TSC }).length, 8 + 24);
    assert.equal(frame({ type: LibxcRecType.REC_TYPE_HVM_PARAMS, params: HVM_PARAMS }).length, 8 + 8 + 16 * HVM_PARAMS.length);
    assert.equal(frame({ type: LibxcRecType.REC_TYPE_X86_PV_INFO, guestWidth: 8, ptLevels: 4 }).length, 16);
  });

  it('xl save of a PV guest: records in xg_sr_save.c\'s order, vCPU records per online vCPU, empty blobs elided', () => {
    assert.deepEqual(squash(recordNames(bytesOf(pvImage(1500)))), [
      'libxl:LIBXC_CONTEXT',
      'libxc:X86_PV_INFO', 'libxc:X86_CPUID_POLICY', 'libxc:X86_MSR_POLICY', 'libxc:STATIC_DATA_END', 'libxc:X86_PV_P2M_FRAMES',
      'libxc:PAGE_DATAx2', 'libxc:X86_TSC_INFO', 'libxc:SHARED_INFO',
      'libxc:X86_PV_VCPU_BASIC', 'libxc:X86_PV_VCPU_EXTENDED', 'libxc:X86_PV_VCPU_XSAVE', 'libxc:X86_PV_VCPU_MSRS',
      'libxc:X86_PV_VCPU_BASIC', 'libxc:X86_PV_VCPU_EXTENDED', 'libxc:X86_PV_VCPU_MSRS', // vcpu1 has no xsave state
      'libxc:END', 'libxl:END',
    ]);
  });

  it('xl save of an HVM guest: TSC, HVM_CONTEXT, HVM_PARAMS (as x86_hvm_end_of_checkpoint writes them), then QEMU\'s records', () => {
    const image = hvmImage(100);
    const withKeys: SaveImage = { ...image, checkpoints: [{ ...image.checkpoints[0], emulator: { ...EMULATOR, xenstore: [['physmap/1/size', '8']] } }] };
    assert.deepEqual(squash(recordNames(bytesOf(withKeys))), [
      'libxl:LIBXC_CONTEXT', 'libxc:X86_CPUID_POLICY', 'libxc:STATIC_DATA_END', 'libxc:PAGE_DATAx1',
      'libxc:X86_TSC_INFO', 'libxc:HVM_CONTEXT', 'libxc:HVM_PARAMS', 'libxc:END',
      'libxl:EMULATOR_XENSTORE_DATA', 'libxl:EMULATOR_CONTEXT', 'libxl:END',
    ]);
  });

  it('Remus: CHECKPOINT hands over to libxl, whose checkpoint records end in CHECKPOINT_END', () => {
    const image = hvmImage(10);
    assert.deepEqual(squash(recordNames(bytesOf({ ...image, streamType: 'remus', checkpoints: [image.checkpoints[0], { ...image.checkpoints[0], rounds: [[page(2, 1)]] }] }), { streamType: 'remus' })), [
      'libxl:LIBXC_CONTEXT', 'libxc:X86_CPUID_POLICY', 'libxc:STATIC_DATA_END', 'libxc:PAGE_DATAx1',
      'libxc:X86_TSC_INFO', 'libxc:HVM_CONTEXT', 'libxc:HVM_PARAMS', 'libxc:CHECKPOINT', 'libxl:EMULATOR_CONTEXT', 'libxl:CHECKPOINT_END',
      'libxc:PAGE_DATAx1', 'libxc:X86_TSC_INFO', 'libxc:HVM_CONTEXT', 'libxc:HVM_PARAMS', 'libxc:CHECKPOINT', 'libxl:EMULATOR_CONTEXT', 'libxl:CHECKPOINT_END',
      'libxc:END', 'libxl:EMULATOR_CONTEXT', 'libxl:END',
    ]);
  });

  it('xl migrate channel: the banner without its NUL, the other messages with it, the report then one status byte', () => {
    assert.equal(Buffer.from(xlMigrateMessageBytes(XlMigrateMessage.migrate_receiver_banner)).toString('latin1'), 'xl migration receiver ready, send binary domain data.\n');
    assert.equal(Buffer.from(xlMigrateMessageBytes(XlMigrateMessage.migrate_receiver_ready)).toString('latin1'), 'domain received, ready to unpause\0');
    assert.equal(Buffer.from(xlMigrateMessageBytes(XlMigrateMessage.migrate_permission_to_go)).toString('latin1'), 'domain is yours, you are cleared to unpause\0');
    assert.equal(Buffer.from(xlMigrateReportBytes(1)).toString('latin1'), 'my copy unpause results are as follows\0\x01');
    checkXlMigrateMessage(XlMigrateMessage.migrate_receiver_ready, xlMigrateMessageBytes(XlMigrateMessage.migrate_receiver_ready));
    assert.throws(() => checkXlMigrateMessage(XlMigrateMessage.migrate_permission_to_go, xlMigrateMessageBytes(XlMigrateMessage.migrate_receiver_ready)),
      (e: Error) => e instanceof XlMigrateChannelError && e.message === 'migration stream contained unexpected data instead of GO message');
  });

  it('the writer asserts its phases: no pages before start(), no END before the suspended state', () => {
    const w = new SaveStreamWriter(() => {}, pvImage(1));
    assert.throws(() => w.sendPages([page(0)]), /AssertionError|expected/i);
    w.start();
    assert.throws(() => w.finish(), /finish\(\) in phase memory/);
    assert.throws(() => w.sendPages([{ pfn: 1 }]), /page data missing/);
  });
});

describe('migration stream: round trip through the restorer', () => {
  it('PV: config, static data, every page, shared_info, TSC and each vCPU\'s four blobs come back', () => {
    const image = pvImage(1500);
    const img = readAll(bytesOf(image));
    assert.equal(img.config, CONFIG);
    assert.equal(img.domainHeader?.type, DhdrType.DHDR_TYPE_X86_PV);
    assert.deepEqual(img.pvInfo, image.pvInfo);
    assert.deepEqual(img.p2mFrames, image.p2mFrames);
    assert.deepEqual(img.cpuidPolicy, image.cpuidPolicy);
    assert.deepEqual(img.msrPolicy, image.msrPolicy);
    assert.equal(memoryHash(img.pages), memoryHash(new Map(pages(0, 1500).map((p) => [p.pfn, p.bytes!]))));
    const st = pvState();
    assert.equal(st.type, DhdrType.DHDR_TYPE_X86_PV);
    assert.deepEqual(img.sharedInfo, st.sharedInfo);
    assert.deepEqual(img.tsc, TSC);
    for (const v of st.vcpus) {
      const got = img.vcpus.get(v.vcpuId)!;
      assert.deepEqual([got.basic, got.extended, got.msrs], [v.basic, v.extended, v.msrs]);
      assert.deepEqual(got.xsave, v.xsave!.length ? v.xsave : undefined);
    }
    assert.deepEqual({ ...img.stats, verifyMismatches: img.stats.verifyMismatches.length }, { pageDataRecords: 2, pagesReceived: 1500, pagesResent: 0, checkpoints: 0, optionalRecordsSkipped: 0, verifyMismatches: 0 });
  });

  it('HVM: HVM_CONTEXT, HVM_PARAMS, QEMU\'s context and its xenstore keys come back', () => {
    const base = hvmImage(50);
    const xs = [['physmap/f0000000/start_addr', 'f0000000'], ['physmap/f0000000/size', '800000']] as const;
    const img = readAll(bytesOf({ ...base, checkpoints: [{ ...base.checkpoints[0], emulator: { ...EMULATOR, xenstore: xs } }] }));
    assert.deepEqual(img.hvmParams, HVM_PARAMS);
    assert.equal(img.hvmContext?.length, 1234);
    assert.deepEqual(img.emulatorContext, EMULATOR.context);
    assert.deepEqual(img.emulatorXenstore, xs);
    assert.equal(img.pages.size, 50);
  });

  it('a migration: a page resent in a later round replaces its first copy; XTAB removes a page', () => {
    const base = pvImage(3000);
    const rounds = [pages(0, 3000), [page(3, 1), page(2999, 1)], [page(3, 2), { pfn: 10, type: XenDomctlPfinfo.XEN_DOMCTL_PFINFO_XTAB }]];
    const img = readAll(bytesOf({ ...base, checkpoints: [{ ...base.checkpoints[0], rounds }] }));
    assert.deepEqual(img.pages.get(3), pageBytes(3, 2));
    assert.deepEqual(img.pages.get(2999), pageBytes(2999, 1));
    assert.deepEqual(img.pages.get(4), pageBytes(4, 0));
    assert.equal(img.pages.has(10), false);
    assert.equal(img.pageTypes.get(10), XenDomctlPfinfo.XEN_DOMCTL_PFINFO_XTAB);
    assert.equal(img.stats.pageDataRecords, 3 + 1 + 1);
    assert.equal(img.stats.pagesResent, 4);
  });

  it('a pfn far above the guest (2^51, the stream allows 52 bits) is kept without sizing anything by it', () => {
    const base = pvImage(4);
    const far = 2 ** 51;
    const img = readAll(bytesOf({ ...base, checkpoints: [{ ...base.checkpoints[0], rounds: [pages(0, 4), [page(far), page(2, 1)], [page(far, 1)]] }] }));
    assert.deepEqual(img.pages.get(far), pageBytes(far, 1));
    assert.deepEqual([...img.pageTypes.keys()], [0, 1, 2, 3, far], 'ascending');
    assert.equal(img.pageTypes.get(far), XenDomctlPfinfo.XEN_DOMCTL_PFINFO_NOTAB);
    assert.equal(img.pageTypes.get(far + 1), undefined);
    assert.equal(img.stats.pagesResent, 2);
  });

  it('VERIFY: the resent pages are compared, not applied, and differences are listed', () => {
    const base = pvImage(20);
    const img = readAll(bytesOf({ ...base, verify: [...pages(0, 19), page(19, 9)] }));
    assert.deepEqual(img.stats.verifyMismatches, [19]);
    assert.deepEqual(img.pages.get(19), pageBytes(19, 0));
  });

  it('Remus: a failover keeps the last whole checkpoint and drops the one cut short', () => {
    const base = hvmImage(8);
    const cp1 = base.checkpoints[0];
    const cp2 = { ...cp1, rounds: [[page(2, 1)]], emulator: { context: new Uint8Array([9]) } };
    const full = bytesOf({ ...base, streamType: 'remus', checkpoints: [cp1, cp2], ending: 'failover' });
    const both = readAll(full, { streamType: 'remus' });
    assert.equal(both.end, 'failover');
    assert.equal(both.stats.checkpoints, 2);
    assert.deepEqual(both.pages.get(2), pageBytes(2, 1));
    assert.deepEqual(both.emulatorContext, new Uint8Array([9]));
    // The primary dies inside checkpoint 2 (after its page, and again mid-record): checkpoint 1 stands.
    const oneCheckpoint = bytesOf({ ...base, streamType: 'remus', checkpoints: [cp1], ending: 'failover' });
    for (const cut of [oneCheckpoint.length + 8 + 16 + PAGE_SIZE, oneCheckpoint.length + 100, full.length - 3]) {
      const img = readAll(full.subarray(0, cut), { streamType: 'remus' });
      assert.equal(img.end, 'failover');
      assert.deepEqual(img.pages.get(2), pageBytes(2, 0), `cut at ${cut}`);
      assert.deepEqual(img.emulatorContext, EMULATOR.context, `cut at ${cut}`);
    }
    // Before the first checkpoint is whole there is nothing to fail over to.
    refused(() => readAll(full.subarray(0, oneCheckpoint.length - 9), { streamType: 'remus' }), 'libxl', /Stream truncated/);
  });

  it('the stream may arrive in any chunks: same records, same image', () => {
    const bytes = bytesOf(hvmImage(1100));
    const whole = readAll(bytes);
    for (let seed = 1; seed <= 5; seed++) {
      let x = seed;
      const r = new SaveStreamReader();
      const events: SaveStreamEvent[] = [];
      for (let at = 0; at < bytes.length;) {
        x = (x * 1103515245 + 12345) % 2 ** 31;
        const n = 1 + (x % (seed * 2000));
        events.push(...r.push(bytes.subarray(at, at + n)));
        at += n;
      }
      assert.equal(r.end(), 'complete');
      assert.equal(events.length, 4 + 8 + 2, `seed ${seed}`); // xl, libxl hdr, libxc hdrs + 8 libxc records... + emulator, END
      const pagesSeen = events.flatMap((e) => (e.layer === 'libxc' && 'record' in e && e.record.type === LibxcRecType.REC_TYPE_PAGE_DATA ? e.record.pages : []));
      assert.equal(memoryHash(new Map(pagesSeen.map((p, i) => [i, p]))), memoryHash(new Map([...whole.pages.values()].map((p, i) => [i, p]))));
    }
  });

  it('an unknown optional libxc record (bit 31) is skipped; body codecs are inverse of each other', () => {
    const opt = frame({ type: 'optional', recType: REC_TYPE_OPTIONAL | 0x13, body: new Uint8Array([1, 2, 3]) });
    const ok = PV_OK();
    const img = readAll(pvLibxc(...ok.slice(0, 3), opt, ...ok.slice(3)), { format: 'libxc' });
    assert.equal(img.stats.optionalRecordsSkipped, 1);
    const samples: LibxcRecord[] = [
      { type: LibxcRecType.REC_TYPE_X86_PV_P2M_FRAMES, startPfn: 0, endPfn: 1023, p2mPfns: [5n, 0xfffffffffn] },
      { type: LibxcRecType.REC_TYPE_CHECKPOINT_DIRTY_PFN_LIST, pfns: [1n, 2n, 0x123456789n] },
      { type: LibxcRecType.REC_TYPE_X86_MSR_POLICY, msrs: [{ idx: 0x10a, flags: 0, val: 0xdeadbeefcafen }] },
      { type: LibxcRecType.REC_TYPE_TOOLSTACK, data: new Uint8Array([7, 7, 7]) },
      { type: LibxcRecType.REC_TYPE_X86_TSC_INFO, ...TSC },
    ];
    for (const s of samples) {
      const b = frame(s);
      const len = new DataView(b.buffer).getUint32(4, true);
      assert.deepEqual(decodeLibxcRecord(s.type as number, b.subarray(8, 8 + len), 3), s);
    }
  });
});

describe('migration stream: hostile input is refused with a clear error', () => {
  const xlBytes = () => bytesOf(pvImage(4));
  const xlHdrLen = SAVE_FILE_HEADER_SIZE + 4 + CONFIG.length + 1;
  const libxcAt = xlHdrLen + 16 + 8;
  const patch = (b: Uint8Array, at: number, ...bytes: number[]): Uint8Array => {
    const c = b.slice();
    c.set(bytes, at);
    return c;
  };
  const u32 = (n: number): number[] => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24];

  it('every truncation of a save file: "Stream truncated", in the layer it cut', () => {
    const b = xlBytes();
    const layers = new Set<string>();
    for (let n = 0; n < b.length; n += n < 200 ? 1 : 61) {
      layers.add(refused(() => readAll(b.subarray(0, n)), n < xlHdrLen ? 'xl' : n < libxcAt ? 'libxl' : n < b.length - 8 ? 'libxc' : 'libxl', /Stream truncated/).layer);
    }
    assert.deepEqual([...layers].sort(), ['libxc', 'libxl', 'xl']);
    refused(() => readAll(b.subarray(0, b.length - 1)), 'libxl', /Stream truncated: 7 bytes of record header/);
  });

  it('xl header: wrong magic, wrong byte order, unknown mandatory flag, no STREAMv2, oversized or inconsistent optional data', () => {
    const b = xlBytes();
    refused(() => readAll(patch(b, 0, 0x58 ^ 1)), 'xl', /wrong magic number/);
    refused(() => readAll(patch(b, 32, ...[1, 2, 3, 4])), 'xl', /wrong byte order/);
    refused(() => readAll(patch(b, 36, ...u32(0b111))), 'xl', /mandatory flag\(s\) 0x4 which are not supported/);
    refused(() => readAll(patch(b, 36, ...u32(0b01))), 'xl', /legacy/);
    refused(() => readAll(patch(b, 44, ...u32(XL_OPTIONAL_DATA_MAX + 1))), 'xl', /optional data length 16777217 exceeds/);
    refused(() => readAll(patch(b, 48, ...u32(CONFIG.length + 2))), 'xl', /Savefile truncated\./);
  });

  it('libxl: bad ident, version, big-endian; END before LIBXC_CONTEXT; unknown records even when optional; trailing bytes', () => {
    const b = xlBytes();
    refused(() => readAll(patch(b, xlHdrLen, 0x4d)), 'libxl', /Invalid ident/);
    refused(() => readAll(patch(b, xlHdrLen + 11, 3)), 'libxl', /Unexpected stream version: expected 2, got 3/);
    refused(() => readAll(patch(b, xlHdrLen + 15, 1)), 'libxl', /Unable to handle big endian streams/);
    const libxl = (...records: Uint8Array[]) => concat([encodeLibxlHeader(), ...records]);
    refused(() => readAll(libxl(rec(LibxlRecType.REC_TYPE_END)), { format: 'libxl' }), 'libxl', /END record before the libxc stream ended/);
    refused(() => readAll(libxl(rec(6)), { format: 'libxl' }), 'libxl', /Unrecognised record 0x00000006/);
    refused(() => readAll(libxl(rec(REC_TYPE_OPTIONAL | 6)), { format: 'libxl' }), 'libxl', /Unrecognised record 0x80000006/);
    refused(() => readAll(libxl(rec(LibxlRecType.REC_TYPE_CHECKPOINT_END)), { format: 'libxl' }), 'libxl', /Unexpected CHECKPOINT_END/);
    refused(() => readAll(libxl(rec(LibxlRecType.REC_TYPE_LIBXC_CONTEXT, new Uint8Array(1))), { format: 'libxl' }), 'libxl', /LIBXC_CONTEXT record with non-zero length 1/);
    refused(() => readAll(concat([b, new Uint8Array(8)])), 'xl', /8 bytes of trailing data after END/);
  });

  it('libxl: emulator records for a PV guest, a second LIBXC_CONTEXT, a malformed xenstore key list', () => {
    const b = xlBytes();
    const beforeEnd = b.subarray(0, b.length - 8);
    const emu = concat(encodeLibxlRecord({ type: LibxlRecType.REC_TYPE_EMULATOR_CONTEXT, emulatorId: LibxlEmulator.EMULATOR_QEMU_UPSTREAM, index: 0, context: new Uint8Array(4) }));
    refused(() => readAll(concat([beforeEnd, emu])), 'libxl', /EMULATOR_CONTEXT record when none was expected/);
    refused(() => readAll(concat([beforeEnd, rec(LibxlRecType.REC_TYPE_LIBXC_CONTEXT)])), 'libxl', /Second LIBXC_CONTEXT/);
    const h = hvmImage(2);
    const hb = bytesOf(h);
    const xs = (data: string) => rec(LibxlRecType.REC_TYPE_EMULATOR_XENSTORE_DATA, concat([new Uint8Array([2, 0, 0, 0, 0, 0, 0, 0]), new TextEncoder().encode(data)]));
    const hBeforeEnd = hb.subarray(0, hb.length - 8);
    refused(() => readAll(concat([hBeforeEnd, xs('a\0b')])), 'libxl', /not NUL terminated/);
    refused(() => readAll(concat([hBeforeEnd, xs('a\0b\0c\0')])), 'libxl', /even number of strings, got 3/);
    refused(() => readAll(concat([hBeforeEnd, xs('/abs\0v\0')])), 'libxl', /bad key "\/abs"/);
    refused(() => readAll(concat([hBeforeEnd, rec(LibxlRecType.REC_TYPE_EMULATOR_CONTEXT, new Uint8Array([7, 0, 0, 0, 0, 0, 0, 0]))])), 'libxl', /Unrecognised emulator id 0x7/);
  });

  it('libxc headers: bad marker, id, version, big-endian or reserved options, unknown domain type (no ARM in Xen), page size', () => {
    const ok = PV_OK();
    const at = (i: number, ...v: number[]) => patch(pvLibxc(...ok), i, ...v);
    const rd = (b: Uint8Array) => readAll(b, { format: 'libxc' });
    refused(() => rd(at(0, 0xfe)), 'libxc', /Invalid marker: Got 0xfeffffffffffffff/);
    refused(() => rd(at(8, 0x59)), 'libxc', /Invalid ID: Expected 0x58454e46, Got 0x59454e46/);
    refused(() => rd(at(15, 4)), 'libxc', /Invalid Version: Expected 2 <= ver <= 3, Got 4/);
    refused(() => rd(at(17, 1)), 'libxc', /Unable to handle big endian streams/);
    refused(() => rd(at(17, 2)), 'libxc', /Reserved bits set in image options field: 0x2/);
    refused(() => rd(at(20, 1)), 'libxc', /Reserved bits set in image header/);
    refused(() => rd(at(24, 3)), 'libxc', /Unrecognised domain type 0x3/);
    refused(() => rd(at(28, 16)), 'libxc', /Invalid page size 65536/);
  });

  it('a record longer than REC_LENGTH_MAX is refused from its header alone, before any body is awaited', () => {
    const r = new SaveStreamReader({ format: 'libxc' });
    r.push(concat([...PV_HEADERS(), PV_INFO()]));
    const hdr = new Uint8Array(8);
    new DataView(hdr.buffer).setUint32(0, LibxcRecType.REC_TYPE_PAGE_DATA, true);
    new DataView(hdr.buffer).setUint32(4, REC_LENGTH_MAX + 1, true);
    refused(() => r.push(hdr), 'libxc', /length 0x8000001 exceeds max \(0x8000000\)/);
    refused(() => r.push(new Uint8Array(8)), 'libxc', /exceeds max/); // the reader stays failed
  });

  it('a length past the end of the stream: truncated at end, having held only the bytes received', () => {
    const r = new SaveStreamReader({ format: 'libxc' });
    const hdr = new Uint8Array(8);
    new DataView(hdr.buffer).setUint32(0, LibxcRecType.REC_TYPE_HVM_CONTEXT, true);
    new DataView(hdr.buffer).setUint32(4, 100 * 1024 * 1024, true);
    assert.deepEqual(r.push(concat([encodeImageHeader(), encodeDomainHeader({ type: DhdrType.DHDR_TYPE_X86_HVM, pageShift: 12, xenMajor: 4, xenMinor: 17 }), SDE(), hdr, new Uint8Array(10)])).length, 2);
    refused(() => r.end(), 'libxc', /Stream truncated: 10 bytes of HVM_CONTEXT record body \(104857600 bytes\)/);
  });

  it('non-zero padding and non-zero reserved fields (verify-stream-v2 refuses them; Xen ignores them)', () => {
    const tsc = frame({ type: LibxcRecType.REC_TYPE_X86_TSC_INFO, ...TSC });
    const emu = concat(encodeLibxlRecord({ type: LibxlRecType.REC_TYPE_EMULATOR_CONTEXT, emulatorId: 2, index: 0, context: new Uint8Array(5) }));
    const hb = bytesOf(hvmImage(2));
    const qemuRecord = 8 + 8 + EMULATOR.context.length;
    const [head, end] = [hb.subarray(0, hb.length - 8 - qemuRecord), hb.subarray(hb.length - 8)];
    assert.equal(readAll(concat([head, emu, end])).emulatorContext?.length, 5);
    refused(() => readAll(concat([head, patch(emu, emu.length - 1, 1), end])), 'libxl', /EMULATOR_CONTEXT record: padding containing non0 bytes found/);
    const ok = PV_OK();
    refused(() => readAll(pvLibxc(...ok.slice(0, 3), patch(tsc, 8 + 20, 1), ...ok.slice(3)), { format: 'libxc' }), 'libxc', /Reserved bits set in X86_TSC_INFO/);
    refused(() => readAll(pvLibxc(patch(PV_INFO(), 10, 1), ...ok.slice(1)), { format: 'libxc' }), 'libxc', /Reserved bits set in X86_PV_INFO/);
  });

  it('unknown mandatory records, the deprecated TOOLSTACK and the back channel\'s dirty pfn list are not handled', () => {
    const ok = PV_OK();
    const rd = (r: Uint8Array) => readAll(pvLibxc(...ok.slice(0, 3), r, ...ok.slice(3)), { format: 'libxc' });
    refused(() => rd(rec(0x13)), 'libxc', /Mandatory record 0x13 \(Reserved\) not handled/);
    refused(() => rd(rec(LibxcRecType.REC_TYPE_TOOLSTACK, new Uint8Array(3))), 'libxc', /Mandatory record 0xb \(TOOLSTACK\) not handled/);
    refused(() => rd(rec(LibxcRecType.REC_TYPE_CHECKPOINT_DIRTY_PFN_LIST, new Uint8Array(8))), 'libxc', /0xf \(CHECKPOINT_DIRTY_PFN_LIST\) not handled/);
    refused(() => rd(frame({ type: LibxcRecType.REC_TYPE_HVM_CONTEXT, context: new Uint8Array(4) })), 'libxc', /Mandatory record 0x9 \(HVM_CONTEXT\) not handled for an x86 PV domain/);
  });

  it('PV records: width/levels combination, p2m frame count, vCPU blob sizes by guest width, vCPU ids beyond the domain', () => {
    const [info, sde, p2m, pg, vcpu0, end] = PV_OK();
    const rd = (opts: SaveStreamReaderOptions, ...r: Uint8Array[]) => readAll(pvLibxc(...r), { format: 'libxc', ...opts });
    const b = concat(encodeLibxcRecord({ type: LibxcRecType.REC_TYPE_X86_PV_INFO, guestWidth: 8, ptLevels: 4 }));
    refused(() => rd({}, patch(b, 9, 3), sde, p2m, pg, vcpu0, end), 'libxc', /Invalid X86_PV_INFO combination: width 8, pt_levels 3/);
    const p2m2 = frame({ type: LibxcRecType.REC_TYPE_X86_PV_P2M_FRAMES, startPfn: 0, endPfn: 512, p2mPfns: [7n] });
    refused(() => rd({}, info, sde, p2m2, pg, vcpu0, end), 'libxc', /X86_PV_P2M_FRAMES record wrong size: start_pfn 0x0, end_pfn 0x200, length 16, expected 8 \+ 2 \* 8/);
    const vcpu = (type: X86PvVcpuRecType, n: number, vcpuId = 0) => frame({ type, vcpuId, context: new Uint8Array(n) });
    refused(() => rd({}, info, sde, p2m, pg, vcpu(LibxcRecType.REC_TYPE_X86_PV_VCPU_BASIC, VCPU_GUEST_CONTEXT_SIZE[4]), end), 'libxc', /X86_PV_VCPU_BASIC record wrong size: expected 5176, got 2808/);
    refused(() => rd({}, info, sde, p2m, pg, vcpu0, vcpu(LibxcRecType.REC_TYPE_X86_PV_VCPU_EXTENDED, 136), end), 'libxc', /EXTENDED record too long: max 136, got 144/);
    refused(() => rd({}, info, sde, p2m, pg, vcpu0, vcpu(LibxcRecType.REC_TYPE_X86_PV_VCPU_XSAVE, 8), end), 'libxc', /XSAVE record too short: min 24, got 16/);
    refused(() => rd({}, info, sde, p2m, pg, vcpu0, vcpu(LibxcRecType.REC_TYPE_X86_PV_VCPU_MSRS, 24), end), 'libxc', /MSRS record payload size 24 expected to be a multiple of 16/);
    refused(() => rd({ maxVcpus: 2 }, info, sde, p2m, pg, vcpu0, vcpu(LibxcRecType.REC_TYPE_X86_PV_VCPU_BASIC, 5168, 2), end), 'libxc', /vcpu_id \(2\) exceeds domain max \(1\)/);
    assert.equal(rd({ maxVcpus: 3 }, info, sde, p2m, pg, vcpu0, vcpu(LibxcRecType.REC_TYPE_X86_PV_VCPU_BASIC, 5168, 2), end).vcpus.size, 2);
  });

  it('PAGE_DATA: no pfns, too short for its count, unknown page type, reserved pfn bits, pages missing', () => {
    const ok = PV_OK();
    const rd = (r: Uint8Array) => readAll(pvLibxc(...ok.slice(0, 3), r, ...ok.slice(4)), { format: 'libxc' });
    const body = (count: number, words: bigint[], nPages: number) => {
      const b = new Uint8Array(8 + 8 * words.length + PAGE_SIZE * nPages);
      new DataView(b.buffer).setUint32(0, count, true);
      words.forEach((w, i) => new DataView(b.buffer).setBigUint64(8 + 8 * i, w, true));
      return rec(LibxcRecType.REC_TYPE_PAGE_DATA, b);
    };
    refused(() => rd(body(0, [], 0)), 'libxc', /Expected at least 1 pfn in PAGE_DATA record/);
    refused(() => rd(body(0xffffffff, [1n], 1)), 'libxc', /too short to contain 4294967295 pfns/);
    refused(() => rd(body(1, [(5n << 60n) | 1n], 1)), 'libxc', /Unknown type 0x50000000 for pfn 0x1 \(index 0\)/);
    refused(() => rd(body(1, [(1n << 55n) | 1n], 1)), 'libxc', /Reserved bits set in pfn\[0\]/);
    refused(() => rd(body(2, [1n, 2n], 1)), 'libxc', /PAGE_DATA record wrong size: length 4120, expected 8 \+ 16 \+ 8192/);
    refused(() => readAll(pvLibxc(...ok), { format: 'libxc', p2mSize: 1 }), 'libxc', /pfn 0x1 \(index 0\) outside domain maximum/);
  });

  it('record order: pages before STATIC_DATA_END or the p2m, SDE twice, a checkpoint in a plain stream, END without vcpu0', () => {
    const [info, sde, p2m, pg, vcpu0, end] = PV_OK();
    const rd = (...r: Uint8Array[]) => readAll(pvLibxc(...r), { format: 'libxc' });
    refused(() => rd(info, pg, sde, p2m, vcpu0, end), 'libxc', /No STATIC_DATA_END seen/);
    refused(() => rd(info, sde, pg, p2m, vcpu0, end), 'libxc', /PAGE_DATA record before X86_PV_P2M_FRAMES/);
    refused(() => rd(info, sde, sde, p2m, pg, vcpu0, end), 'libxc', /Multiple STATIC_DATA_END records found/);
    refused(() => rd(sde, info, p2m, pg, vcpu0, end), 'libxc', /STATIC_DATA_END before X86_PV_INFO/);
    refused(() => rd(info, sde, p2m, pg, vcpu0, frame({ type: LibxcRecType.REC_TYPE_CHECKPOINT }), end), 'libxc', /Found checkpoint in non-checkpointed stream/);
    refused(() => rd(info, sde, p2m, pg, end), 'libxc', /Sender didn't send vcpu0's basic state/);
    refused(() => rd(info, sde, p2m, pg, vcpu0, end, end), 'libxc', /trailing data after END/);
  });
});

describe('migration stream: precopy as send_domain_memory_live() runs it', () => {
  async function migrate(guest: DirtyingGuest, policy = simplePrecopyPolicy) {
    const chunks: Uint8Array[] = [];
    const base = pvImage(guest.p2mSize);
    const w = new SaveStreamWriter((c) => chunks.push(c), base);
    w.start();
    const report = await sendDomainMemoryLive(w, guest, policy);
    w.endOfCheckpoint(pvState());
    w.finish();
    return { report, bytes: concat(chunks), stats: w.stats };
  }

  it('simple_precopy_policy: stop below 50 dirty pages or after 5 rounds', () => {
    const d = (iteration: number, dirtyCount: number) => simplePrecopyPolicy({ iteration, totalWritten: 0, dirtyCount });
    assert.equal(d(0, 4096), PrecopyPolicyDecision.XGS_POLICY_CONTINUE_PRECOPY);
    assert.equal(d(1, -1), PrecopyPolicyDecision.XGS_POLICY_CONTINUE_PRECOPY);
    assert.equal(d(2, 49), PrecopyPolicyDecision.XGS_POLICY_STOP_AND_COPY);
    assert.equal(d(2, 50), PrecopyPolicyDecision.XGS_POLICY_CONTINUE_PRECOPY);
    assert.equal(d(SPP_MAX_ITERATIONS, 5000), PrecopyPolicyDecision.XGS_POLICY_STOP_AND_COPY);
  });

  it('a converging guest: round 1 sends every pfn, later rounds the dirtied ones, the last after suspend; memory arrives as it was at suspend', async () => {
    const guest = new DirtyingGuest(3000, (round) => [60, 20, 3][round] ?? 0);
    const { report, bytes } = await migrate(guest);
    assert.equal(report.rounds[0], 3000);
    assert(report.liveRounds >= 2 && report.liveRounds < SPP_MAX_ITERATIONS, `live rounds ${report.rounds}`);
    assert(report.rounds.slice(1).every((n) => n < 3000));
    const img = readAll(bytes);
    assert(img.stats.pagesResent > 0);
    assert.equal(img.stats.pagesReceived, report.rounds.reduce((a, b) => a + b, 0));
    assert.equal(memoryHash(img.pages), memoryHash(guest.memory()));
  });

  it('a dirtying storm that never converges: 5 live rounds (SPP_MAX_ITERATIONS), then stop-and-copy sends the rest', async () => {
    const guest = new DirtyingGuest(2048, () => 400);
    const { report, bytes } = await migrate(guest);
    assert.equal(report.liveRounds, SPP_MAX_ITERATIONS);
    assert(report.rounds[report.rounds.length - 1] >= 50, `last round ${report.rounds}`);
    assert.equal(memoryHash(readAll(bytes).pages), memoryHash(guest.memory()));
  });

  it('a guest under 50 pages: one live round, then suspend', async () => {
    const guest = new DirtyingGuest(40, () => 2);
    const { report } = await migrate(guest);
    assert.equal(report.liveRounds, 1);
    assert.equal(report.rounds[0], 40);
  });

  it('a policy that aborts: PrecopyAborted, the domain is not suspended', async () => {
    const guest = new DirtyingGuest(100, () => 1);
    await assert.rejects(migrate(guest, () => PrecopyPolicyDecision.XGS_POLICY_ABORT), PrecopyAborted);
    assert.equal(guest.suspended, false);
  });
});
