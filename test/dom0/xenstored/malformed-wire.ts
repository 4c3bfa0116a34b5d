// The malformed-input table: byte sequences a client sends in ONE write, what the real daemons
// answer, and how to play them against any transport.
//
// Every case is self-synchronising: after its bytes the runner sends a probe (READ of a missing
// node, req_id PROBE_ID) in the same write, and the transcript ends when the probe is answered
// or the connection ends - no timing decides anything. Nodes are relative (`data/...`), so a
// case means the same from a dom0 socket (/local/domain/0/data/...) and from a guest's ring
// (/local/domain/N/data/..., the guest owns data/). After the case, `state` reads the named
// nodes through a fresh privileged connection.
//
// The expected transcripts are recorded from Debian's C xenstored and oxenstored 4.17 by
// scripts/record-malformed.ts into malformed-oracle.json, from a dom0 socket and from an
// unprivileged guest's ring page; test/interop/malformed-oracle.test.ts replays the table on the
// live daemons and checks the recording still holds.
import net from 'node:net';
import path from 'node:path';
import {
  XENSTORE_PAYLOAD_MAX, XsDecodeStep, XsWireDecoder, XsdSockmsgType as T, encodeHeader, encodeMessage, xsTypeName,
} from '../../../hypervisor/public/io/xs_wire.ts';
import { ORACLE_DIR, PYTHON3, Proc, REPO_ROOT, type Daemon } from '../../helpers/daemons.ts';

export const PROBE_ID = 0xbeef;

/** One message as the transcript shows it: type name, req_id, tx_id, payload (latin1). */
export type WireReply = readonly [type: string, req_id: number, tx_id: number, payload: string];

export interface Transcript {
  /** Every message the connection received until the probe's reply or its end. */
  readonly replies: WireReply[];
  /** The daemon ended the connection (socket closed; ring ignored). */
  readonly closed: boolean;
  /** Each `state` node as a fresh privileged connection reads it: the value, or `!ERRNAME`. */
  readonly state: Record<string, string>;
}

export interface MalformedCase {
  readonly name: string;
  /** What the client writes, in one write(). */
  readonly bytes: Uint8Array;
  /** Relative nodes to read afterwards. */
  readonly state: readonly string[];
}

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const msg = (type: number, reqId: number, payload: string | Uint8Array, tx = 0): Uint8Array =>
  encodeMessage({ type, req_id: reqId, tx_id: tx, payload: typeof payload === 'string' ? b(payload) : payload });
const hdr = (type: number, reqId: number, len: number, tx = 0): Uint8Array =>
  encodeHeader({ type, req_id: reqId, tx_id: tx, len });
const cat = (...parts: Uint8Array[]): Buffer => Buffer.concat(parts);
/** `prefix` padded with `ch` to exactly n bytes. */
const padded = (prefix: string, n: number, ch = 'x'): Buffer => b(prefix + ch.repeat(n - prefix.length));

/** READ of a missing node: ENOENT from a dom0 socket and from the guest alike. */
export const probe = (): Uint8Array => msg(T.XS_READ, PROBE_ID, 'data/probe-missing\0');

