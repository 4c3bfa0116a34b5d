// `xensim` command line: one subcommand per tool. Each subcommand lives in its own module and is
// loaded only when used, so `xensim xenstore read` does not pay for the daemon's start-up.
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';

/** package.json, seen from sim/cli.ts or from its compiled copy dist/sim/cli.js. */
const PACKAGE_JSON = new URL(import.meta.url.endsWith('.ts') ? '../package.json' : '../../package.json', import.meta.url);

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

  const { registerXenstored } = await import('../domains/dom0/xenstored/cli.ts');
  registerXenstored(program);
  const { registerXenstoreTools } = await import('../domains/dom0/tools/xenstore-cli.ts');
  registerXenstoreTools(program);
  const { registerUp } = await import('./up.ts');
  registerUp(program);
  const { registerXl } = await import('./xl-cli.ts');
  registerXl(program);
  const { registerScenarios } = await import('./scenario/cli.ts');
  registerScenarios(program);

  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) process.exit(e.exitCode);
    throw e;
  }
}
