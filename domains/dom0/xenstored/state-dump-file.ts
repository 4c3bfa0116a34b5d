// The state_dump file of a live update (C: xenstored's lu_dump_state() writes it in its run
// directory, the new binary reads it back and removes it): the daemon's `stateDump` transport.
// The file is read into the dump's own buffer, free once written: touching fresh memory costs
// a page fault per 4 KiB, and at 100k nodes two fresh 6 MB buffers cost more than the copy.
import { closeSync, fstatSync, openSync, readSync, unlinkSync, writeFileSync } from 'node:fs';

export interface StateDumpFile {
  write(bytes: Uint8Array): void;
  /** The file's bytes: in `into` when they fit it (the caller's buffer, overwritten), else in a new one. */
  read(into?: Uint8Array): Uint8Array;
  remove(): void;
}

export function stateDumpFile(path: string, mode = 0o600): StateDumpFile {
  return {
    write: (bytes) => writeFileSync(path, bytes, { mode }),
    read: (into) => {
      const fd = openSync(path, 'r');
      try {
        const size = fstatSync(fd).size;
        const buf = into !== undefined && into.length >= size ? into.subarray(0, size) : Buffer.allocUnsafe(size);
        let got = 0;
        while (got < size) {
          const n = readSync(fd, buf, got, size - got, got);
          if (n === 0) throw new Error(`${path}: ends at byte ${got} of ${size}`);
          got += n;
        }
        return buf;
      } finally {
        closeSync(fd);
      }
    },
    remove: () => unlinkSync(path),
  };
}
