// The `xensim` command line loads only the module owning the command it is given; its table of
// modules must name every top-level command each module registers, or that command would load
// everything (slower, still correct).
import assert from 'node:assert/strict';
import { Command } from 'commander';
import { TOOLS } from '../../sim/cli.ts';

describe('xensim command line', () => {
  it('each module registers exactly the top-level commands the table names for it', async () => {
    for (const tool of TOOLS) {
      const program = new Command('xensim');
      await tool.register(program);
      assert.deepEqual(program.commands.map((c) => c.name()).sort(), [...tool.commands].sort());
    }
  });
});
