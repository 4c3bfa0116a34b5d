// `xensim xenstore <verb>`: the XenStore client tools (xenstore-ls, xenstore-read, xenstore-write,
// xenstore-rm, xenstore-list, xenstore-exists, xenstore-watch, xenstore-chmod), with the options,
// output bytes, messages and exit codes of Debian's xenstore-utils 4.17. They reach xenstored
// through the socket named by $XENSTORED_PATH, like libxenstore.
//
// Behaviour was settled by running the real tools against the real C xenstored (see
// test/dom0/tools/xenstore-cli.test.ts). Messages are printed as the `xenstore-<verb>` programs
// print them (program name "xenstore-<verb>").
//
// Strings in here are "byte strings": latin1, one char per byte, so argv bytes, node names and
// values reach stdout unchanged.
import type { Command } from 'commander';
import { atoi, getoptLong, type LongOption } from './getopt.ts';
import { XBT_NULL, XsError, XsHandle, xsDaemonSocket, type XsTransaction } from '../../libs/store/xs.ts';

export const XENSTORE_VERBS = ['ls', 'read', 'write', 'rm', 'list', 'exists', 'watch', 'chmod', 'mkdir'] as const;
export type XenstoreVerb = (typeof XENSTORE_VERBS)[number];

const DESCRIPTIONS: Record<XenstoreVerb, string> = {
  ls: 'print a subtree with values (xenstore-ls)',
  read: 'print the values of keys (xenstore-read)',
  write: 'write key/value pairs (xenstore-write)',
  rm: 'remove keys and their subtrees (xenstore-rm)',
  list: 'print the children of keys (xenstore-list)',
  exists: 'exit 0 if all keys exist, 1 otherwise (xenstore-exists)',
  watch: 'print the paths of watch events (xenstore-watch)',
  chmod: 'set the permissions of keys (xenstore-chmod)',
  mkdir: 'create nodes with empty values (xensim only; xenstore-utils has no xenstore-mkdir)',
};

/** Usage lines of the 4.17 tools (they still mention the removed -s, which is accepted and ignored). */
const USAGE: Record<XenstoreVerb, string> = {
  read: '[-h] [-p] [-s] [-R] key [...]',
  write: '[-h] [-s] [-R] key value [...]',
  rm: '[-h] [-s] [-t] key [...]',
  exists: '[-h] [-p] [-s] key [...]',
  list: '[-h] [-p] [-s] key [...]',
  ls: '[-h] [-f] [-p] [-s] [path]',
  chmod: '[-h] [-u] [-r] [-s] key <mode [modes...]>',
  watch: '[-h] [-n NR] key',
  mkdir: '[-h] [-s] key [...]',
};

const LONG_OPTIONS: readonly LongOption[] = [
  { name: 'help', hasArg: false, val: 'h' },
  { name: 'flat', hasArg: false, val: 'f' },
  { name: 'prefix', hasArg: false, val: 'p' },
  { name: 'tidy', hasArg: false, val: 't' },
  { name: 'upto', hasArg: false, val: 'u' },
  { name: 'recurse', hasArg: false, val: 'r' },
  { name: 'number', hasArg: true, val: 'n' },
  { name: 'raw', hasArg: false, val: 'R' },
];
const OPTSTRING = 'hfspturn:R';

const INT_MAX = 0x7fffffff;
/** xenstore_client.c: maximum length of a child path built by chmod -r (snprintf into 256). */
const MAX_PATH_LEN = 256;
/** Width of ` = "..."`, which ls keeps free at the end of a line. */
const TAG_LEN = 8;

/** glibc's strerror() texts for the errno values xenstored and sockets produce. */
const STRERROR: Record<string, string> = {
  EPERM: 'Operation not permitted',
  ENOENT: 'No such file or directory',
  EIO: 'Input/output error',
  E2BIG: 'Argument list too long',
  EBADF: 'Bad file descriptor',
  EAGAIN: 'Resource temporarily unavailable',
  ENOMEM: 'Cannot allocate memory',
  EACCES: 'Permission denied',
  EBUSY: 'Device or resource busy',
  EEXIST: 'File exists',
  ENOTDIR: 'Not a directory',
  EISDIR: 'Is a directory',
  EINVAL: 'Invalid argument',
  ENOSPC: 'No space left on device',
  EROFS: 'Read-only file system',
  EPIPE: 'Broken pipe',
  ENOSYS: 'Function not implemented',
  ENOTEMPTY: 'Directory not empty',
  ENOTSOCK: 'Socket operation on non-socket',
  EISCONN: 'Transport endpoint is already connected',
  ECONNRESET: 'Connection reset by peer',
  ECONNREFUSED: 'Connection refused',
};