export const CASES: readonly MalformedCase[] = [
  {
    // The issue-9 bug: a WRITE, then in the same write() a header announcing 5000 bytes (and the
    // 4096 bytes oxenstored then reads as its payload).
    name: 'a good WRITE, then a header with len 5000',
    bytes: cat(msg(T.XS_WRITE, 1, 'data/big1/w\0v'), hdr(T.XS_READ, 2, 5000), padded('', XENSTORE_PAYLOAD_MAX)),
    state: ['data/big1/w'],
  },
  {
    name: 'two good WRITEs, then a header with len 4097',
    bytes: cat(msg(T.XS_WRITE, 1, 'data/big2/a\0v'), msg(T.XS_WRITE, 2, 'data/big2/b\0w'),
      hdr(T.XS_WRITE, 3, XENSTORE_PAYLOAD_MAX + 1), padded('data/big2/c\0', XENSTORE_PAYLOAD_MAX)),
    state: ['data/big2/a', 'data/big2/b', 'data/big2/c'],
  },
  {
    name: 'a header with len 0xFFFFFFFF, then 4096 bytes',
    bytes: cat(hdr(T.XS_WRITE, 3, 0xffffffff), padded('data/big3/w\0', XENSTORE_PAYLOAD_MAX)),
    state: ['data/big3/w'],
  },
  {
    name: 'a WRITE of exactly 4096 payload bytes (value 4084 bytes)',
    bytes: msg(T.XS_WRITE, 4, padded('data/big4/w\0', XENSTORE_PAYLOAD_MAX)),
    state: ['data/big4/w'],
  },
  {
    name: 'a WRITE of a 2048-byte value',
    bytes: msg(T.XS_WRITE, 4, padded('data/big5/w\0', 12 + 2048)),
    state: ['data/big5/w'],
  },
  { name: 'unknown type 99', bytes: msg(99, 5, 'data/x\0'), state: [] },
  { name: 'type XS_INVALID (0xffff)', bytes: msg(T.XS_INVALID, 5, 'data/x\0'), state: [] },
  { name: 'type 0xdeadbeef', bytes: msg(0xdeadbeef, 5, 'data/x\0'), state: [] },
  { name: 'type 23 (GET_FEATURE, newer Xen)', bytes: msg(23, 5, ''), state: [] },
  { name: 'client-sent WATCH_EVENT', bytes: msg(T.XS_WATCH_EVENT, 5, 'data\0tok\0'), state: [] },
  { name: 'client-sent ERROR', bytes: msg(T.XS_ERROR, 5, 'EINVAL\0'), state: [] },
  { name: 'RESTRICT (removed)', bytes: msg(T.XS_RESTRICT, 5, '1\0'), state: [] },
  {
    // The value's declared length covers only the path: the bytes after it are the next message.
    name: 'len shorter than the bytes sent: the rest is framed as the next message',
    bytes: cat(hdr(T.XS_WRITE, 6, 'data/len1/w\0'.length), b('data/len1/w\0'), msg(T.XS_READ, 7, 'data/len1/w\0')),
    state: ['data/len1/w'],
  },
  {
    // The WRITE's declared length swallows the following message: it becomes part of the value.
    name: 'len longer than the payload: the next message becomes part of the value',
    bytes: (() => {
      const swallowed = msg(T.XS_READ, 9, 'data/len2/w\0');
      return cat(hdr(T.XS_WRITE, 8, 'data/len2/w\0v'.length + swallowed.length), b('data/len2/w\0v'), swallowed);
    })(),
    state: ['data/len2/w'],
  },
  { name: 'READ with an empty payload', bytes: msg(T.XS_READ, 10, ''), state: [] },
  { name: 'WRITE with an empty payload', bytes: msg(T.XS_WRITE, 10, ''), state: [] },
  {
    // C 4.17 answers these with the errno its previous request left (and aborts on 0); the READ
    // before each makes that ENOENT. xensim answers ENOENT in profile c, EINVAL in ocaml.
    name: 'READ of a path without its NUL',
    bytes: cat(msg(T.XS_READ, 11, 'data/none\0'), msg(T.XS_READ, 12, 'data/nonul')),
    state: [],
  },
  { name: 'DIRECTORY of a path without its NUL', bytes: cat(msg(T.XS_READ, 11, 'data/none\0'), msg(T.XS_DIRECTORY, 12, 'data/nonul')), state: [] },
  { name: 'GET_PERMS of a path without its NUL', bytes: cat(msg(T.XS_READ, 11, 'data/none\0'), msg(T.XS_GET_PERMS, 12, 'data/nonul')), state: [] },
  {
    name: 'MKDIR of a path without its NUL',
    bytes: cat(msg(T.XS_READ, 11, 'data/none\0'), msg(T.XS_MKDIR, 12, 'data/nonul1')),
    state: ['data/nonul1'],
  },
  { name: 'RM of a path without its NUL', bytes: cat(msg(T.XS_READ, 11, 'data/none\0'), msg(T.XS_RM, 12, 'data/nonul')), state: [] },
  { name: 'WRITE of a path without any NUL', bytes: msg(T.XS_WRITE, 13, 'data/nonul2'), state: ['data/nonul2'] },
  { name: 'WATCH whose token lacks its NUL', bytes: msg(T.XS_WATCH, 14, 'data/nonul3\0tok'), state: [] },
  { name: 'WATCH with only a path', bytes: msg(T.XS_WATCH, 14, 'data/nonul4\0'), state: [] },
  {
    name: 'SET_PERMS whose last permission lacks its NUL',
    bytes: cat(msg(T.XS_WRITE, 15, 'data/nonul5\0v'), msg(T.XS_SET_PERMS, 16, 'data/nonul5\0n0\0r1')),
    state: ['data/nonul5'],
  },
  { name: 'TRANSACTION_END of an unknown transaction, T without NUL', bytes: msg(T.XS_TRANSACTION_END, 17, 'T', 77), state: [] },
  { name: 'READ in an unknown transaction', bytes: msg(T.XS_READ, 18, 'data/none\0', 77), state: [] },
  {
    name: 'a path over 3072 bytes',
    bytes: msg(T.XS_WRITE, 19, `data/${'p'.repeat(3100)}\0v`),
    state: [],
  },
  {
    name: 'twenty pipelined requests in one write',
    bytes: cat(...Array.from({ length: 10 }, (_, i) => cat(
      msg(T.XS_WRITE, 100 + 2 * i, `data/pipe/${i}\0${i}`),
      msg(T.XS_READ, 101 + 2 * i, `data/pipe/${i}\0`)))),
    state: ['data/pipe/9'],
  },
];

