// The client end of a running host's control socket (sim/xl-control.ts serves it): what
// `xensim xl` needs to send one verb and read its answer, kept apart from the server so the CLI
// starts without loading the toolstack, the config schema or the host.
import net from 'node:net';

/** An error for the caller (bad domain, bad arguments): its message is the whole story. */
export class XlError extends Error {
  override readonly name = 'XlError';
}

export interface ListRow {
  readonly name: string;
  readonly id: number;
  readonly mem: number;
  readonly vcpus: number;
  readonly state: string;
  /** Seconds since the domain was created (xensim does not account CPU time). */
  readonly time: number;
}

export interface BlockRow {
  readonly vdev: number; readonly dev: string; readonly be: number; readonly handle: number; readonly state: number;
  readonly beState: number; readonly evtch: number; readonly ringRef: number; readonly bePath: string;
}

export interface NicRow {
  readonly idx: number; readonly be: number; readonly mac: string; readonly handle: number; readonly state: number;
  readonly beState: number; readonly evtch: number; readonly txRingRef: number; readonly rxRingRef: number; readonly bePath: string;
}

export type XlResponse =
  | { readonly id?: number | string; readonly ok: true; readonly result: unknown }
  | { readonly id?: number | string; readonly ok: false; readonly error: string };

/** The longest request line the control socket takes (a client sending more is cut off). */
export const XL_CONTROL_LINE_MAX = 1 << 20;
/** The longest reply line `xensim xl` takes from a host. */
export const XL_CONTROL_REPLY_MAX = 64 << 20;

/**
 * Splits a byte stream into newline-terminated lines, holding at most `max` bytes of a line: the
 * pieces of an unfinished line are kept as they came and joined once, when its newline arrives.
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private held = 0;
  private over = false;

  constructor(readonly max: number) {}

  /** The lines `chunk` completes (without their newlines), or 'overflow' once a line passes max. */
  push(chunk: Buffer): string[] | 'overflow' {
    if (this.over) return 'overflow';
    const lines: string[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl < 0 ? chunk.length : nl;
      this.held += end - start;
      if (this.held > this.max) {
        this.over = true;
        this.parts = [];
        return 'overflow';
      }
      if (nl < 0) {
        if (end > start) this.parts.push(chunk.subarray(start));
        return lines;
      }
      this.parts.push(chunk.subarray(start, nl));
      lines.push(Buffer.concat(this.parts, this.held).toString('utf8'));
      this.parts = [];
      this.held = 0;
      start = nl + 1;
    }
  }
}

/** The control path `xensim xl` uses: --host, else $XENSIM_CONTROL, else the default. */
export const DEFAULT_CONTROL = '/tmp/xensim/xl.sock';

/** One request to a host's control socket; resolves with the result, rejects with its error. */
export function xlRequest(path: string, verb: string, args: Record<string, unknown> = {}): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(path);
    const lines = new LineSplitter(XL_CONTROL_REPLY_MAX);
    let done = false;
    const finish = (f: () => void): void => {
      if (done) return;
      done = true;
      sock.destroy();
      f();
    };
    sock.once('connect', () => sock.write(`${JSON.stringify({ id: 1, verb, args })}\n`));
    sock.on('data', (chunk: Buffer) => {
      const got = lines.push(chunk);
      if (got === 'overflow') {
        finish(() => reject(new XlError(`${path}: reply longer than ${XL_CONTROL_REPLY_MAX} bytes`)));
        return;
      }
      if (got.length === 0) return;
      let res: XlResponse;
      try {
        res = JSON.parse(got[0]) as XlResponse;
      } catch {
        finish(() => reject(new XlError(`${path}: not an xensim control socket (bad reply)`)));
        return;
      }
      finish(() => (res.ok ? resolve(res.result) : reject(new XlError(res.error))));
    });
    sock.once('error', (e: NodeJS.ErrnoException) => finish(() => reject(new XlError(
      e.code === 'ENOENT' || e.code === 'ECONNREFUSED'
        ? `cannot reach a host at ${path} (${e.code}): is \`xensim up\` running? (--host PATH or XENSIM_CONTROL)`
        : `${path}: ${e.message}`,
    ))));
    sock.once('close', () => finish(() => reject(new XlError(`${path}: the host closed the connection`))));
  });
}