function strerror(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && STRERROR[code] !== undefined) return STRERROR[code];
  return e instanceof Error ? e.message : String(e);
}

/** Escapes a value as sanitise_value() does: printable ASCII except '\' as is; \t \n \r \\; \ooo below 8; \xNN. */
export function sanitiseValue(val: Uint8Array): string {
  let out = '';
  let run = 0; // start of the current run of plain characters
  for (let i = 0; i < val.length; i++) {
    const c = val[i];
    if (c >= 0x20 && c <= 0x7e && c !== 0x5c) continue;
    if (run < i) out += Buffer.from(val.buffer, val.byteOffset + run, i - run).toString('latin1');
    run = i + 1;
    switch (c) {
      case 0x09: out += '\\t'; break;
      case 0x0a: out += '\\n'; break;
      case 0x0d: out += '\\r'; break;
      case 0x5c: out += '\\\\'; break;
      default:
        out += c < 8 ? `\\${c.toString(8).padStart(3, '0')}` : `\\x${c.toString(16).padStart(2, '0')}`;
    }
  }
  if (run < val.length) out += Buffer.from(val.buffer, val.byteOffset + run, val.length - run).toString('latin1');
  return out;
}

const isCSpace = (c: number | undefined): boolean => c === 0x20 || (c !== undefined && c >= 0x09 && c <= 0x0d);
const hexVal = (c: number | undefined): number => {
  if (c === undefined) return -1;
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  return l >= 0x61 && l <= 0x66 ? l - 0x61 + 10 : -1;
};

/**
 * sscanf(s + at, "%2x%n") as glibc does it: skips white space, then reads at most 2 characters of
 * an optional sign, an optional "0x" prefix and hex digits. Returns [value, chars used] or null.
 */
function scanHex2(s: Uint8Array, at: number): [number, number] | null {
  let i = at;
  while (isCSpace(s[i])) i++;
  let width = 2;
  let neg = false;
  if (s[i] === 0x2b || s[i] === 0x2d) {
    neg = s[i] === 0x2d;
    i++;
    width--;
  }
  let v = 0;
  let digits = 0;
  if (width > 0 && s[i] === 0x30) {
    i++;
    width--;
    digits++;
    if (width > 0 && (s[i] === 0x78 || s[i] === 0x58)) {
      i++;
      width--;
    }
  }
  while (width > 0 && hexVal(s[i]) >= 0) {
    v = v * 16 + hexVal(s[i]);
    i++;
    width--;
    digits++;
  }
  if (digits === 0) return null;
  return [neg ? -v : v, i - at];
}

/** Undoes sanitise_value() for xenstore-write (unsanitise_value, quirks included). */
export function unsanitiseValue(input: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(input.length + 1);
  let o = 0;
  let i = 0;
  // The C code walks a NUL-terminated string: stop at the first NUL.
  const end = (() => {
    const z = input.indexOf(0);
    return z < 0 ? input.length : z;
  })();
  const at = (k: number): number => (k < end ? input[k] : 0);
  while (i < end) {
    let c = input[i++];
    if (c === 0x5c) {
      c = at(i++);
      switch (c) {
        case 0x74: c = 0x09; break; // t
        case 0x6e: c = 0x0a; break; // n
        case 0x72: c = 0x0d; break; // r
        case 0x5c: break;
        case 0x78: { // x: up to two hex digits, else a plain 'x'
          const r = scanHex2(input.subarray(0, end), i);
          if (r !== null) {
            c = r[0] & 0xff;
            i += r[1];
          }
          break;
        }
        case 0x30: case 0x31: case 0x32: case 0x33:
        case 0x34: case 0x35: case 0x36: case 0x37: { // up to three octal digits
          i--;
          let v = 0;
          let n = 0;
          while (n < 3 && at(i) >= 0x30 && at(i) <= 0x37) {
            v = v * 8 + at(i) - 0x30;
            i++;
            n++;
          }
          c = v & 0xff;
          break;
        }
        case 0: // a trailing backslash becomes a NUL byte
          i--;
          break;
        default: // any other escaped character stands for itself
          break;
      }
    }
    out[o++] = c;
  }
  return out.subarray(0, o);
}

