// Stand-in for `xensim` with only the xenstore tools registered: used by xenstore-cli.test.ts
// while domains/dom0/xenstored/cli.ts (which sim/cli.ts also imports) does not exist yet.
//   node --import ./scripts/tsx-preload.mjs test/dom0/tools/xenstore-entry.ts xenstore ls -f
import { Command, CommanderError } from 'commander';
import { registerXenstoreTools } from '../../../domains/dom0/tools/xenstore-cli.ts';

const program = new Command('xensim').showHelpAfterError().exitOverride();
registerXenstoreTools(program);
try {
  await program.parseAsync(process.argv.slice(2), { from: 'user' });
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode);
  throw e;
}
