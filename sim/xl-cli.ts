// `xensim xl <verb> …`: xl's verbs against a running `xensim up`, through its control socket
// (--host PATH, else $XENSIM_CONTROL, else /tmp/xensim/xl.sock), with xl's output.
import { resolve as resolvePath } from 'node:path';
import { type Command, Option } from 'commander';
import { type BlockRow, DEFAULT_CONTROL, type ListRow, type NicRow, XlError, xlRequest } from './xl-control-client.ts';
import { MIGRATE_RECEIVE_COMMAND, connectMigrateReceive } from './xl-migrate-transport.ts';
import { widenSendBuffer } from './socket-buffer.ts';
import type { NodeDump } from '../domains/dom0/toolstack/toolstack.ts';

const pad = (s: string | number, n: number): string => String(s).padEnd(n);
const rpad = (s: string | number, n: number): string => String(s).padStart(n);

/** xl list: `%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f` under xl's header. */
export function formatList(rows: readonly ListRow[]): string {
  let out = 'Name                                        ID   Mem VCPUs\tState\tTime(s)\n';
  for (const r of rows) out += `${pad(r.name, 40)} ${rpad(r.id, 5)} ${rpad(r.mem, 5)} ${rpad(r.vcpus, 5)}     ${r.state}  ${rpad(r.time.toFixed(1), 8)}\n`;
  return out;
}

/** xl block-list: Vdev BE handle state evt-ch ring-ref BE-path. */
export function formatBlockList(rows: readonly BlockRow[]): string {
  const line = (c: (string | number)[]): string =>
    `${pad(c[0], 5)} ${pad(c[1], 3)} ${pad(c[2], 6)} ${pad(c[3], 5)} ${pad(c[4], 6)} ${pad(c[5], 8)} ${pad(c[6], 30)}`.trimEnd() + '\n';
  let out = line(['Vdev', 'BE', 'handle', 'state', 'evt-ch', 'ring-ref', 'BE-path']);
  for (const r of rows) out += line([r.vdev, r.be, r.handle, r.state, r.evtch, r.ringRef, `${r.bePath}/`]);
  return out;
}

/** xl network-list: Idx BE Mac Addr. handle state evt-ch tx-/rx-ring-ref BE-path. */
export function formatNicList(rows: readonly NicRow[]): string {
  let out = `${pad('Idx', 3)} ${pad('BE', 2)} ${pad('Mac Addr.', 17)} ${pad('handle', 6)} ${pad('state', 5)} ${pad('evt-ch', 6)} ${rpad('tx-', 5)}/${pad('rx-ring-ref', 5)} BE-path\n`;
  for (const r of rows) {
    out += `${pad(r.idx, 3)} ${pad(r.be, 2)} ${pad(r.mac, 17)} ${pad(r.handle, 6)} ${pad(r.state, 5)} ${pad(r.evtch, 6)} ${rpad(r.txRingRef, 5)}/${pad(r.rxRingRef, 11)} ${r.bePath}/\n`;
  }
  return out;
}

interface Io {
  out(s: string): void;
  err(s: string): void;
}

const processIo: Io = { out: (s) => void process.stdout.write(s), err: (s) => void process.stderr.write(s) };

/** Runs one verb; prints `xl: <error>` and sets a non-zero exit code when it fails. */
async function run(cmd: Command, body: (call: (verb: string, args?: Record<string, unknown>) => Promise<unknown>, io: Io) => Promise<void>): Promise<void> {
  // `xl list | head`: a closed pipe ends the output, not the program with a stack trace.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
  });
  const g = cmd.optsWithGlobals<{ host?: string }>();
  const host = g.host ?? process.env.XENSIM_CONTROL ?? DEFAULT_CONTROL;
  try {
    await body((verb, args = {}) => xlRequest(host, verb, args), processIo);
  } catch (e) {
    if (!(e instanceof XlError || (e instanceof Error && e.name === 'ConfigError'))) throw e;
    processIo.err(`xl: ${e.message}\n`);
    process.exitCode = 1;
  }
}

