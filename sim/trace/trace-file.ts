// Reading a saved trace: `xensim run --trace` / `xensim up --trace` JSON lines, maybe between a
// run header and an end footer (the events are what lies between).
import { readFileSync } from 'node:fs';
import type { TraceRecord } from './events.ts';

export function readTraceFile(file: string): { events: TraceRecord[]; title: string } {
  const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l.trim().length > 0);
  let events = lines.map((l, i) => {
    try {
      return JSON.parse(l) as TraceRecord;
    } catch {
      throw new Error(`${file}:${i + 1}: not a JSON trace event`);
    }
  });
  const header = events[0]?.kind === 'run' ? events[0] : undefined;
  if (header) events = events.slice(1);
  if (events[events.length - 1]?.kind === 'end') events = events.slice(0, -1);
  const title = header ? `${String(header.scenario)} seed ${String(header.seed)} (${file})` : file;
  return { events, title };
}
