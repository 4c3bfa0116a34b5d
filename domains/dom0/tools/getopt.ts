// GNU getopt_long as the xenstore client tools see it (glibc semantics): short option clusters,
// "-nARG" / "-n ARG", unambiguous long-option prefixes, "--name=value", "--" to end options, and
// permutation (operands may appear between options). Errors are returned in order, with the text
// glibc prints, so a caller can print them at the point where glibc would.

export interface LongOption {
  readonly name: string;
  readonly hasArg: boolean;
  /** The short option character this long option stands for. */
  readonly val: string;
}

export type GetoptItem =
  | { readonly opt: string; readonly optarg?: string }
  /** getopt returned '?': `message` (without a trailing newline) goes to stderr. */
  | { readonly opt: '?'; readonly message: string };

export interface GetoptResult {
  readonly items: GetoptItem[];
  /** Non-option arguments, in their original order (what is left after permutation). */
  readonly operands: string[];
}

/**
 * Parses `args` (argv without argv[0]). `optstring` is the short option spec ("hfn:"); `prog` is
 * argv[0] as glibc puts it in front of its messages. With `posixlyCorrect`, options end at the
 * first operand (POSIXLY_CORRECT).
 */
export function getoptLong(
  args: readonly string[],
  optstring: string,
  longopts: readonly LongOption[],
  prog: string,
  posixlyCorrect = false,
): GetoptResult {
  const items: GetoptItem[] = [];
  const operands: string[] = [];
  const shortHasArg = (c: string): boolean | undefined => {
    if (c === ':') return undefined;
    const i = optstring.indexOf(c);
    if (i < 0) return undefined;
    return optstring[i + 1] === ':';
  };

  let i = 0;
  while (i < args.length) {
    const arg = args[i++];
    if (arg === '--') {
      operands.push(...args.slice(i));
      break;
    }
    if (arg.length < 2 || arg[0] !== '-') {
      operands.push(arg);
      if (posixlyCorrect) {
        operands.push(...args.slice(i));
        break;
      }
      continue;
    }
    if (arg[1] === '-') {
      // Long option.
      const text = arg.slice(2);
      const eq = text.indexOf('=');
      const name = eq < 0 ? text : text.slice(0, eq);
      let found = longopts.find((o) => o.name === name);
      if (found === undefined) {
        const matches = longopts.filter((o) => o.name.startsWith(name));
        const distinct = matches.filter(
          (o) => o.hasArg !== matches[0].hasArg || o.val !== matches[0].val,
        );
        if (matches.length > 1 && distinct.length > 0) {
          items.push({
            opt: '?',
            message:
              `${prog}: option '--${text}' is ambiguous; possibilities:` +
              matches.map((o) => ` '--${o.name}'`).join(''),
          });
          continue;
        }
        found = matches[0];
      }
      if (found === undefined) {
        items.push({ opt: '?', message: `${prog}: unrecognized option '--${text}'` });
        continue;
      }
      if (eq >= 0) {
        if (!found.hasArg) {
          items.push({ opt: '?', message: `${prog}: option '--${found.name}' doesn't allow an argument` });
          continue;
        }
        items.push({ opt: found.val, optarg: text.slice(eq + 1) });
      } else if (found.hasArg) {
        if (i >= args.length) {
          items.push({ opt: '?', message: `${prog}: option '--${found.name}' requires an argument` });
          continue;
        }
        items.push({ opt: found.val, optarg: args[i++] });
      } else {
        items.push({ opt: found.val });
      }
      continue;
    }
    // A cluster of short options.
    for (let j = 1; j < arg.length; j++) {
      const c = arg[j];
      const hasArg = shortHasArg(c);
      if (hasArg === undefined) {
        items.push({ opt: '?', message: `${prog}: invalid option -- '${c}'` });
        continue;
      }
      if (!hasArg) {
        items.push({ opt: c });
        continue;
      }
      if (j + 1 < arg.length) {
        items.push({ opt: c, optarg: arg.slice(j + 1) });
      } else if (i < args.length) {
        items.push({ opt: c, optarg: args[i++] });
      } else {
        items.push({ opt: '?', message: `${prog}: option requires an argument -- '${c}'` });
      }
      break;
    }
  }
  return { items, operands };
}

/** C's atoi (glibc: (int) strtol(s, NULL, 10), which clamps to the 64-bit long range first). */
export function atoi(s: string): number {
  const m = /^[ \t\n\v\f\r]*([+-]?)(\d+)/.exec(s);
  if (m === null) return 0;
  let v = BigInt(m[2]);
  const max = (1n << 63n) - 1n;
  if (m[1] === '-') v = v > max + 1n ? -(max + 1n) : -v;
  else if (v > max) v = max;
  return Number(BigInt.asIntN(32, v));
}