/** Thrown to leave a tool with an exit status, as err()/errx()/exit() do. */
class Exit extends Error {
  constructor(readonly status: number) {
    super(`exit ${status}`);
  }
}

export interface XenstoreToolIo {
  /** Receives everything the tool writes to stdout (bytes). */
  stdout(b: Buffer): void;
  stderr(b: Buffer): void;
  /** Terminal width when stdout is a terminal (TIOCGWINSZ), else undefined. */
  columns?: number;
  /** Environment (XENSTORED_PATH, POSIXLY_CORRECT). */
  env?: NodeJS.ProcessEnv;
  /** Called once the tool is fully set up for watching (tests use it); optional. */
  onWatching?(): void;
}

/** Converts a JS string from argv into a byte string (its UTF-8 bytes, one char per byte). */
export function argvBytes(s: string): string {
  return Buffer.from(s, 'utf8').toString('latin1');
}

interface Opts {
  prefix: boolean;
  tidy: boolean;
  upto: boolean;
  recurse: boolean;
  nrWatches: number;
  raw: boolean;
  maxWidth: number;
  desiredWidth: number;
  showWholePath: boolean;
}

/** One run of a tool: the state xenstore_client.c keeps in globals. */
class Tool {
  private output: Buffer[] = []; // output(): written at the end, after the transaction
  private stdio: Buffer[] = []; // printf(): stdio, flushed at exit
  private readonly prog: string;

  constructor(
    private readonly mode: XenstoreVerb,
    private readonly io: XenstoreToolIo,
  ) {
    this.prog = `xenstore-${mode}`;
  }

  // --- C library stand-ins -----------------------------------------------------------------

  private warnx(msg: string): void {
    this.flushStdio();
    this.io.stderr(Buffer.from(`${this.prog}: ${msg}\n`, 'latin1'));
  }

  private warn(msg: string, e: unknown): void {
    this.warnx(`${msg}: ${strerror(e)}`);
  }

  private errx(status: number, msg: string): never {
    this.warnx(msg);
    throw new Exit(status);
  }

  private err(status: number, msg: string, e: unknown): never {
    this.warn(msg, e);
    throw new Exit(status);
  }

  private usage(): never {
    const mstr = '';
    this.errx(1, `Usage: ${this.prog} ${mstr}${USAGE[this.mode]}`);
  }

  private printf(s: string | Buffer): void {
    this.stdio.push(typeof s === 'string' ? Buffer.from(s, 'latin1') : s);
  }

  private outputStr(s: string | Buffer): void {
    this.output.push(typeof s === 'string' ? Buffer.from(s, 'latin1') : s);
  }

  private flushStdio(): void {
    if (this.stdio.length === 0) return;
    this.io.stdout(this.stdio.length === 1 ? this.stdio[0] : Buffer.concat(this.stdio));
    this.stdio = [];
  }

  // --- main --------------------------------------------------------------------------------

  async run(args: readonly string[]): Promise<number> {
    let h: XsHandle | undefined;
    try {
      const { opts, operands } = this.parse(args);
      try {
        h = await XsHandle.open(xsDaemonSocket(this.io.env ?? process.env));
      } catch (e) {
        this.err(1, 'xs_open', e);
      }
      const status = await this.main(h, opts, operands);
      this.flushStdio();
      return status;
    } catch (e) {
      this.flushStdio();
      if (e instanceof Exit) return e.status;
      throw e;
    } finally {
      await h?.close();
    }
  }

