// `xensim up`: boots a host - dom0 running xenstored (on a Unix socket for Debian's tools) and
// guests - and keeps it running until interrupted.
import { createWriteStream } from 'node:fs';
import type { Command } from 'commander';
import { HostRuntime, type TraceEvent } from './host-runtime.ts';

const IDLE = new URL('../domains/domU/idle.ts', import.meta.url).href;

const int = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`not a non-negative integer: ${v}`);
  return n;
};

export function registerUp(program: Command): void {
  program
    .command('up')
    .description('boot a host: dom0 with xenstored, and guests; Ctrl-C stops it')
    .option('--socket <path>', "dom0's xenstored socket (XENSTORED_PATH for Debian's tools)", '/tmp/xensim/xenstored.sock')
    .option('--guests <n>', 'number of guests', int, 2)
    .option('--seed <n>', 'seed for the run (and, with --lockstep, the scheduler)', int, 1)
    .option('--lockstep', 'run one vCPU at a time in seeded order (replayable)')
    .option('--pool <n>', 'pack guests onto N shared threads', int)
    .option('--profile <profile>', 'xenstored behaviour: c or ocaml', 'c')
    .option('--trace <file>', 'write every hypercall, event-channel and grant operation as JSON lines')
    .action(async (o: { socket: string; guests: number; seed: number; lockstep?: boolean; pool?: number; profile: 'c' | 'ocaml'; trace?: string }) => {
      if (o.lockstep && o.pool !== undefined) throw new Error('--pool runs guests free; it does not combine with --lockstep');
      const out = o.trace ? createWriteStream(o.trace) : undefined;
      const rt = new HostRuntime({
        seed: o.seed,
        mode: o.lockstep ? 'lockstep' : 'free',
        pool: o.pool,
        trace: out ? (e: TraceEvent) => void out.write(`${JSON.stringify(e)}\n`) : false,
      });
      const { mkdirSync } = await import('node:fs');
      const { dirname } = await import('node:path');
      mkdirSync(dirname(o.socket), { recursive: true });
      // In lockstep the socket would let outside timing in; dom0 tools then see a frozen host.
      await rt.bootDom0({ socketPath: o.lockstep ? undefined : o.socket, profile: o.profile });
      for (let id = 1; id <= o.guests; id++) await rt.createGuest({ domid: id, program: { module: IDLE } });
      await rt.quiesce();
      const where = o.lockstep ? '(lockstep: no socket)' : `XENSTORED_PATH=${o.socket}`;
      process.stdout.write(`xensim: host up, dom0 and ${o.guests} guest(s); ${where}; Ctrl-C to stop\n`);
      const stop = (): void => {
        void rt.shutdown().then(() => out?.end()).then(() => process.exit(0));
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
}
