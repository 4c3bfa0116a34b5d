// Host and guest configuration files: the YAML a `xensim up CONFIG` boots, and the guest file
// `xensim xl create` takes (the same guest in YAML, or a subset of a real xl.cfg). Guests are
// DomainConfig, in xl.cfg's terms. Every error names the file, the line and the field.
import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument } from 'yaml';
import * as z from 'zod';
import type { DiskConfig, DomainConfig, VifConfig } from '../domains/dom0/toolstack/config.ts';
import { vdevFromName } from '../hypervisor/public/io/blkif.ts';
import { GUEST_DOMIDS } from '../hypervisor/domain.ts';
import { DOMID_FIRST_RESERVED } from '../hypervisor/public/xen.ts';

/** A configuration error: one line per problem, ready to print (no stack trace wanted). */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** What a field must be, said once: the message when it is missing or wrong. */
const expect = (what: string) => (iss: { input?: unknown }): string => (iss.input === undefined ? `missing (${what})` : `expected ${what}`);

const intIn = (what: string, min: number, max = Number.MAX_SAFE_INTEGER) =>
  z.int({ error: expect(what) }).min(min, { error: expect(what) }).max(max, { error: expect(what) });

/** xl refuses names it could not put in a path or a command line. */
const DomainName = z.string({ error: expect('a domain name') })
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.:+-]*$/, { error: expect('a domain name (letters, digits, _ . : + -)') })
  .max(64, { error: expect('a domain name of at most 64 characters') });

const Action = z.enum(['destroy', 'restart', 'preserve'], { error: expect('destroy, restart or preserve') });

export const DiskSchema = z.strictObject({
  vdev: z.string({ error: expect('a virtual device name such as xvda') })
    .refine((v) => vdevFromName(v) !== undefined, { error: expect('a virtual device name (xvda, sdb, hdc, d0p1 or a number)') }),
  target: z.string({ error: expect('a disk image name') }).min(1, { error: expect('a disk image name') }),
  sizeMiB: intIn('a size in MiB, 1 to 65536', 1, 65536).optional(),
  mode: z.enum(['w', 'r'], { error: expect('w or r') }).optional(),
  devtype: z.enum(['disk', 'cdrom'], { error: expect('disk or cdrom') }).optional(),
});

export const VifSchema = z.strictObject({
  mac: z.string({ error: expect('a MAC address') })
    .regex(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i, { error: expect('a MAC address such as 00:16:3e:00:00:01') }).optional(),
  bridge: z.string({ error: expect('a bridge name') }).min(1, { error: expect('a bridge name') }).optional(),
  devid: intIn('a device id, 0 or more', 0, 0xffff).optional(),
});

export const GuestSchema = z.strictObject({
  name: DomainName,
  uuid: z.string({ error: expect('a uuid') })
    .regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i, { error: expect('a uuid') }).optional(),
  memory: intIn('a size in MiB, 1 or more', 1).optional(),
  vcpus: intIn('a vCPU count, 1 to 128', 1, 128).optional(),
  type: z.enum(['pv', 'hvm'], { error: expect('pv or hvm') }).optional(),
  // DOMID_FIRST_RESERVED is 0x7ff0; 0 is dom0's.
  domid: intIn(`a domid, 1 to ${GUEST_DOMIDS}`, 1, GUEST_DOMIDS).optional(),
  disks: z.array(DiskSchema, { error: expect('a list of disks') }).optional(),
  vifs: z.array(VifSchema, { error: expect('a list of NICs') }).optional(),
  on_poweroff: Action.optional(),
  on_reboot: Action.optional(),
  on_crash: Action.optional(),
  on_watchdog: Action.optional(),
}).superRefine((g, ctx) => {
  const seen = new Map<number, number>();
  for (const [i, d] of (g.disks ?? []).entries()) {
    const n = vdevFromName(d.vdev)!;
    if (seen.has(n)) ctx.addIssue({ code: 'custom', path: ['disks', i, 'vdev'], message: `the same device as disks[${seen.get(n)}]` });
    seen.set(n, i);
  }
  const ids = new Map<number, number>();
  for (const [i, v] of (g.vifs ?? []).entries()) {
    const n = v.devid ?? i;
    if (ids.has(n)) ctx.addIssue({ code: 'custom', path: ['vifs', i, 'devid'], message: `devid ${n} is taken by vifs[${ids.get(n)}]` });
    ids.set(n, i);
  }
});

