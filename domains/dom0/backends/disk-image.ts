// Disk images in dom0's memory (what `params` names), sparse: 4 KiB chunks appear when written,
// so a hundred guests with two disks each cost only what they wrote. A target that is an absolute
// path is a file instead (a loop device over it, as a file: target): hosts that name the same file
// share the disk, which is what `xl migrate` needs - the disk is not in the stream, the destination
// must reach the same storage.
import { closeSync, fstatSync, ftruncateSync, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { BLKIF_SECTOR_SIZE } from '../../../hypervisor/public/io/blkif.ts';

const CHUNK = 4096;
const SECTORS_PER_CHUNK = CHUNK / BLKIF_SECTOR_SIZE;

export class DiskImage {
  private readonly chunks = new Map<number, Uint8Array>();
  /** Writes flushed (FLUSH_DISKCACHE), for tests that check ordering. */
  flushes = 0;

  constructor(readonly name: string, readonly sectors: number, readonly readonly = false) {}

  /** Copies `count` sectors from `sector` into `out` at `at`. */
  read(sector: number, count: number, out: Uint8Array, at = 0): void {
    for (let i = 0; i < count; i++) {
      const s = sector + i;
      const c = this.chunks.get(Math.floor(s / SECTORS_PER_CHUNK));
      const off = (s % SECTORS_PER_CHUNK) * BLKIF_SECTOR_SIZE;
      const dst = out.subarray(at + i * BLKIF_SECTOR_SIZE, at + (i + 1) * BLKIF_SECTOR_SIZE);
      if (c) dst.set(c.subarray(off, off + BLKIF_SECTOR_SIZE));
      else dst.fill(0);
    }
  }

  write(sector: number, count: number, data: Uint8Array, at = 0): void {
    for (let i = 0; i < count; i++) {
      const s = sector + i;
      const k = Math.floor(s / SECTORS_PER_CHUNK);
      let c = this.chunks.get(k);
      if (!c) this.chunks.set(k, (c = new Uint8Array(CHUNK)));
      c.set(data.subarray(at + i * BLKIF_SECTOR_SIZE, at + (i + 1) * BLKIF_SECTOR_SIZE), (s % SECTORS_PER_CHUNK) * BLKIF_SECTOR_SIZE);
    }
  }

  get bytesUsed(): number {
    return this.chunks.size * CHUNK;
  }
}

/** An image in a file: reads and writes go to it at once (a shared disk sees every write). */
export class FileDiskImage extends DiskImage {
  private readonly fd: number;

  constructor(path: string, sizeMiB: number) {
    const fd = openSync(path, 'a+');
    closeSync(fd);
    const rw = openSync(path, 'r+');
    const bytes = fstatSync(rw).size;
    // A new (empty) file gets the configured size; an existing one keeps its own.
    if (bytes === 0) ftruncateSync(rw, sizeMiB * 1024 * 1024);
    super(path, Math.floor((bytes || sizeMiB * 1024 * 1024) / BLKIF_SECTOR_SIZE));
    this.fd = rw;
  }

  override read(sector: number, count: number, out: Uint8Array, at = 0): void {
    const len = count * BLKIF_SECTOR_SIZE;
    const got = readSync(this.fd, out, at, len, sector * BLKIF_SECTOR_SIZE);
    out.fill(0, at + got, at + len);
  }

  override write(sector: number, count: number, data: Uint8Array, at = 0): void {
    writeSync(this.fd, data, at, count * BLKIF_SECTOR_SIZE, sector * BLKIF_SECTOR_SIZE);
  }

  override get bytesUsed(): number {
    return fstatSync(this.fd).blocks * 512;
  }
}

/** dom0's image store: `params` -> image, created on first use with the configured size. */
export class DiskImages {
  private readonly images = new Map<string, DiskImage>();

  /**
   * `root`: where this host sees absolute image paths - a shared storage mounted there (two hosts
   * given the same root find the same file under the same path, as xl migrate needs).
   */
  constructor(private readonly root?: string) {}

  open(name: string, sizeMiB = 16): DiskImage {
    let img = this.images.get(name);
    if (!img) {
      img = isAbsolute(name) ? new FileDiskImage(this.file(name), sizeMiB) : new DiskImage(name, (sizeMiB * 1024 * 1024) / BLKIF_SECTOR_SIZE);
      this.images.set(name, img);
    }
    return img;
  }

  private file(name: string): string {
    if (!this.root) return name;
    const f = join(this.root, name);
    mkdirSync(dirname(f), { recursive: true });
    return f;
  }

  get(name: string): DiskImage | undefined {
    return this.images.get(name);
  }
}
