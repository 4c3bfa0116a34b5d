// The guest kernel's own memory, for save/restore. A real Linux guest keeps every piece of its
// state (its watch list, its workload's pages, its block requests in flight) in guest memory, so
// a saved image carries it and the restored kernel simply goes on. xensim's kernel keeps that
// state in JavaScript objects, which no save file can carry; so at freeze time (before
// SCHEDOP_shutdown(SHUTDOWN_suspend)) the kernel writes what a resumed kernel needs into a fixed
// page of its own memory, and a restored domain's kernel - the same program entered with
// `resumed` - reads it back from there. The page travels in the stream like any other.
// Its bytes come back from a file: every field is checked before use.

/** The page the kernel image reserves for it (the first of the domain's memory). */
export const KERNEL_STATE_GFN = 0;
/** "XKST" */
export const KERNEL_STATE_MAGIC = 0x584b5354;
export const KERNEL_STATE_VERSION = 2;
const HEADER = 12;
const PAGE = 4096;

/** A user-space watch (xs-user's xs-watch) to register again on resume, as xs_resume does. */
export interface SavedWatch {
  readonly path: string;
  readonly token: string;
  readonly reread: boolean;
  readonly delayNs: number;
  /** The process's /dev/xen/xenbus file, or the kernel's own ring (a hostile kernel's watch). */
  readonly via: 'dev' | 'ring';
}

/** A block request the frontend had on its ring at suspend (blkif_recover re-queues it). */
export interface SavedBlkRequest {
  readonly device: string;
  readonly op: number;
  readonly sector: number;
  readonly sectors: number;
  /** The request's data pages (writes: the data to write; reads: where the data goes). */
  readonly gfns: readonly number[];
}

/**
 * A vbd frontend as the kernel holds it at suspend (struct xenbus_device and blkfront_info live in
 * guest memory, so a restored kernel finds them as they were): its cached dev->state, the disk it
 * exposes, and the ring it had - a page of this memory, and the grant ref and event channel that
 * named it in the saved domain, which name nothing in the new one.
 */
export interface SavedFrontend {
  /** `vbd/51712`. */
  readonly name: string;
  /** dev->state when the kernel froze. */
  readonly state: number;
  readonly vdev: number;
  readonly ring?: { readonly gfn: number; readonly ref: number; readonly port: number };
  readonly disk?: { readonly sectors: number; readonly sectorSize: number; readonly info: number; readonly flush: boolean };
}

export interface KernelState {
  /** Pages the memory workload filled (kept across save/restore, hashed by mem-hash). */
  readonly workload: readonly number[];
  readonly watches: readonly SavedWatch[];
  readonly blk: readonly SavedBlkRequest[];
  /** The vbd frontends, for xenbus_dev_resume. */
  readonly frontends: readonly SavedFrontend[];
  /** Times this kernel came back in a new domain. */
  readonly resumes: number;
}

export class KernelStateError extends Error {}

/**
 * The workload's pages as [first, count] runs of ascending consecutive gfns, in list order: a big
 * guest's workload (every page it has, filled in order) fits the page as a few runs.
 */
function toRuns(gfns: readonly number[]): [number, number][] {
  const runs: [number, number][] = [];
  // Indexed, with the open run in locals: a big guest's workload is every page it has.
  let first = -1;
  let count = 0;
  for (let i = 0; i < gfns.length; i++) {
    const g = gfns[i];
    if (count > 0 && first + count === g) {
      count++;
      continue;
    }
    if (count > 0) runs.push([first, count]);
    first = g;
    count = 1;
  }
  if (count > 0) runs.push([first, count]);
  return runs;
}

/** Writes the state into the page; throws (the suspend is refused) if it does not fit. */
export function writeKernelState(page: Uint8Array, st: KernelState): void {
  const { workload, ...rest } = st;
  const body = new TextEncoder().encode(JSON.stringify({ ...rest, workload: toRuns(workload) }));
  if (HEADER + body.length > PAGE) throw new KernelStateError(`kernel state of ${body.length} bytes does not fit its page`);
  const v = new DataView(page.buffer, page.byteOffset, page.byteLength);
  page.fill(0);
  v.setUint32(0, KERNEL_STATE_MAGIC, true);
  v.setUint32(4, KERNEL_STATE_VERSION, true);
  v.setUint32(8, body.length, true);
  page.set(body, HEADER);
}

const isInt = (x: unknown, max = Number.MAX_SAFE_INTEGER): x is number => Number.isSafeInteger(x) && (x as number) >= 0 && (x as number) <= max;
const isStr = (x: unknown, max = 4096): x is string => typeof x === 'string' && x.length <= max;