/**
 * Why a host cannot have `guests` guests besides `others` other domains (a xenstore domain), if
 * it cannot: each needs a domid, and Xen has 32,751 to give. Checked before anything boots, so a
 * config past it fails at once rather than 32,751 creates in.
 */
export function tooManyGuests(guests: number, others = 0): string | undefined {
  const left = GUEST_DOMIDS - others;
  if (guests <= left) return undefined;
  const besides = others ? ` besides ${others} other domain${others === 1 ? '' : 's'}` : '';
  return `${guests} guests${besides}, but a Xen host has ${left} domids for them (1 to ${GUEST_DOMIDS}: 0 is dom0's, DOMID_FIRST_RESERVED is 0x${DOMID_FIRST_RESERVED.toString(16)})`;
}

export const HostConfigSchema = z.strictObject({
  seed: intIn('a seed, 0 to 4294967295', 0, 0xffffffff).optional(),
  mode: z.enum(['free', 'lockstep'], { error: expect('free or lockstep') }).optional(),
  profile: z.enum(['c', 'ocaml'], { error: expect('c or ocaml') }).optional(),
  guests: z.array(GuestSchema, { error: expect('a list of guests') }).default([]),
}).superRefine((h, ctx) => {
  const many = tooManyGuests(h.guests.length);
  if (many) ctx.addIssue({ code: 'custom', path: ['guests'], message: many });
  const names = new Map<string, number>();
  const domids = new Map<number, number>();
  for (const [i, g] of h.guests.entries()) {
    if (names.has(g.name)) ctx.addIssue({ code: 'custom', path: ['guests', i, 'name'], message: `guests[${names.get(g.name)}] has this name already` });
    names.set(g.name, i);
    if (g.domid === undefined) continue;
    if (domids.has(g.domid)) ctx.addIssue({ code: 'custom', path: ['guests', i, 'domid'], message: `guests[${domids.get(g.domid)}] has this domid already` });
    domids.set(g.domid, i);
  }
});

export interface HostConfig {
  readonly seed?: number;
  readonly mode?: 'free' | 'lockstep';
  readonly profile?: 'c' | 'ocaml';
  readonly guests: readonly DomainConfig[];
}

// Both schemas produce what the toolstack takes.
type Assignable<A extends B, B> = A;
export type _Checks = [
  Assignable<z.output<typeof GuestSchema>, DomainConfig>, Assignable<z.output<typeof DiskSchema>, DiskConfig>,
  Assignable<z.output<typeof VifSchema>, VifConfig>, Assignable<z.output<typeof HostConfigSchema>, HostConfig>,
];