/** Collects messages from a byte stream with the shared codec (clamping nothing). */
export class ReplyCollector {
  readonly replies: WireReply[] = [];
  private readonly dec = new XsWireDecoder('reject');

  push(chunk: Uint8Array): void {
    let off = 0;
    while (off < chunk.length) {
      off += this.dec.push(chunk, off);
      if (this.dec.step === XsDecodeStep.MESSAGE) {
        const m = this.dec.message();
        this.replies.push([xsTypeName(m.type), m.req_id, m.tx_id, Buffer.from(m.payload).toString('latin1')]);
      } else if (this.dec.step === XsDecodeStep.VIOLATION) {
        throw new Error('daemon sent a message over XENSTORE_PAYLOAD_MAX');
      }
    }
  }

  /** The probe has been answered. */
  get done(): boolean {
    return this.replies.some((r) => r[1] === PROBE_ID);
  }
}

/**
 * Reads nodes through a fresh privileged socket connection: value or `!ERRNAME`. Relative nodes
 * are read below `home` when given (a guest's), else relative to dom0's.
 */
export async function readState(socketPath: string, nodes: readonly string[], home?: string): Promise<Record<string, string>> {
  const reqs = nodes.map((n, i) => msg(T.XS_READ, i + 1, `${home === undefined ? n : `${home}/${n}`}\0`));
  const c = await play(socketPath, Buffer.concat(reqs), (col) => col.replies.length >= nodes.length);
  const out: Record<string, string> = {};
  nodes.forEach((n, i) => {
    const r = c.replies.find((m) => m[1] === i + 1);
    out[n] = r === undefined ? '!NOREPLY' : stateValue(r);
  });
  return out;
}

export const stateValue = (r: WireReply): string => (r[0] === 'ERROR' ? `!${r[3].replace(/\0$/, '')}` : r[3]);

/** Writes `data` in one write; collects what comes back until `enough` holds or the socket closes. */
export function play(socketPath: string, data: Uint8Array, enough: (c: ReplyCollector) => boolean):
Promise<{ replies: WireReply[]; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const col = new ReplyCollector();
    const s = net.createConnection(socketPath);
    let settled = false;
    const done = (closed: boolean) => {
      if (settled) return;
      settled = true;
      s.destroy();
      resolve({ replies: col.replies, closed });
    };
    s.on('connect', () => {
      if (enough(col)) done(false);
      else s.write(data);
    });
    s.on('data', (chunk: Buffer) => {
      col.push(chunk);
      if (enough(col)) done(false);
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      // The daemon may close while our write is still going out.
      if (e.code !== 'EPIPE' && e.code !== 'ECONNRESET') reject(e);
    });
    s.on('close', () => done(true));
  });
}