  private parse(args: readonly string[]): { opts: Opts; operands: string[] } {
    const opts: Opts = {
      prefix: false,
      tidy: false,
      upto: false,
      recurse: false,
      nrWatches: -1,
      raw: false,
      maxWidth: 80,
      desiredWidth: 60,
      showWholePath: false,
    };
    const env = this.io.env ?? process.env;
    const { items, operands } = getoptLong(args, OPTSTRING, LONG_OPTIONS, this.prog, env.POSIXLY_CORRECT !== undefined);
    const mode = this.mode;
    for (const item of items) {
      switch (item.opt) {
        case '?':
          if ('message' in item) this.warnxRaw(item.message);
          break;
        case 'h':
          this.usage();
          break;
        case 'f':
          if (mode !== 'ls') this.usage();
          opts.maxWidth = Math.floor(INT_MAX / 2);
          opts.desiredWidth = 0;
          opts.showWholePath = true;
          break;
        case 'p':
          if (mode !== 'read' && mode !== 'list' && mode !== 'ls') this.usage();
          opts.prefix = true;
          break;
        case 't':
          if (mode !== 'rm') this.usage();
          opts.tidy = true;
          break;
        case 'u':
          if (mode !== 'chmod') this.usage();
          opts.upto = true;
          break;
        case 'r':
          if (mode !== 'chmod') this.usage();
          opts.recurse = true;
          break;
        case 'n':
          if (mode !== 'watch') this.usage();
          opts.nrWatches = atoi('optarg' in item ? (item.optarg ?? '') : '');
          break;
        case 'R':
          if (mode !== 'read' && mode !== 'write') this.usage();
          opts.raw = true;
          break;
        default: // -s: the socket-only option, gone in 4.17 but still accepted
          break;
      }
    }
    if (mode === 'write' && operands.length % 2 === 1) this.usage();
    if (mode !== 'ls' && operands.length === 0) this.usage();
    if (mode === 'ls' && this.io.columns !== undefined) opts.maxWidth = this.io.columns - 2;
    return { opts, operands };
  }

  private warnxRaw(message: string): void {
    this.flushStdio();
    this.io.stderr(Buffer.from(`${message}\n`, 'latin1'));
  }

  private async main(h: XsHandle, opts: Opts, operands: string[]): Promise<number> {
    let transaction: boolean;
    switch (this.mode) {
      case 'read':
        transaction = operands.length > 1;
        break;
      case 'write':
        transaction = operands.length > 2;
        break;
      case 'ls':
      case 'watch':
        transaction = false;
        break;
      case 'rm':
      case 'list':
      case 'exists':
      case 'chmod':
      case 'mkdir':
        transaction = true;
        break;
    }
    for (;;) {
      let tx: XsTransaction = XBT_NULL;
      if (transaction) {
        try {
          tx = await h.transactionStart();
        } catch {
          this.errx(1, "couldn't start transaction");
        }
      }
      const ret = await this.perform(h, tx, opts, operands);
      if (transaction) {
        let ended: boolean;
        try {
          ended = await h.transactionEnd(tx, ret === 0); // false: EAGAIN
        } catch {
          this.errx(1, "couldn't end transaction");
        }
        if (!ended) {
          if (ret !== 0) this.errx(1, "couldn't end transaction");
          this.output = []; // conflict: run the whole thing again
          continue;
        }
      }
      this.flushStdio();
      if (this.output.length > 0) this.io.stdout(Buffer.concat(this.output));
      this.output = [];
      return ret;
    }
  }

  private async perform(h: XsHandle, tx: XsTransaction, opts: Opts, operands: string[]): Promise<number> {
    const mode = this.mode;
    if (mode === 'ls' && operands.length === 0) operands = ['/'];
    if (mode === 'watch') return this.doWatch(h, operands, opts.nrWatches);
    if (mode === 'chmod') {
      const [path, ...specs] = operands;
      const perms = specs.map((spec) => {
        const letter = spec.length > 0 ? spec[0] : '\0';
        if (!'nrwb'.includes(letter)) this.errx(1, `Invalid permission specification: '${letter}'`);
        return `${letter}${atoi(spec.slice(1))}`;
      });
      await this.doChmod(h, tx, path, perms, opts.upto, opts.recurse);
      return 0;
    }
    for (let i = 0; i < operands.length; i++) {
      const key = operands[i];
      switch (mode) {
        case 'read': {
          let val: Buffer;
          try {
            val = await h.read(key, tx);
          } catch {
            this.warnx(`couldn't read path ${key}`);
            return 1;
          }
          if (opts.prefix) this.outputStr(`${key}: `);
          if (opts.raw) this.outputStr(Buffer.from(val));
          else this.outputStr(`${sanitiseValue(val)}\n`);
          break;
        }
        case 'write': {
          const spec = operands[++i];
          const val = opts.raw ? Buffer.from(spec, 'latin1') : unsanitiseValue(Buffer.from(spec, 'latin1'));
          try {
            await h.write(key, val, tx);
          } catch {
            this.warnx(`could not write path ${key}`);
            return 1;
          }
          break;
        }
        case 'mkdir':
          try {
            await h.mkdir(key, tx);
          } catch {
            this.warnx(`could not create path ${key}`);
            return 1;
          }
          break;
        case 'rm':
          if (await this.doRm(h, tx, key, opts.tidy)) return 1;
          break;
        case 'exists':
          try {
            await h.read(key, tx);
          } catch {
            return 1;
          }
          break;
        case 'list': {
          let list: string[];
          try {
            list = await h.directory(key, tx);
          } catch {
            this.warnx(`could not list path ${key}`);
            return 1;
          }
          // 4.17 prints "//name" for "/" (later Xen drops the extra slash).
          for (const name of list) this.outputStr(opts.prefix ? `${key}/${name}\n` : `${name}\n`);
          break;
        }
        case 'ls':
          await this.doLs(h, key, 0, opts);
          break;
      }
    }
    return 0;
  }