const pathText = (path: readonly PropertyKey[]): string =>
  path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`)).join('');

const show = (v: unknown): string => {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
};

/** Validates parsed data; `where(path)` names the source line of a field, if known. */
function validate<S extends z.ZodType>(schema: S, data: unknown, file: string, where: (path: readonly PropertyKey[]) => string = () => ''): z.output<S> {
  const r = schema.safeParse(data, { reportInput: true });
  if (r.success) return r.data;
  const lines = r.error.issues.map((iss) => {
    if (iss.code === 'unrecognized_keys') {
      return iss.keys.map((k) => {
        const p = [...iss.path, k];
        return `${file}${where(p)}: ${pathText(p)}: unknown field`;
      }).join('\n');
    }
    const field = iss.path.length ? pathText(iss.path) : '(top level)';
    // A cross-field check's input is the whole object: its message says enough.
    const shown = iss.input !== undefined && !(iss.code === 'custom' && typeof iss.input === 'object');
    const got = shown ? `, got ${show(iss.input)}` : '';
    return `${file}${where(iss.path)}: ${field}: ${iss.message}${got}`;
  });
  throw new ConfigError(lines.join('\n'));
}

/** Deepest nesting a config may have (a real one needs four: guests, a guest, disks, a disk). */
export const CONFIG_DEPTH_MAX = 32;
/** Alias expansions a YAML config may make (yaml's own default, kept explicit: an alias bomb stops here). */
export const YAML_ALIAS_MAX = 100;

/**
 * Where a YAML text nests flow collections ([ ], { }) deeper than CONFIG_DEPTH_MAX, if it does.
 * The parser recurses per level: without this bound, deep brackets overflow its stack.
 */
function flowTooDeep(text: string): number | undefined {
  let depth = 0;
  let line = 1;
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\n') line++;
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === '\\' && quote === '"') i++;
    } else if (c === '"' || c === "'") {
      quote = c;
    } else if (c === '#' && (i === 0 || /\s/.test(text[i - 1]))) {
      while (i + 1 < text.length && text[i + 1] !== '\n') i++;
    } else if (c === '[' || c === '{') {
      if (++depth > CONFIG_DEPTH_MAX) return line;
    } else if (c === ']' || c === '}') {
      depth = Math.max(0, depth - 1);
    }
  }
  return undefined;
}

/** Parses YAML text; syntax errors and duplicate keys become ConfigErrors with line:column. */
function parseYaml(text: string, file: string): { data: unknown; where: (path: readonly PropertyKey[]) => string } {
  const deep = flowTooDeep(text);
  if (deep !== undefined) throw new ConfigError(`${file}:${deep}: nested more than ${CONFIG_DEPTH_MAX} levels deep`);
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: true });
  if (doc.errors.some((e) => e.message.includes('Maximum call stack size exceeded'))) {
    throw new ConfigError(`${file}: nested too deeply to parse`);
  }
  if (doc.errors.length) {
    throw new ConfigError(doc.errors.map((e) => {
      const at = e.linePos?.[0];
      return `${file}${at ? `:${at.line}:${at.col}` : ''}: ${e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')}`;
    }).join('\n'));
  }
  const where = (path: readonly PropertyKey[]): string => {
    // The deepest node on the path that exists (an unknown key's own node, or its parent's).
    for (let n = path.length; n >= 0; n--) {
      const node = doc.getIn(path.slice(0, n) as unknown[], true) as { range?: [number, number, number] } | undefined;
      if (node && typeof node === 'object' && node.range) return `:${lc.linePos(node.range[0]).line}`;
      // An unknown key's value node is found through its pair.
      if (n === path.length && n > 0) {
        const parent = doc.getIn(path.slice(0, n - 1) as unknown[], true) as { items?: { key: { value?: unknown; range?: [number, number, number] } }[] } | undefined;
        const pair = parent?.items?.find((it) => it.key?.value === path[n - 1]);
        if (pair?.key.range) return `:${lc.linePos(pair.key.range[0]).line}`;
      }
    }
    return '';
  };
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: YAML_ALIAS_MAX });
  } catch (e) {
    // yaml throws a ReferenceError past maxAliasCount; a RangeError is a stack overflow.
    if (e instanceof ReferenceError) throw new ConfigError(`${file}: aliases expand too much (more than ${YAML_ALIAS_MAX} expansions; an alias bomb?)`);
    if (e instanceof RangeError) throw new ConfigError(`${file}: nested too deeply to read`);
    throw e;
  }
  return { data, where };
}

