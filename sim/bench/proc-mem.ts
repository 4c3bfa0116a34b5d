// A process's memory as /proc/PID/status gives it. Its own file so that the migration case, which
// the build compiles to dist/ (tsconfig.build.json), needs nothing else of the bench's.
import { readFileSync } from 'node:fs';

export interface MemInfo {
  /** Resident set size now, bytes. */
  readonly rss: number;
  /** Peak resident set size (VmHWM), bytes. */
  readonly hwm: number;
}

/** VmRSS and VmHWM of PID from /proc/PID/status. */
export function memOf(pid: number): MemInfo {
  const status = readFileSync(`/proc/${pid}/status`, 'latin1');
  const kb = (field: string): number => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    if (!m) throw new Error(`no ${field} in /proc/${pid}/status`);
    return Number(m[1]) * 1024;
  };
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}