  /** Returns 1 (after a warning) when a removal failed. */
  private async doRm(h: XsHandle, tx: XsTransaction, key: string, tidy: boolean): Promise<number> {
    let path = key;
    for (;;) {
      try {
        await h.rm(path, tx);
      } catch {
        this.warnx(`could not remove path ${path}`);
        return 1;
      }
      if (!tidy) return 0;
      // Tidy: also remove ancestors that are now empty and have no value.
      const slash = path.lastIndexOf('/');
      if (slash < 0) return 0;
      path = path.slice(0, slash);
      let again = false;
      try {
        const val = await h.read(path, tx);
        if (val.length === 0) again = (await h.directory(path, tx)).length === 0;
      } catch {
        again = false;
      }
      if (!again) return 0;
    }
  }

  private async doLs(h: XsHandle, path: string, depth: number, opts: Opts): Promise<void> {
    let names: string[];
    try {
      names = await h.directory(path);
    } catch (e) {
      // A node that vanishes while we recurse is skipped silently.
      if (depth > 0 && e instanceof XsError && e.code === 'ENOENT') return;
      this.err(1, `xs_directory (${path})`, e);
    }
    const sep = path.endsWith('/') ? '' : '/';
    const paths = names.map((n) => `${path}${sep}${n}`);
    // Fetch the values (and permissions) of all children at once; print in order.
    const vals = paths.map((p) => h.read(p).then((v) => v, () => null));
    const perms = opts.prefix
      ? paths.map((p) => h.getPerms(p).then((v) => v, (e: unknown) => e))
      : undefined;
    for (let i = 0; i < names.length; i++) {
      const { maxWidth } = opts;
      let linewid = 0;
      if (opts.showWholePath) {
        this.printf(paths[i]);
      } else {
        this.printf(' '.repeat(depth));
        linewid = depth;
        const name = precision(names[i], maxWidth - TAG_LEN - linewid);
        this.printf(name);
        linewid += name.length;
      }
      const val = await vals[i];
      if (val === null) {
        this.printf(':\n');
      } else {
        const sane = sanitiseValue(val);
        // C compares as size_t: a negative width never truncates.
        if (maxWidth >= 0 && maxWidth < linewid + val.length + TAG_LEN) {
          this.printf(` = "${precision(sane, maxWidth - TAG_LEN - linewid)}\\..."`);
        } else {
          const s = ` = "${sane}"`;
          this.printf(s);
          linewid += s.length;
          if (opts.prefix) {
            let pad = ' ';
            const stop = Math.min(opts.desiredWidth, maxWidth);
            for (linewid++; linewid < stop; linewid++) pad += linewid & 1 ? '.' : ' ';
            this.printf(pad);
          }
        }
      }
      if (perms !== undefined) {
        const p = await perms[i];
        if (Array.isArray(p)) this.printf(`  (${p.join(',')})`);
        else this.warn(`\ncould not access permissions for ${names[i]}`, p);
      }
      this.printf('\n');
      await this.doLs(h, paths[i], depth + 1, opts);
    }
  }

