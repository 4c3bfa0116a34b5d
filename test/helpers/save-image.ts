// Guests as plain data for the migration stream specs: deterministic page contents, PV and HVM
// images with their end-of-checkpoint state, and a hash of guest memory.
import { createHash } from 'node:crypto';
import { DhdrType, PAGE_SIZE, type HvmParamEntry } from '../../domains/dom0/toolstack/migration/libxc-stream.ts';
import type { CheckpointState, EmulatorState, GuestPage } from '../../domains/dom0/toolstack/migration/stream-writer.ts';
import type { SaveImage } from '../../domains/dom0/toolstack/migration/save-image.ts';
import type { LiveDomain } from '../../domains/dom0/toolstack/migration/precopy.ts';

/** A page whose every byte depends on (pfn, version): a resent page differs from its first copy. */
export function pageBytes(pfn: number, version = 0): Uint8Array {
  const b = new Uint8Array(PAGE_SIZE);
  let x = (pfn * 2654435761 + version * 40503 + 1) >>> 0 || 1;
  for (let i = 0; i < PAGE_SIZE; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

export const page = (pfn: number, version = 0): GuestPage => ({ pfn, bytes: pageBytes(pfn, version) });
export const pages = (from: number, n: number, version = 0): GuestPage[] => Array.from({ length: n }, (_, i) => page(from + i, version));

export const blob = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill);

export const TSC = { mode: 0, khz: 2_400_000, nsec: 123_456_789_000n, incarnation: 1 };

export const pvState = (vcpus = 2): CheckpointState => ({
  type: DhdrType.DHDR_TYPE_X86_PV,
  tsc: TSC,
  sharedInfo: blob(PAGE_SIZE, 0x5a),
  vcpus: Array.from({ length: vcpus }, (_, id) => ({
    vcpuId: id, basic: blob(5168, 0x10 + id), extended: blob(128, 0x20 + id), xsave: blob(id === 0 ? 576 : 0, 0x30), msrs: blob(16, 0x40 + id),
  })),
});

/** HVM params write_hvm_params() sends (store and console pfns, ioreq pages). */
export const HVM_PARAMS: HvmParamEntry[] = [
  { index: 1n, value: 0xfeffcn }, // HVM_PARAM_STORE_PFN
  { index: 5n, value: 0xfeff0n }, // HVM_PARAM_IOREQ_PFN
  { index: 6n, value: 0xfeff1n }, // HVM_PARAM_BUFIOREQ_PFN
  { index: 17n, value: 0xfeffbn }, // HVM_PARAM_CONSOLE_PFN
];

export const hvmState = (): CheckpointState => ({ type: DhdrType.DHDR_TYPE_X86_HVM, tsc: TSC, hvmContext: blob(1234, 0x77), hvmParams: HVM_PARAMS });
export const EMULATOR: EmulatorState = { context: blob(3000, 0x51) };

export const CONFIG = JSON.stringify({ c_info: { type: 'pv', name: 'guest' }, b_info: { max_memkb: 1024 } });

/** A PV guest of `n` pages saved by `xl save`: one round with every page. */
export function pvImage(n = 300, extra: Partial<SaveImage> = {}): SaveImage {
  return {
    guestType: DhdrType.DHDR_TYPE_X86_PV,
    config: CONFIG,
    pvInfo: { guestWidth: 8, ptLevels: 4 },
    // A 64-bit guest's p2m holds 512 entries per frame; the frames sit above its pages.
    p2mFrames: { startPfn: 0, endPfn: n - 1, p2mPfns: Array.from({ length: Math.floor((n - 1) / 512) + 1 }, (_, i) => BigInt(n + i)) },
    cpuidPolicy: [{ leaf: 0, subleaf: 0xffffffff, a: 0xd, b: 0x756e6547, c: 0x6c65746e, d: 0x49656e69 }],
    msrPolicy: [{ idx: 0xce, flags: 0, val: 0n }],
    checkpoints: [{ rounds: [pages(0, n)], state: pvState() }],
    ...extra,
  };
}

export function hvmImage(n = 300, extra: Partial<SaveImage> = {}): SaveImage {
  return {
    guestType: DhdrType.DHDR_TYPE_X86_HVM,
    config: CONFIG.replace('"pv"', '"hvm"'),
    cpuidPolicy: [{ leaf: 1, subleaf: 0xffffffff, a: 0x906ea, b: 0, c: 0x80000000, d: 0x178bfbff }],
    checkpoints: [{ rounds: [pages(0, n)], state: hvmState(), emulator: EMULATOR }],
    ...extra,
  };
}

/** sha256 over (pfn, bytes) in pfn order. */
export function memoryHash(mem: ReadonlyMap<number, Uint8Array>): string {
  const h = createHash('sha256');
  for (const pfn of [...mem.keys()].sort((a, b) => a - b)) {
    h.update(String(pfn));
    h.update(mem.get(pfn)!);
  }
  return h.digest('hex');
}

/** A guest whose workload rewrites `dirtyPerBatch` pages after every batch the saver sends. */
export class DirtyingGuest implements LiveDomain {
  readonly version = new Map<number, number>();
  private dirty = new Set<number>();
  suspended = false;
  private x = 7;
  constructor(readonly p2mSize: number, private readonly dirtyPerBatch: (round: number) => number) {}
  round = 0;
  readPage(pfn: number) {
    return page(pfn, this.version.get(pfn) ?? 0);
  }
  async logdirtyClean(): Promise<readonly number[]> {
    this.round++;
    const out = [...this.dirty].sort((a, b) => a - b);
    this.dirty.clear();
    return out;
  }
  async suspend(): Promise<void> {
    this.write(); // the guest runs until the suspend lands
    this.suspended = true;
  }
  async afterBatch(): Promise<void> {
    if (!this.suspended) this.write();
  }
  private write(): void {
    for (let i = 0; i < this.dirtyPerBatch(this.round); i++) {
      this.x = (this.x * 1103515245 + 12345) % 2 ** 31;
      const pfn = Math.floor(this.x / 65536) % this.p2mSize; // high bits: an LCG's low bits cycle fast
      this.version.set(pfn, (this.version.get(pfn) ?? 0) + 1);
      this.dirty.add(pfn);
    }
  }
  memory(): Map<number, Uint8Array> {
    return new Map(Array.from({ length: this.p2mSize }, (_, pfn) => [pfn, this.readPage(pfn).bytes!]));
  }
}