/** A host config (`xensim up CONFIG`) from its text. */
export function parseHostConfig(text: string, file = 'config'): HostConfig {
  const { data, where } = parseYaml(text, file);
  if (data === null || data === undefined) throw new ConfigError(`${file}: empty file (expected a mapping with guests:)`);
  if (typeof data !== 'object' || Array.isArray(data)) throw new ConfigError(`${file}: expected a mapping with seed, mode, guests`);
  return validate(HostConfigSchema, data, file, where);
}

export function loadHostConfig(file: string): HostConfig {
  return parseHostConfig(readText(file), file);
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ConfigError(`${file}: cannot read (${code === 'ENOENT' ? 'no such file' : code ?? String(e)})`);
  }
}

export function validateGuest(data: unknown, file = 'config'): DomainConfig {
  return validate(GuestSchema, data, file);
}

export function validateDisk(data: unknown, file = 'disk'): DiskConfig {
  return validate(DiskSchema, data, file);
}

export function validateVif(data: unknown, file = 'vif'): VifConfig {
  return validate(VifSchema, data, file);
}

// ------------------------------------------------------------------ xl.cfg (a subset)

/** The guest of `xl create FILE`: YAML (one guest, as in a host config), or xl.cfg syntax. */
export interface GuestFile {
  readonly config: DomainConfig;
  /** xl.cfg keys xensim reads but does not simulate (kernel, extra, ...). */
  readonly ignored: string[];
}

export function loadGuestFile(file: string): GuestFile {
  return parseGuestFile(readText(file), file);
}

