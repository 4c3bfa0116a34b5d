// Records what Debian's C xenstored and oxenstored 4.17 answer to the malformed-input table
// (test/dom0/xenstored/malformed-wire.ts) into test/dom0/xenstored/malformed-oracle.json.
//
//   node --import ./scripts/tsx-preload.mjs scripts/record-malformed.ts
//
// Needs ../shared/oracle (see test/helpers/daemons.ts). Each case runs on a fresh dom0 socket
// connection of one freshly started daemon per profile.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT, startOracle, type Profile } from '../test/helpers/daemons.ts';
import { CASES, runOnSocket, type Transcript } from '../test/dom0/xenstored/malformed-wire.ts';

const OUT = path.join(REPO_ROOT, 'test', 'dom0', 'xenstored', 'malformed-oracle.json');

async function record(profile: Profile): Promise<Record<string, Transcript>> {
  const d = await startOracle(profile);
  try {
    const out: Record<string, Transcript> = {};
    for (const k of CASES) {
      let timer: NodeJS.Timeout | undefined;
      // A case whose probe is neither answered nor cut off is a broken case, not a result.
      const hung = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${profile}: case "${k.name}" is not self-synchronising`)), 10000);
      });
      out[k.name] = await Promise.race([runOnSocket(d.socket, k), hung]);
      clearTimeout(timer);
    }
    return out;
  } finally {
    await d.stop();
  }
}

const data = {
  note: 'Recorded by scripts/record-malformed.ts from Debian xen-utils-4.17 (C xenstored, oxenstored) '
    + 'through ../shared/oracle; each case is one write() on a fresh dom0 socket connection followed by the '
    + 'probe READ; test/interop/malformed-oracle.test.ts checks the live daemons still answer this.',
  c: await record('c'),
  ocaml: await record('ocaml'),
};
writeFileSync(OUT, `${JSON.stringify(data, null, 1)}\n`);
console.log(`wrote ${OUT}`);