  private async doChmod(
    h: XsHandle,
    tx: XsTransaction,
    path: string,
    perms: string[],
    upto: boolean,
    recurse: boolean,
  ): Promise<void> {
    if (path === '') return;
    try {
      await h.setPerms(path, perms, tx);
    } catch (e) {
      this.err(1, `Error occurred setting permissions on '${path}'`, e);
    }
    if (upto) {
      const slash = path.lastIndexOf('/');
      if (slash < 0) this.errx(1, `Unable to locate path separator '/' in '${path}'`);
      await this.doChmod(h, tx, path.slice(0, slash), perms, true, false);
    }
    if (recurse) {
      let children: string[];
      try {
        children = await h.directory(path, tx);
      } catch {
        return;
      }
      for (const child of children) {
        const p = `${path}/${child}`.slice(0, MAX_PATH_LEN - 1);
        await this.doChmod(h, tx, p, perms, false, true);
      }
    }
  }

  private async doWatch(h: XsHandle, keys: string[], maxEvents: number): Promise<number> {
    const queue: string[] = [];
    let wake: (() => void) | undefined;
    let closed = false;
    h.on('watch', (path) => {
      queue.push(path);
      wake?.();
    });
    h.on('close', () => {
      closed = true;
      wake?.();
    });
    for (const w of keys) {
      try {
        await h.watch(w, w);
      } catch {
        this.errx(1, `Unable to add watch on ${w}\n`);
      }
    }
    this.io.onWatching?.();
    for (let count = 0; maxEvents === -1 || count < maxEvents; count++) {
      while (queue.length === 0) {
        if (closed) {
          // libxenstore's xs_read_watch would fail from now on; -n N then runs out, -1 never ends.
          if (maxEvents === -1) this.errx(1, 'xs_read_watch: connection to xenstored lost');
          return 0;
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
      this.io.stdout(Buffer.from(`${queue.shift()}\n`, 'latin1'));
    }
    return 0;
  }
}

/** printf("%.*s"): at most `prec` characters; a negative precision means no limit. */
function precision(s: string, prec: number): string {
  return prec >= 0 && s.length > prec ? s.slice(0, prec) : s;
}

/**
 * Runs one tool as `xenstore-<verb> args...` would and resolves with its exit status.
 * `args` are byte strings (see argvBytes).
 */
export function runXenstoreTool(verb: XenstoreVerb, args: readonly string[], io: XenstoreToolIo): Promise<number> {
  return new Tool(verb, io).run(args);
}

/** The process's stdio as a XenstoreToolIo. */
export function processIo(): XenstoreToolIo {
  const out = process.stdout;
  // The C tools die of SIGPIPE when their reader goes away (`xenstore-watch /a | head -1`);
  // Node ignores SIGPIPE, so leave with the status a shell reports for that death.
  out.once('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(128 + 13);
    throw e;
  });
  let columns: number | undefined;
  if (out.isTTY) columns = out.getWindowSize?.()[0] ?? out.columns;
  return {
    stdout: (b) => out.write(b),
    stderr: (b) => process.stderr.write(b),
    columns,
    env: process.env,
  };
}

/** The arguments after `xenstore <verb>` exactly as given (commander drops a leading "--"). */
function rawArgsAfter(cmd: Command, verb: string, fallback: readonly string[]): string[] {
  let root: Command = cmd;
  while (root.parent) root = root.parent;
  const raw = (root as Command & { rawArgs?: string[] }).rawArgs ?? [];
  const parentName = cmd.parent?.name() ?? 'xenstore';
  for (let i = 0; i + 1 < raw.length; i++) {
    if (raw[i] === parentName && raw[i + 1] === verb) return raw.slice(i + 2);
  }
  return [...fallback];
}

/** Adds `xenstore <verb>` subcommands to the xensim command line. */
export function registerXenstoreTools(program: Command): void {
  const xs = program
    .command('xenstore')
    .description('XenStore client tools, as in xenstore-utils (talk to $XENSTORED_PATH)');
  for (const verb of XENSTORE_VERBS) {
    xs.command(verb)
      .description(DESCRIPTIONS[verb])
      .usage(USAGE[verb])
      .helpOption(false)
      .allowUnknownOption()
      .allowExcessArguments()
      .argument('[args...]')
      .action(async (args: string[], _opts: unknown, cmd: Command) => {
        const argv = rawArgsAfter(cmd, verb, args).map(argvBytes);
        process.exitCode = await runXenstoreTool(verb, argv, processIo());
      });
  }
}