export function registerXl(program: Command): void {
  const xl = program
    .command('xl')
    .description("xl's toolstack verbs against a running `xensim up` (its control socket)")
    .addOption(new Option('--host <path>', `the host's control socket (default ${DEFAULT_CONTROL})`).env('XENSIM_CONTROL'))
    .addHelpText('after', '\nDomains are named by name or domid, as with xl.');

  xl.command('list')
    .alias('li')
    .description('list domains (Name ID Mem VCPUs State Time(s)); Time is seconds since creation')
    .option('-l, --long', 'print each domain\'s configuration as JSON')
    .argument('[domain...]')
    .action(async (domains: string[], o: { long?: boolean }, cmd: Command) => run(cmd, async (call, io) => {
      const r = await call('list', { domains: domains.length ? domains : undefined, long: Boolean(o.long) });
      io.out(o.long ? `${JSON.stringify(r, null, 4)}\n` : formatList(r as ListRow[]));
    }));

  xl.command('create')
    .description('create a domain from a guest file: YAML (as one entry of a host config\'s guests) or an xl.cfg subset')
    .argument('<file>')
    .option('-p', 'leave the domain paused after it is created')
    .action(async (file: string, o: { p?: boolean }, cmd: Command) => run(cmd, async (call, io) => {
      io.err(`Parsing config from ${file}\n`);
      const { config, ignored } = (await import('./config.ts')).loadGuestFile(file);
      if (ignored.length) io.err(`xl: ignoring ${ignored.join(', ')} (not simulated)\n`);
      await call('create', { config, paused: Boolean(o.p) });
    }));

  for (const verb of ['destroy', 'pause', 'unpause'] as const) {
    xl.command(verb)
      .description({ destroy: 'terminate a domain immediately', pause: 'pause a domain', unpause: 'unpause a paused domain' }[verb])
      .argument('<domain>')
      .action(async (domain: string, _o: unknown, cmd: Command) => run(cmd, async (call) => {
        await call(verb, { domain });
      }));
  }

  for (const verb of ['shutdown', 'reboot'] as const) {
    xl.command(verb)
      .description(verb === 'shutdown' ? 'ask a domain to shut down (control/shutdown)' : 'ask a domain to reboot (control/shutdown)')
      .argument('<domain>')
      .option('-w', 'wait for the domain to shut down (and for what on_poweroff/on_reboot then does)')
      .action(async (domain: string, o: { w?: boolean }, cmd: Command) => run(cmd, async (call, io) => {
        const id = (await call('domid', { domain }) as { domid: number }).domid;
        io.err(`${verb === 'shutdown' ? 'Shutting down' : 'Rebooting'} domain ${id}\n`);
        if (o.w) io.err('Waiting for 1 domains\n');
        const r = await call(verb, { domain: id, wait: Boolean(o.w) }) as { event?: string; reason?: number };
        if (!o.w) return;
        if (r.event === 'shutdown') io.err(`Domain ${id} has been shut down, reason code ${r.reason ?? -1}\n`);
        else io.err(`Domain ${id} has been destroyed\n`);
      }));
  }

  xl.command('block-attach')
    .description("attach a disk: xl's disk spec, e.g. 'vdev=xvdc,access=rw,size=8,target=NAME' (size=MiB is xensim's; target= takes the rest)")
    .argument('<domain>')
    .argument('<disk-spec...>')
    .action(async (domain: string, spec: string[], _o: unknown, cmd: Command) => run(cmd, async (call) => {
      await call('block-attach', { domain, disk: (await import('./config.ts')).parseDiskSpec(spec.join(','), 'disk spec') });
    }));

  xl.command('block-detach')
    .description('detach a disk by its virtual device (xvdb or 51728)')
    .argument('<domain>')
    .argument('<vdev>')
    .option('-f, --force', 'remove it without waiting for the guest')
    .action(async (domain: string, vdev: string, o: { force?: boolean }, cmd: Command) => run(cmd, async (call, io) => {
      const r = await call('block-detach', { domain, vdev, force: Boolean(o.force) }) as { clean: boolean };
      if (!r.clean) io.err(`xl: ${vdev}: the backend did not close in time; removed anyway\n`);
    }));

  xl.command('block-list')
    .description("list a domain's disks (frontend state, port, ring ref)")
    .argument('<domain>')
    .action(async (domain: string, _o: unknown, cmd: Command) => run(cmd, async (call, io) => {
      io.out(formatBlockList(await call('block-list', { domain }) as BlockRow[]));
    }));

  xl.command('network-attach')
    .description("attach a NIC: xl's vif spec, e.g. mac=00:16:3e:00:00:09 bridge=xenbr0")
    .argument('<domain>')
    .argument('[vif-spec...]')
    .action(async (domain: string, spec: string[], _o: unknown, cmd: Command) => run(cmd, async (call) => {
      await call('network-attach', { domain, vif: (await import('./config.ts')).parseVifSpec(spec.join(','), 'vif spec') });
    }));

  xl.command('network-detach')
    .description('detach a NIC by devid or MAC')
    .argument('<domain>')
    .argument('<devid|mac>')
    .option('-f, --force', 'remove it without waiting for the guest')
    .action(async (domain: string, device: string, o: { force?: boolean }, cmd: Command) => run(cmd, async (call, io) => {
      const r = await call('network-detach', { domain, device, force: Boolean(o.force) }) as { clean: boolean };
      if (!r.clean) io.err(`xl: ${device}: the backend did not close in time; removed anyway\n`);
    }));

  xl.command('network-list')
    .description("list a domain's NICs")
    .argument('<domain>')
    .action(async (domain: string, _o: unknown, cmd: Command) => run(cmd, async (call, io) => {
      io.out(formatNicList(await call('network-list', { domain }) as NicRow[]));
    }));

  xl.command('trigger')
    .description('send a trigger: power, sleep (HVM ACPI buttons), s3resume, nmi, init, reset')
    .argument('<domain>')
    .argument('<trigger>')
    .argument('[vcpu]')
    .action(async (domain: string, name: string, vcpu: string | undefined, _o: unknown, cmd: Command) => run(cmd, async (call) => {
      await call('trigger', { domain, name, vcpu: vcpu === undefined ? undefined : Number(vcpu) });
    }));

  xl.command('console')
    .description("print what the guest wrote to its console so far (non-interactive)")
    .argument('<domain>')
    .action(async (domain: string, _o: unknown, cmd: Command) => run(cmd, async (call, io) => {
      io.out((await call('console', { domain }) as { text: string }).text);
    }));

  xl.command('domid')
    .description("a domain's id from its name")
    .argument('<name>')
    .action(async (domain: string, _o: unknown, cmd: Command) => run(cmd, async (call, io) => {
      io.out(`${(await call('domid', { domain }) as { domid: number }).domid}\n`);
    }));

  xl.command('domname')
    .description("a domain's name from its id")
    .argument('<domid>')
    .action(async (domain: string, _o: unknown, cmd: Command) => run(cmd, async (call, io) => {
      io.out(`${(await call('domname', { domain }) as { name: string }).name}\n`);
    }));

  xl.command('save')
    .description("save a domain's state to FILE (xl's format: header, libxl and libxc streams) and destroy it; -c leaves it running")
    .argument('<domain>')
    .argument('<file>')
    .option('-c', 'checkpoint: leave the domain running after saving it')
    .action(async (domain: string, file: string, o: { c?: boolean }, cmd: Command) => run(cmd, async (call, io) => {
      const abs = resolvePath(file);
      io.err(`Saving to ${abs} new xl format\n`);
      const r = await call('save', { domain, file: abs, checkpoint: Boolean(o.c) }) as { domid: number; bytes: number; pages: number };
      io.err(`Saved domain ${r.domid}: ${r.pages} pages, ${r.bytes} bytes${o.c ? ' (left running)' : ''}\n`);
    }));

  xl.command('restore')
    .description('restore a domain from a file `xl save` wrote (a new domid); with a guest file first, its config instead of the saved one (a new name, say)')
    .argument('<files...>', '[CONFIG] FILE')
    .option('-p', 'leave the domain paused after it is restored')
    .action(async (files: string[], o: { p?: boolean }, cmd: Command) => run(cmd, async (call, io) => {
      if (files.length > 2) throw new Error('usage: xl restore [-p] [CONFIG] FILE');
      const file = files[files.length - 1];
      let config: unknown;
      if (files.length === 2) {
        io.err(`Parsing config from ${files[0]}\n`);
        const loaded = (await import('./config.ts')).loadGuestFile(files[0]);
        if (loaded.ignored.length) io.err(`xl: ignoring ${loaded.ignored.join(', ')} (not simulated)\n`);
        config = loaded.config;
      }
      const abs = resolvePath(file);
      io.err(`Loading new save file ${abs} (new xl fmt)\n`);
      const r = await call('restore', { file: abs, paused: Boolean(o.p), ...(config ? { config } : {}) }) as { domid: number; name: string };
      io.err(`Restored domain ${r.name} as ${r.domid}\n`);
    }));

  xl.command('migrate')
    .description("live-migrate a domain to HOST: another `xensim up`'s control socket, tcp://ADDR:PORT (a host's --migrate-listen), or (with ssh) a machine running one; -s COMMAND as xl's sshcommand, -s '' runs HOST as the whole receiver command (e.g. 'nc ADDR PORT')")
    .argument('<domain>')
    .argument('<host>')
    .option('-s <sshcommand>', `the command that reaches HOST (default: ssh; runs \`exec SSHCOMMAND HOST ${MIGRATE_RECEIVE_COMMAND}\`)`)
    .addOption(new Option('--xenstore <how>', "the guest's xenstore state: xen copies nothing (the guest writes it again, as in Xen); seed is the project seed's description, not Xen: xenstored copies the guest's nodes, watches (tokens kept) and open transactions, in a stream only xensim reads")
      .choices(['xen', 'seed']).default('xen'))
    .action(async (domain: string, host: string, o: { s?: string; xenstore: 'xen' | 'seed' }, cmd: Command) => run(cmd, async (call, io) => {
      const r = await call('migrate', { domain, host, sshCommand: o.s, cwd: process.cwd(), xenstore: o.xenstore }) as {
        domid: number; rounds: number[]; liveRounds: number; bytes: number; downtimeNs: number; hash: string; log: string[];
      };
      for (const l of r.log) io.err(`${l}\n`);
      io.err(`Migrated domain ${r.domid}: ${r.bytes} bytes, ${r.liveRounds} live round(s) of ${r.rounds.slice(0, r.liveRounds).join('/')} pages, ${r.rounds.at(-1)} after suspend, downtime ${(r.downtimeNs / 1e6).toFixed(3)} ms, memory sha256 ${r.hash}\n`);
    }));

  xl.command('migrate-receive')
    .description('the receiving end of `xl migrate`: the stream on stdin, the replies on stdout, to this host (run by the sender\'s ssh command)')
    .action(async (_o: unknown, cmd: Command) => {
      const g = cmd.optsWithGlobals<{ host?: string }>();
      const host = g.host ?? process.env.XENSIM_CONTROL ?? DEFAULT_CONTROL;
      let conn;
      try {
        conn = await connectMigrateReceive(host);
      } catch (e) {
        if (!(e instanceof XlError)) throw e;
        process.stderr.write(`xl: ${e.message}\n`);
        process.exitCode = 1;
        return;
      }
      const { socket, rest } = conn;
      // This relay's socket carries the stream on to the host: a record-sized send buffer.
      widenSendBuffer(socket);
      if (rest.length) process.stdout.write(rest);
      socket.on('data', (c: Buffer) => void process.stdout.write(c));
      process.stdin.on('data', (c: Buffer) => void socket.write(c));
      process.stdin.once('end', () => socket.end());
      socket.resume();
      await new Promise<void>((resolve) => socket.once('close', () => resolve()));
      process.stdin.destroy();
    });

  xl.command('xenstore-ls')
    .description("xensim's own: dom0's xenstore tree as `xenstore-ls -f` prints it (works in lockstep, which has no xenstored socket)")
    .argument('[path]', 'where to start', '/')
    .action(async (path: string, _o: unknown, cmd: Command) => run(cmd, async (call, io) => {
      const { sanitiseValue } = await import('../domains/dom0/tools/xenstore-cli.ts');
      const nodes = await call('xenstore-ls', { path }) as NodeDump[];
      for (const n of nodes) {
        if (n.path === path && path !== '/') continue;
        if (n.path === '/') continue;
        io.out(`${n.path} = "${sanitiseValue(Buffer.from(n.value, 'latin1'))}"\n`);
      }
    }));
}