/** Reads the state back; `nrPages` bounds every gfn it names. */
export function readKernelState(page: Uint8Array, nrPages: number): KernelState {
  const v = new DataView(page.buffer, page.byteOffset, page.byteLength);
  if (v.getUint32(0, true) !== KERNEL_STATE_MAGIC) throw new KernelStateError('no kernel state in the resumed image (bad magic)');
  if (v.getUint32(4, true) !== KERNEL_STATE_VERSION) throw new KernelStateError(`kernel state version ${v.getUint32(4, true)}`);
  const len = v.getUint32(8, true);
  if (len > PAGE - HEADER) throw new KernelStateError(`kernel state length ${len}`);
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(page.subarray(HEADER, HEADER + len)));
  } catch {
    throw new KernelStateError('kernel state is not valid JSON');
  }
  const o = raw as Record<string, unknown>;
  const gfn = (g: unknown): g is number => isInt(g, nrPages - 1) && g !== KERNEL_STATE_GFN;
  if (typeof o !== 'object' || o === null || !Array.isArray(o.workload) || !Array.isArray(o.watches) || !Array.isArray(o.blk) || !Array.isArray(o.frontends)
    || !isInt(o.resumes)) {
    throw new KernelStateError('kernel state: missing fields');
  }
  // Runs of at most nrPages pages in all, expanded only once bounded.
  const runs = o.workload as unknown[];
  const isRun = (r: unknown): r is [number, number] => Array.isArray(r) && r.length === 2 && isInt(r[0], nrPages - 1) && isInt(r[1], nrPages) && r[1] > 0;
  if (!runs.every(isRun) || runs.reduce((n: number, r) => n + (r as [number, number])[1], 0) > nrPages) throw new KernelStateError('kernel state: bad workload pages');
  // A loop, not an array per run: a big guest's workload is every page it has.
  const workload: number[] = [];
  const named = new Uint8Array(nrPages);
  for (const [first, count] of runs as [number, number][]) {
    // gfn() of each page of the run, checked at its ends: inside memory, not the state's own page.
    if (first + count > nrPages || (first <= KERNEL_STATE_GFN && KERNEL_STATE_GFN < first + count)) throw new KernelStateError('kernel state: bad workload pages');
    for (let g = first; g < first + count; g++) {
      if (named[g]++ !== 0) throw new KernelStateError('kernel state: bad workload pages');
      workload.push(g);
    }
  }
  o.workload = workload;
  for (const w of o.watches as Record<string, unknown>[]) {
    if (typeof w !== 'object' || w === null || !isStr(w.path) || !isStr(w.token) || typeof w.reread !== 'boolean' || !isInt(w.delayNs)
      || (w.via !== 'dev' && w.via !== 'ring')) {
      throw new KernelStateError('kernel state: bad watch');
    }
  }
  for (const r of o.blk as Record<string, unknown>[]) {
    if (typeof r !== 'object' || r === null || !isStr(r.device, 64) || !isInt(r.op, 255) || !isInt(r.sector) || !isInt(r.sectors, 1 << 20)
      || !Array.isArray(r.gfns) || !r.gfns.every(gfn)) {
      throw new KernelStateError('kernel state: bad block request');
    }
  }
  const names = new Set<string>();
  const ringGfns = new Set<number>();
  for (const f of o.frontends as Record<string, unknown>[]) {
    if (typeof f !== 'object' || f === null || !isStr(f.name, 64) || !/^vbd\/\d{1,9}$/.test(f.name) || names.has(f.name)
      || !isInt(f.state, 8) || !isInt(f.vdev, 0xffffffff)) {
      throw new KernelStateError('kernel state: bad frontend');
    }
    names.add(f.name);
    if (f.ring !== undefined) {
      const r = f.ring as Record<string, unknown>;
      if (typeof r !== 'object' || r === null || !gfn(r.gfn) || ringGfns.has(r.gfn) || !isInt(r.ref, 0xffffffff) || !isInt(r.port, 0xffffffff)) {
        throw new KernelStateError('kernel state: bad frontend ring');
      }
      ringGfns.add(r.gfn);
    }
    if (f.disk !== undefined) {
      const d = f.disk as Record<string, unknown>;
      if (typeof d !== 'object' || d === null || !isInt(d.sectors) || !isInt(d.sectorSize, 1 << 16) || !isInt(d.info, 0xffffffff) || typeof d.flush !== 'boolean') {
        throw new KernelStateError('kernel state: bad frontend disk');
      }
    }
  }
  if ([...ringGfns].some((g) => named[g])) throw new KernelStateError('kernel state: a ring page is also a workload page');
  return o as unknown as KernelState;
}
