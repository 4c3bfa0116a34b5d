// `xensim` command line: one subcommand per tool. Each subcommand lives in its own module and is
// loaded only when used, so `xensim xenstore read` does not pay for the daemon's start-up.
import { Command, CommanderError } from 'commander';

export async function main(argv: string[]): Promise<void> {
  // `xensim run ... --log - | head` closes the pipe early: that is not an error.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
  const program = new Command('xensim')
    .description('A Xen environment simulator')
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
  const { registerUi } = await import('./ui/cli.ts');
  registerUi(program);

  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) process.exit(e.exitCode);
    throw e;
  }
}