/** Plays one case on a daemon's Unix socket (a dom0 connection). */
export async function runOnSocket(socketPath: string, k: MalformedCase): Promise<Transcript> {
  const c = await play(socketPath, Buffer.concat([k.bytes, probe()]), (col) => col.done);
  return { replies: c.replies, closed: c.closed, state: await readState(socketPath, k.state) };
}

/**
 * Plays one case as guest `domid` through `guestSocket`, a socket carrying that guest's ring
 * (xensim's --guest-dir, or test/interop/ring-bridge.py on a real daemon's ring page); the state
 * is read below the guest's home through the dom0 socket.
 */
export async function runAsGuest(dom0Socket: string, guestSocket: string, domid: number, k: MalformedCase): Promise<Transcript> {
  const c = await play(guestSocket, Buffer.concat([k.bytes, probe()]), (col) => col.done);
  return { replies: c.replies, closed: c.closed, state: await readState(dom0Socket, k.state, `/local/domain/${domid}`) };
}

/** What libxl does before a guest runs: its home (`n0 r<domid>`), data/ owned by it, INTRODUCE. */
export async function introduceGuest(dom0Socket: string, domid: number): Promise<void> {
  const home = `/local/domain/${domid}`;
  const reqs = [
    msg(T.XS_MKDIR, 1, `${home}\0`), msg(T.XS_SET_PERMS, 2, `${home}\0n0\0r${domid}\0`),
    msg(T.XS_MKDIR, 3, `${home}/data\0`), msg(T.XS_SET_PERMS, 4, `${home}/data\0n${domid}\0`),
    msg(T.XS_INTRODUCE, 5, `${domid}\0${4711 + domid}\0${9 + domid}\0`),
  ];
  const c = await play(dom0Socket, Buffer.concat(reqs), (col) => col.replies.some((r) => r[1] === 5));
  const bad = c.replies.filter((r) => r[0] === 'ERROR');
  if (bad.length > 0 || c.closed) throw new Error(`introducing ${domid}: ${JSON.stringify(c)}`);
}

/** Checks a transcript against the recorded one; returns what differs ('' when it matches). */
export function compareTranscript(got: Transcript, want: Transcript): string {
  const problems: string[] = [];
  if (got.closed !== want.closed) problems.push(`closed: got ${got.closed}, recorded ${want.closed}`);
  if (JSON.stringify(got.state) !== JSON.stringify(want.state)) {
    problems.push(`state: got ${JSON.stringify(got.state)}, recorded ${JSON.stringify(want.state)}`);
  }
  // A connection C drops loses the replies it had not written yet (it frees its output queue),
  // depending on its poll rounds; xensim answers every request before the violation. So what C
  // sent must be a prefix of what xensim sent; otherwise they must be equal.
  const g = JSON.stringify(want.closed ? got.replies.slice(0, want.replies.length) : got.replies);
  if (g !== JSON.stringify(want.replies)) {
    problems.push(`replies: got ${JSON.stringify(got.replies)}, recorded ${JSON.stringify(want.replies)}`);
  }
  return problems.join('; ');
}

const BRIDGE = path.join(REPO_ROOT, 'test', 'interop', 'ring-bridge.py');

/** One case as guest `domid` on a real daemon's ring page (through ring-bridge.py). */
export async function runOnOracleRing(d: Daemon, domid: number, k: MalformedCase): Promise<Transcript> {
  await introduceGuest(d.socket, domid);
  const guestDir = path.join(d.dir, 'guests');
  const bridge = new Proc(PYTHON3, [BRIDGE, path.join(ORACLE_DIR, 'xs-probe.py'), d.ringDir!, guestDir, String(domid), '--close-on-error']);
  try {
    await bridge.until((o) => o.includes('listening'), 'ring-bridge.py');
    return await runAsGuest(d.socket, path.join(guestDir, String(domid)), domid, k);
  } finally {
    bridge.kill();
  }
}