/** xl.cfg is `key = value` lines; YAML would be `key: value`. */
const looksLikeXlCfg = (text: string): boolean => /^\s*[A-Za-z_][A-Za-z0-9_-]*\s*=/m.test(text.replace(/#.*$/gm, ''));

export function parseGuestFile(text: string, file = 'config'): GuestFile {
  if (looksLikeXlCfg(text)) return parseXlCfg(text, file);
  const { data, where } = parseYaml(text, file);
  if (data === null || typeof data !== 'object' || Array.isArray(data)) throw new ConfigError(`${file}: expected a guest: a mapping with name, memory, disks ...`);
  return { config: validate(GuestSchema, data, file, where), ignored: [] };
}

type CfgValue = string | number | CfgValue[];

/** Keys of a real xl.cfg that have no meaning here; read and ignored. */
const XLCFG_IGNORED = new Set([
  'kernel', 'ramdisk', 'extra', 'root', 'cmdline', 'bootloader', 'bootloader_args', 'maxmem', 'maxvcpus', 'cpus',
  'builder', 'device_model_version', 'serial', 'vnc', 'vnclisten', 'sdl', 'boot', 'firmware', 'pvh', 'acpi', 'apic',
  'pae', 'hap', 'viridian', 'usb', 'usbdevice', 'vga', 'videoram', 'localtime', 'rtc_timeoffset', 'seclabel', 'vfb',
  'channel', 'p9', 'pvcalls', 'vkb', 'vdispl', 'vsnd', 'soundhw', 'pci', 'dtdev', 'iomem', 'ioports', 'irqs',
  'shadow_memory', 'cpu_weight', 'cap', 'driver_domain', 'max_grant_frames', 'max_maptrack_frames', 'device_model_args',
]);

/**
 * A real xl.cfg subset: name, uuid, memory, vcpus, type (or builder="hvm"), disk = [ ... ]
 * (xl-disk-configuration: target/format/vdev/access, positional or key=value; xensim adds
 * size=MiB), vif = [ ... ] (mac, bridge, devid), on_poweroff/on_reboot/on_crash/on_watchdog.
 */
export function parseXlCfg(text: string, file = 'config'): GuestFile {
  const entries = new Map<string, { value: CfgValue; line: number }>();
  let pos = 0;
  let line = 1;
  const fail = (msg: string, at = line): never => {
    throw new ConfigError(`${file}:${at}: ${msg}`);
  };
  const skip = (newlines: boolean): void => {
    for (;;) {
      const c = text[pos];
      if (c === '#') {
        while (pos < text.length && text[pos] !== '\n') pos++;
      } else if (c === ' ' || c === '\t' || c === '\r' || c === ';' || (newlines && c === '\n')) {
        if (c === '\n') line++;
        pos++;
      } else {
        return;
      }
    }
  };
  const value = (depth = 0): CfgValue => {
    if (depth > CONFIG_DEPTH_MAX) fail(`lists nested more than ${CONFIG_DEPTH_MAX} levels deep`);
    skip(false);
    const c = text[pos];
    if (c === '"' || c === "'") {
      const end = text.indexOf(c, pos + 1);
      if (end < 0 || text.slice(pos, end).includes('\n')) fail('unterminated string');
      const s = text.slice(pos + 1, end);
      pos = end + 1;
      return s.replace(/\\(.)/g, '$1');
    }
    if (c === '[') {
      pos++;
      const items: CfgValue[] = [];
      for (;;) {
        skip(true);
        if (text[pos] === ']') {
          pos++;
          return items;
        }
        items.push(value(depth + 1));
        skip(true);
        if (text[pos] === ',') pos++;
        else if (text[pos] !== ']') fail(`expected , or ] in a list`);
      }
    }
    const m = /^(0x[0-9a-f]+|-?[0-9]+)/i.exec(text.slice(pos));
    if (!m) fail(`expected a string, number or list`);
    pos += m![0].length;
    return Number(m![0]);
  };
  for (;;) {
    skip(true);
    if (pos >= text.length) break;
    const m = /^([A-Za-z_][A-Za-z0-9_-]*)\s*=/.exec(text.slice(pos));
    if (!m) fail(`expected key = value`);
    const key = m![1];
    const at = line;
    pos += m![0].length;
    entries.set(key, { value: value(), line: at });
    skip(false);
    if (pos < text.length && text[pos] !== '\n') fail(`unexpected text after the value of ${key}`);
  }

  const cfg: Record<string, unknown> = {};
  const ignored: string[] = [];
  const str = (key: string, v: CfgValue, at: number): string => (typeof v === 'string' ? v : fail(`${key}: expected a string`, at));
  const num = (key: string, v: CfgValue, at: number): number => (typeof v === 'number' ? v : /^[0-9]+$/.test(String(v)) ? Number(v) : fail(`${key}: expected a number`, at));
  const list = (key: string, v: CfgValue, at: number): string[] =>
    (Array.isArray(v) ? v.map((x) => str(key, x, at)) : typeof v === 'string' ? [v] : fail(`${key}: expected a list of strings`, at));
  for (const [key, { value: v, line: at }] of entries) {
    switch (key) {
      case 'name': case 'uuid': case 'on_poweroff': case 'on_reboot': case 'on_crash': case 'on_watchdog':
        cfg[key] = str(key, v, at);
        break;
      case 'memory': case 'vcpus':
        cfg[key] = num(key, v, at);
        break;
      case 'type':
        cfg.type = str(key, v, at);
        break;
      case 'builder':
        if (v === 'hvm' && !entries.has('type')) cfg.type = 'hvm';
        ignored.push(key);
        break;
      case 'disk':
        cfg.disks = list(key, v, at).map((spec, i) => parseDiskSpec(spec, `${file}:${at}: disk[${i}]`));
        break;
      case 'vif':
        cfg.vifs = list(key, v, at).map((spec, i) => parseVifSpec(spec, `${file}:${at}: vif[${i}]`));
        break;
      default:
        if (XLCFG_IGNORED.has(key)) ignored.push(key);
        else fail(`${key}: not an xl.cfg option xensim knows`, at);
    }
  }
  const line1 = (p: readonly PropertyKey[]): string => {
    const key = p[0] === 'disks' ? 'disk' : p[0] === 'vifs' ? 'vif' : String(p[0]);
    const e = entries.get(key);
    return e ? `:${e.line}` : '';
  };
  return { config: validate(GuestSchema, cfg, file, line1), ignored };
}

const splitSpec = (spec: string): string[] => spec.split(',').map((s) => s.trim()).filter((s) => s !== '');

/**
 * xl-disk-configuration: `[target=]TARGET, format=…, vdev=…, access=…, devtype=…`; positional
 * parameters are target, format, vdev, access in that order; `target=` takes the rest of the
 * spec. xensim adds size=MiB (the size of a new image) and takes `vdev:cdrom` as devtype=cdrom.
 */
export function parseDiskSpec(spec: string, where = 'disk'): DiskConfig {
  const out: Record<string, unknown> = {};
  const positional = ['target', 'format', 'vdev', 'access'];
  let rest = spec;
  const t = /(^|,)\s*target=/.exec(rest);
  if (t) {
    out.target = rest.slice(t.index + t[0].length).trim();
    rest = rest.slice(0, t.index);
  }
  let n = 0;
  const parts = rest.split(',').map((x) => x.trim());
  // A trailing comma before target= leaves an empty last part that is no parameter.
  if (t && parts.length && parts[parts.length - 1] === '') parts.pop();
  for (const part of parts) {
    if (part === '') {
      // An empty positional parameter keeps its default.
      n++;
      continue;
    }
    const kv = /^([a-z-]+)=(.*)$/.exec(part);
    let key: string;
    let val: string;
    if (kv) {
      [, key, val] = kv;
    } else {
      while (n < positional.length && out[positional[n]] !== undefined) n++;
      if (n >= positional.length) throw new ConfigError(`${where}: too many positional parameters in "${spec}"`);
      key = positional[n++];
      val = part;
    }
    switch (key) {
      case 'target':
        out.target = val;
        break;
      case 'vdev':
        if (val.endsWith(':cdrom')) {
          out.devtype = 'cdrom';
          val = val.slice(0, -':cdrom'.length);
        }
        out.vdev = val;
        break;
      case 'access':
        out.mode = /^(r|ro)$/.test(val) ? 'r' : /^(w|rw)$/.test(val) ? 'w' : val;
        break;
      case 'devtype':
        out.devtype = val;
        break;
      case 'size':
        out.sizeMiB = /^[0-9]+M?$/i.test(val) ? parseInt(val, 10) : val;
        break;
      case 'format':
        if (!['raw', ''].includes(val)) throw new ConfigError(`${where}: format=${val}: xensim's images are raw`);
        break;
      case 'backendtype': case 'script': case 'discard': case 'no-discard': case 'direct-io-safe': case 'specification':
        break;
      default:
        throw new ConfigError(`${where}: unknown disk parameter ${key} in "${spec}"`);
    }
  }
  return validate(DiskSchema, out, where);
}

/** xl-network-configuration: `mac=…, bridge=…` (and devid=); other keys are read and ignored. */
export function parseVifSpec(spec: string, where = 'vif'): VifConfig {
  const out: Record<string, unknown> = {};
  for (const part of splitSpec(spec)) {
    const kv = /^([a-z_-]+)=(.*)$/.exec(part);
    if (!kv) throw new ConfigError(`${where}: expected key=value, got "${part}"`);
    const [, key, val] = kv;
    switch (key) {
      case 'mac': case 'bridge':
        out[key] = val;
        break;
      case 'devid':
        out.devid = /^[0-9]+$/.test(val) ? Number(val) : val;
        break;
      case 'ip': case 'script': case 'model': case 'type': case 'vifname': case 'rate': case 'backend': case 'gatewaydev': case 'mtu':
        break;
      default:
        throw new ConfigError(`${where}: unknown vif parameter ${key} in "${spec}"`);
    }
  }
  return validate(VifSchema, out, where);
}
