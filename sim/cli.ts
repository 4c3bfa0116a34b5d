// `xensim` command line: one subcommand per tool. Each subcommand lives in its own module and is
// loaded only when used, so `xensim xenstore read` does not pay for the daemon's start-up.
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';

/** package.json, seen from sim/cli.ts or from its compiled copy dist/sim/cli.js. */
const PACKAGE_JSON = new URL(import.meta.url.endsWith('.ts') ? '../package.json' : '../../package.json', import.meta.url);

export interface Tool {
  /** The top-level commands the module registers. */
  readonly commands: readonly string[];
  readonly register: (program: Command) => Promise<void>;
}

export const TOOLS: readonly Tool[] = [
  { commands: ['xenstored'], register: async (p) => (await import('../domains/dom0/xenstored/cli.ts')).registerXenstored(p) },
  { commands: ['xenstore'], register: async (p) => (await import('../domains/dom0/tools/xenstore-cli.ts')).registerXenstoreTools(p) },
  { commands: ['up'], register: async (p) => (await import('./up.ts')).registerUp(p) },
  { commands: ['xl'], register: async (p) => (await import('./xl-cli.ts')).registerXl(p) },
  { commands: ['list', 'faults', 'run', 'shrink', 'explore', 'detect', 'swarm', 'swarm-merge', 'replay'], register: async (p) => (await import('./scenario/cli.ts')).registerScenarios(p) },
  { commands: ['ui'], register: async (p) => (await import('./ui/cli.ts')).registerUi(p) },
];

export async function main(argv: string[]): Promise<void> {
  // `xensim run ... --log - | head` closes the pipe early: that is not an error.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
  const { version } = JSON.parse(readFileSync(PACKAGE_JSON, 'utf8')) as { version: string };
  const program = new Command('xensim')
    .description('A Xen environment simulator')
    .version(version)
    .showHelpAfterError()
    .exitOverride();

  // Only the module owning the command named first is loaded; anything else (help, an unknown
  // command, a command missing from this table) loads them all, which is only slower.
  const chosen = TOOLS.filter((t) => t.commands.includes(argv[0] ?? ''));
  for (const tool of chosen.length > 0 ? chosen : TOOLS) await tool.register(program);

  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) process.exit(e.exitCode);
    throw e;
  }
}
