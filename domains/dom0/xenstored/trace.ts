// The -T trace file, in the style of C xenstored's: one line per message in and out, NULs
// shown as blanks, plus connection creation and destruction.
import { createWriteStream, type WriteStream } from 'node:fs';
import { xsTypeName, type XsMessage } from '../../../hypervisor/public/io/xs_wire.ts';

export class TraceFile {
  private readonly stream: WriteStream;

  constructor(path: string, private readonly clock: () => Date = () => new Date()) {
    this.stream = createWriteStream(path, { flags: 'a' });
    this.stream.write('\n***\n');
  }

  private stamp(): string {
    const d = this.clock();
    const p = (n: number, w = 2): string => String(n).padStart(w, '0');
    return `${p(d.getFullYear(), 4)}${p(d.getMonth() + 1)}${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }

  /** Connections are named as C names them (by address); xensim's ids stand in for it. */
  static connName(conn: number): string {
    return `0x${conn.toString(16).padStart(12, '0')}`;
  }

  io(conn: number, dir: 'IN' | 'OUT', msg: XsMessage): void {
    const body = Buffer.from(msg.payload).toString('latin1').replaceAll('\0', ' ');
    this.stream.write(`${dir} ${TraceFile.connName(conn)} ${this.stamp()} ${xsTypeName(msg.type)} (${body})\n`);
  }

  event(what: string): void {
    this.stream.write(`${what}\n`);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.stream.end(resolve));
  }
}
