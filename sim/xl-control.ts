// The control socket of a running `xensim up`: `xensim xl` (or any client) sends toolstack verbs
// to the host's Xl. JSON lines over a Unix socket: one request per line,
//   {"id": 1, "verb": "list", "args": {}}
// one response line per request, with the same id (requests on one connection may overlap):
//   {"id": 1, "ok": true, "result": {...}}   or   {"id": 1, "ok": false, "error": "message"}
// Domains are named by name or domid (`domain`), as xl takes them.
import { unlinkSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import net from 'node:net';
import * as z from 'zod';
import { DiskSchema, GuestSchema, VifSchema } from './config.ts';
import type { DiskConfig, DomainConfig, VifConfig } from '../domains/dom0/toolstack/config.ts';
import { backendPath, frontendPath, type DeviceRef } from '../domains/dom0/toolstack/libxl.ts';
import { vdevFromName } from '../hypervisor/public/io/blkif.ts';
import { ShutdownReason } from '../hypervisor/public/sched.ts';
import { type RestoreResult, SaveRestoreError, type Xl } from './xl.ts';
import { socketPathBusy } from './socket-path.ts';
import { MigratePipe, streamWriter } from './migrate-pipe.ts';
import { MigrateError, type MigrateReceiveResult, migrateReceive, migrateSend } from './xl-migrate.ts';
import { lendReads, openMigrateChannel } from './xl-migrate-transport.ts';
import { type BlockRow, LineSplitter, type ListRow, type NicRow, XL_CONTROL_LINE_MAX, XlError, type XlResponse } from './xl-control-client.ts';

export { DEFAULT_CONTROL, LineSplitter, XL_CONTROL_LINE_MAX, XL_CONTROL_REPLY_MAX, XlError, xlRequest } from './xl-control-client.ts';
export type { BlockRow, ListRow, NicRow, XlResponse } from './xl-control-client.ts';

const Domain = z.union([z.string().min(1), z.int().min(0)], { error: 'domain: expected a name or domid' });
const On = z.object({ domain: Domain });
const SaveFile = z.string({ error: 'file: expected a path' }).refine((f) => isAbsolute(f), { error: 'file: expected an absolute path (the host writes it)' });
const TRIGGERS = ['power', 'sleep', 's3resume', 'nmi', 'init', 'reset'] as const;

/** Each verb's arguments. */
const Args = {
  list: z.object({ domains: z.array(Domain).optional(), long: z.boolean().optional() }),
  create: z.object({ config: GuestSchema, paused: z.boolean().optional() }),
  destroy: On,
  shutdown: On.extend({ wait: z.boolean().optional() }),
  reboot: On.extend({ wait: z.boolean().optional() }),
  pause: On,
  unpause: On,
  'block-attach': On.extend({ disk: DiskSchema }),
  'block-detach': On.extend({ vdev: z.union([z.string(), z.int()]), force: z.boolean().optional() }),
  'block-list': On,
  'network-attach': On.extend({ vif: VifSchema.optional() }),
  'network-detach': On.extend({ device: z.union([z.string(), z.int()]), force: z.boolean().optional() }),
  'network-list': On,
  trigger: On.extend({ name: z.enum(TRIGGERS, { error: `expected one of ${TRIGGERS.join(', ')}` }), vcpu: z.int().min(0).optional() }),
  console: On,
  domid: On,
  domname: On,
  'xenstore-ls': z.object({ path: z.string().optional() }),
  // The file is the host's (xl runs there): `xensim xl` sends it absolute, from its own cwd.
  save: On.extend({ file: SaveFile, checkpoint: z.boolean().optional() }),
  // xl restore [CONFIG] FILE: the config, when given, in place of the one saved in the file.
  restore: z.object({ file: SaveFile, paused: z.boolean().optional(), config: GuestSchema.optional() }),
  // xl migrate [-s SSHCOMMAND] DOM HOST: the host runs the sender (cwd: where relative paths in
  // HOST or the command are meant). migrate-receive is not here: it turns its connection into the
  // stream (XlControlServer).
  // xenstore: 'seed' is the project seed's migration of the guest's xenstore state (not Xen's).
  migrate: On.extend({
    host: z.string().min(1, { error: 'host: expected a host, a command or a control socket' }), sshCommand: z.string().optional(), cwd: z.string().optional(),
    xenstore: z.enum(['xen', 'seed'], { error: 'xenstore: expected xen (the default: nothing copied) or seed' }).optional(),
  }),
  // xensim's own: a command for the guest's user space (domains/domU/guest.ts's GuestCommand);
  // bytes travel as base64.
  guest: On.extend({ command: z.looseObject({ cmd: z.string() }) }),
} as const;

export type XlVerb = keyof typeof Args;
export const XL_VERBS = Object.keys(Args) as XlVerb[];

export interface XlRequest {
  readonly id?: number | string;
  readonly verb: string;
  readonly args?: Record<string, unknown>;
}

/** The verbs, against one host's Xl. */
export class XlControl {
  /** When each domain was first seen (for list's Time column). */
  private readonly born = new Map<number, number>();
  private readonly started = Date.now();
  /** xl create takes a lock: names are checked and domids chosen one create at a time. */
  private creating: Promise<unknown> = Promise.resolve();

  constructor(readonly xl: Xl) {}

  async handle(verb: string, rawArgs: unknown): Promise<unknown> {
    if (!Object.hasOwn(Args, verb)) throw new XlError(`unknown verb ${JSON.stringify(verb)} (verbs: ${XL_VERBS.join(', ')})`);
    const v = verb as XlVerb;
    const parsed = Args[v].safeParse(rawArgs ?? {});
    if (!parsed.success) {
      const iss = parsed.error.issues[0];
      throw new XlError(`${verb}: ${iss.path.length ? `${iss.path.join('.')}: ` : ''}${iss.message}`);
    }
    return this.run(v, parsed.data as Record<string, unknown>);
  }

  private async run(verb: XlVerb, a: Record<string, unknown>): Promise<unknown> {
    const xl = this.xl;
    switch (verb) {
      case 'list': {
        const want = (a.domains as (string | number)[] | undefined)?.map((d) => this.domid(d));
        const rows = this.list().filter((r) => !want || want.includes(r.id));
        if (!a.long) return rows;
        return rows.map((r) => ({ domid: r.id, config: r.id === 0 ? { name: 'Domain-0' } : xl.domains.get(r.id)?.cfg }));
      }
      case 'create':
        return this.create(a.config as DomainConfig, Boolean(a.paused));
      case 'destroy': {
        const domid = this.guest(a.domain, 'destroy');
        await xl.destroy(domid);
        return { domid };
      }
      case 'shutdown':
      case 'reboot': {
        const domid = this.guest(a.domain, verb);
        const from = xl.events.length;
        const name = xl.domains.get(domid)!.cfg.name;
        const r = await xl.shutdown(domid, verb === 'reboot' ? 'reboot' : 'poweroff', { wait: Boolean(a.wait) });
        if (r.shutDown !== undefined) throw new XlError(`domain ${domid} is already shut down (reason ${r.shutDown.replace(/^SHUTDOWN_/, '')})`);
        if (!r.acked) throw new XlError(`domain ${domid} did not acknowledge the ${verb} request (no PV control interface?)`);
        const ev = xl.events.slice(from).find((e) => e.domid === domid);
        const reason = ev?.event === 'shutdown' ? ShutdownReason[ev.reason as keyof typeof ShutdownReason] : undefined;
        const now = [...xl.domains.values()].find((d) => d.cfg.name === name && d.domid !== domid);
        return { domid, waited: Boolean(a.wait), event: ev?.event, reason, restartedAs: now?.domid };
      }
      case 'pause': {
        const domid = this.guest(a.domain, 'pause');
        await xl.pause(domid);
        return { domid };
      }
      case 'unpause': {
        const domid = this.guest(a.domain, 'unpause');
        if ((xl.rt.host.domains.get(domid)?.pauseCount ?? 0) === 0) throw new XlError(`domain ${domid} is not paused`);
        await xl.unpause(domid);
        return { domid };
      }
      case 'block-attach': {
        const domid = this.guest(a.domain, 'attach a disk to');
        const dev = await xl.blockAttach(domid, a.disk as DiskConfig);
        return { domid, devid: dev.devid };
      }
      case 'block-detach': {
        const domid = this.guest(a.domain, 'detach a disk from');
        const vdev = String(a.vdev);
        const devid = vdevFromName(vdev);
        if (devid === undefined) throw new XlError(`invalid virtual disk ${vdev}`);
        if (!(await xl.devices(domid)).some((d) => d.kind === 'vbd' && d.devid === devid)) throw new XlError(`Device ${vdev} not connected.`);
        const r = await xl.blockDetach(domid, String(devid), Boolean(a.force));
        return { domid, devid, clean: r.clean };
      }
      case 'block-list':
        return this.blockList(this.guest(a.domain, 'list the disks of'));
      case 'network-attach': {
        const domid = this.guest(a.domain, 'attach a NIC to');
        const dev = await xl.networkAttach(domid, (a.vif ?? {}) as VifConfig);
        return { domid, devid: dev.devid };
      }
      case 'network-detach': {
        const domid = this.guest(a.domain, 'detach a NIC from');
        const nics = await this.nicList(domid);
        const want = String(a.device);
        const nic = /^[0-9]+$/.test(want) ? nics.find((n) => n.idx === Number(want)) : nics.find((n) => n.mac.toLowerCase() === want.toLowerCase());
        if (!nic) throw new XlError(`Unknown device ${want}.`);
        const r = await xl.networkDetach(domid, nic.idx, Boolean(a.force));
        return { domid, devid: nic.idx, clean: r.clean };
      }
      case 'network-list':
        return this.nicList(this.guest(a.domain, 'list the NICs of'));
      case 'trigger': {
        const domid = this.guest(a.domain, 'send a trigger to');
        try {
          await xl.trigger(domid, a.name as (typeof TRIGGERS)[number]);
        } catch (e) {
          throw new XlError(`setting trigger failed: ${e instanceof Error ? e.message : String(e)}`);
        }
        return { domid };
      }
      case 'console': {
        const domid = this.guest(a.domain, 'open the console of');
        return { domid, text: await xl.console(domid) };
      }
      case 'domid':
        return { domid: this.domid(a.domain as string | number) };
      case 'domname': {
        const domid = this.domid(a.domain as string | number);
        return { name: domid === 0 ? 'Domain-0' : xl.domains.get(domid)!.cfg.name };
      }
      case 'save': {
        const domid = this.guest(a.domain, 'save');
        try {
          return await xl.save(domid, a.file as string, { checkpoint: Boolean(a.checkpoint) });
        } catch (e) {
          if (e instanceof SaveRestoreError) throw new XlError(e.message);
          throw e;
        }
      }
      case 'restore':
        return this.restore(a.file as string, Boolean(a.paused), a.config as DomainConfig | undefined);
      case 'migrate': {
        const domid = this.guest(a.domain, 'migrate');
        const log: string[] = [];
        const pipe = await openMigrateChannel(a.host as string, { sshCommand: a.sshCommand as string | undefined, cwd: a.cwd as string | undefined, log: (l) => log.push(l) });
        try {
          const r = await migrateSend(xl, domid, pipe, { xenstore: a.xenstore as 'xen' | 'seed' | undefined });
          return { ...r, log: [...log, ...r.log] };
        } catch (e) {
          if (e instanceof MigrateError) throw new XlError([...log, ...e.log, e.message].join('\n'));
          throw e;
        }
      }
      case 'guest': {
        const domid = this.guest(a.domain, 'run a command in');
        const cmd = { ...(a.command as Record<string, unknown>) };
        if (typeof cmd.data === 'string') cmd.data = new Uint8Array(Buffer.from(cmd.data, 'base64'));
        const r = await xl.guest(domid, cmd as Parameters<Xl['guest']>[1]);
        return Object.fromEntries(Object.entries(r).filter(([k]) => k !== 'cmd' && k !== 'id')
          .map(([k, v]) => [k, v instanceof Uint8Array ? Buffer.from(v).toString('base64') : v]));
      }
      case 'xenstore-ls': {
        const path = (a.path as string | undefined) ?? '/';
        if (!path.startsWith('/')) throw new XlError(`xenstore-ls: ${path}: not an absolute path`);
        return xl.dump(path);
      }
    }
  }

  /** xl list's rows (xl's state letters: r b p s c d). */
  list(): ListRow[] {
    const now = Date.now();
    return this.xl.list().map((r) => {
      if (!this.born.has(r.id)) this.born.set(r.id, r.id === 0 ? this.started : now);
      return { ...r, time: (now - this.born.get(r.id)!) / 1000 };
    });
  }

  /** xl create, as the control socket's verb does it (name check, creation time). */
  async create(config: DomainConfig, paused = false): Promise<{ domid: number; name: string }> {
    const run = this.creating.then(async () => {
      if ([...this.xl.domains.values()].some((d) => d.cfg.name === config.name) || config.name === 'Domain-0') {
        throw new XlError(`domain with name "${config.name}" already exists.`);
      }
      if (config.domid !== undefined && this.xl.rt.host.domains.has(config.domid)) throw new XlError(`domid ${config.domid} is in use`);
      const domid = await this.xl.create(config, { paused });
      this.born.set(domid, Date.now());
      return { domid, name: config.name };
    });
    this.creating = run.catch(() => undefined);
    return run;
  }

  /** xl restore: under the create lock (the saved name must be free), then as a create. */
  async restore(file: string, paused = false, config?: DomainConfig): Promise<RestoreResult & { name: string }> {
    const run = this.creating.then(async () => {
      try {
        const r = await this.xl.restore(file, { paused, config });
        this.born.set(r.domid, Date.now());
        return { ...r, name: this.xl.domains.get(r.domid)?.cfg.name ?? '' };
      } catch (e) {
        if (e instanceof SaveRestoreError) throw new XlError(e.message);
        throw e;
      }
    });
    this.creating = run.catch(() => undefined);
    return run;
  }

  /** xl migrate-receive on an open pipe, under the create lock (the incoming name must be free). */
  async migrateReceive(pipe: MigratePipe): Promise<MigrateReceiveResult> {
    const run = this.creating.then(async () => {
      const r = await migrateReceive(this.xl, pipe);
      this.born.set(r.domid, Date.now());
      return r;
    });
    this.creating = run.catch(() => undefined);
    return run;
  }

  /** A domain named by name or domid, as libxl_domain_qualifier_to_domid finds it. */
  domid(d: string | number | unknown): number {
    const s = String(d);
    if (/^[0-9]+$/.test(s)) {
      const id = Number(s);
      if (id === 0 || this.xl.domains.has(id)) return id;
    } else if (s === 'Domain-0') {
      return 0;
    } else {
      for (const x of this.xl.domains.values()) if (x.cfg.name === s) return x.domid;
    }
    throw new XlError(`${s} is an invalid domain identifier`);
  }

  /** A guest (not dom0) for a verb that makes no sense on dom0 here. */
  private guest(d: unknown, what: string): number {
    const domid = this.domid(d);
    if (domid === 0) throw new XlError(`cannot ${what} Domain-0`);
    return domid;
  }

  private async read(path: string): Promise<string | undefined> {
    return (await this.xl.rt.toolstack<string | null>('read', { path })) ?? undefined;
  }

  private async num(path: string): Promise<number> {
    const v = await this.read(path);
    return v === undefined || v === '' || Number.isNaN(Number(v)) ? -1 : Number(v);
  }

  private async ofKind(domid: number, kind: DeviceRef['kind']): Promise<DeviceRef[]> {
    return (await this.xl.devices(domid)).filter((d) => d.kind === kind).sort((a, b) => a.devid - b.devid);
  }

  /** libxl_device_disk_getinfo for each disk: the frontend's state, port and ring ref. */
  async blockList(domid: number): Promise<BlockRow[]> {
    const out: BlockRow[] = [];
    for (const dev of await this.ofKind(domid, 'vbd')) {
      const fe = frontendPath(dev);
      const be = backendPath(dev);
      out.push({
        vdev: dev.devid, dev: (await this.read(`${be}/dev`)) ?? String(dev.devid), be: dev.backend, handle: dev.frontend,
        state: await this.num(`${fe}/state`), beState: await this.num(`${be}/state`), evtch: await this.num(`${fe}/event-channel`),
        ringRef: await this.num(`${fe}/ring-ref`), bePath: be,
      });
    }
    return out;
  }

  /** libxl_device_nic_getinfo for each NIC. */
  async nicList(domid: number): Promise<NicRow[]> {
    const out: NicRow[] = [];
    for (const dev of await this.ofKind(domid, 'vif')) {
      const fe = frontendPath(dev);
      const be = backendPath(dev);
      out.push({
        idx: dev.devid, be: dev.backend, mac: (await this.read(`${be}/mac`)) ?? '', handle: dev.devid,
        state: await this.num(`${fe}/state`), beState: await this.num(`${be}/state`), evtch: await this.num(`${fe}/event-channel`),
        txRingRef: await this.num(`${fe}/tx-ring-ref`), rxRingRef: await this.num(`${fe}/rx-ring-ref`), bePath: be,
      });
    }
    return out;
  }
}

const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** A `migrate-receive` request line (its id), else undefined. */
function migrateReceiveRequest(line: string): { id?: number | string } | undefined {
  if (!line.includes('migrate-receive')) return undefined;
  try {
    const req = JSON.parse(line) as XlRequest;
    return req && typeof req === 'object' && req.verb === 'migrate-receive' ? { id: req.id } : undefined;
  } catch {
    return undefined;
  }
}

/** Serves an XlControl on a Unix socket, JSON lines. */
export class XlControlServer {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  constructor(readonly path: string, readonly control: XlControl, private readonly log: (line: string) => void = () => undefined) {
    this.server = net.createServer((s) => this.serve(s));
  }

  /** Whether this server bound `path` (and so may remove it). */
  private bound = false;

  /** Listens at `path`; refuses if it is not free (see socketPathBusy), replaces a stale socket file. */
  async listen(): Promise<void> {
    const busy = await socketPathBusy(this.path);
    if (busy) throw new XlError(busy);
    try {
      unlinkSync(this.path);
    } catch {
      // nothing there
    }
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.path, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.bound = true;
  }

  private serve(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    const lines = new LineSplitter(XL_CONTROL_LINE_MAX);
    // Requests still being answered, and whether the client was cut off (then the socket ends
    // once they are answered).
    let inFlight = 0;
    let cutOff = false;
    // After a migrate-receive request the connection carries the migration streams.
    let stream: MigratePipe | undefined;
    socket.on('data', (chunk: Buffer) => {
      if (stream) {
        stream.push(chunk);
        return;
      }
      if (cutOff) return;
      const got = lines.push(chunk);
      if (got === 'overflow') {
        cutOff = true;
        this.reply(socket, { ok: false, error: `bad request: a line longer than ${XL_CONTROL_LINE_MAX} bytes without a newline` });
        if (inFlight === 0) socket.end();
        return;
      }
      for (const [i, raw] of got.entries()) {
        const line = raw.trim();
        if (!line) continue;
        const mr = migrateReceiveRequest(line);
        if (mr) {
          // The client waits for this reply before it sends the stream: nothing may be pending.
          if (inFlight > 0 || i < got.length - 1) {
            this.reply(socket, { id: mr.id, ok: false, error: 'migrate-receive: must be the only request on its connection' });
            socket.end();
            cutOff = true;
            return;
          }
          this.reply(socket, { id: mr.id, ok: true, result: { receiving: true } });
          const pipe = new MigratePipe(streamWriter(socket), 'migration stream');
          stream = pipe;
          // The stream's reads go to the pipe in buffers of its own (the 'data' path above stays
          // for a Node without the fields lendReads sets).
          lendReads(socket, pipe);
          socket.once('end', () => pipe.end());
          socket.once('close', () => pipe.end());
          void this.control.migrateReceive(pipe).then(
            (r) => {
              for (const l of r.log) this.log(l);
              this.log(`migrate-receive: domain ${r.domid} running (${r.pages} pages, ${r.pagesResent} resent, memory sha256 ${r.hash})`);
            },
            (e: unknown) => {
              for (const l of e instanceof MigrateError ? e.log : []) this.log(l);
              this.log(`migrate-receive: ${errorText(e)}`);
            },
          ).finally(() => socket.end());
          return;
        }
        inFlight++;
        void this.answer(socket, line).finally(() => {
          if (--inFlight === 0 && cutOff) socket.end();
        });
      }
    });
  }

  private async answer(socket: net.Socket, line: string): Promise<void> {
    let req: XlRequest;
    try {
      req = JSON.parse(line) as XlRequest;
      if (typeof req !== 'object' || req === null || typeof req.verb !== 'string') throw new Error('expected {"verb": ..., "args": {...}}');
    } catch (e) {
      this.reply(socket, { ok: false, error: `bad request: ${errorText(e)}` });
      return;
    }
    let res: XlResponse;
    try {
      res = { id: req.id, ok: true, result: await this.control.handle(req.verb, req.args) };
    } catch (e) {
      // Errors the caller caused are its answer; anything else is also logged here.
      if (!(e instanceof XlError)) this.log(`xl ${req.verb}: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
      res = { id: req.id, ok: false, error: errorText(e) };
    }
    this.reply(socket, res);
  }

  private reply(socket: net.Socket, res: XlResponse): void {
    if (!socket.destroyed && !socket.writableEnded) socket.write(`${JSON.stringify(res)}\n`);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    if (!this.bound) return;
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    try {
      unlinkSync(this.path);
    } catch {
      // already gone (net.Server removes its socket file on close)
    }
  }
}
