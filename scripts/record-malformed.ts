// Records what Debian's C xenstored and oxenstored 4.17 answer to the malformed-input table
// (test/dom0/xenstored/malformed-wire.ts) into test/dom0/xenstored/malformed-oracle.json:
//   socket: each case on a fresh dom0 socket connection;
//   ring:   each case from a fresh unprivileged guest (domid 10 + its index) over the shim's ring
//           page, through test/interop/ring-bridge.py --close-on-error.
//
//   node --import ./scripts/tsx-preload.mjs scripts/record-malformed.ts
//
// Needs ../shared/oracle (see test/helpers/daemons.ts); one freshly started daemon per profile.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT, startOracle, type Profile } from '../test/helpers/daemons.ts';
import { CASES, type Transcript, runOnOracleRing, runOnSocket } from '../test/dom0/xenstored/malformed-wire.ts';

const OUT = path.join(REPO_ROOT, 'test', 'dom0', 'xenstored', 'malformed-oracle.json');

/** A case whose probe is neither answered nor cut off is a broken case, not a result. */
async function bounded<T>(what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} is not self-synchronising`)), 10000);
  });
  try {
    return await Promise.race([p, hung]);
  } finally {
    clearTimeout(timer);
  }
}

async function record(profile: Profile): Promise<{ socket: Record<string, Transcript>; ring: Record<string, Transcript> }> {
  const d = await startOracle(profile);
  try {
    const socket: Record<string, Transcript> = {};
    const ring: Record<string, Transcript> = {};
    for (const [i, k] of CASES.entries()) {
      socket[k.name] = await bounded(`${profile} socket "${k.name}"`, runOnSocket(d.socket, k));
      ring[k.name] = await bounded(`${profile} ring "${k.name}"`, runOnOracleRing(d, 10 + i, k));
    }
    return { socket, ring };
  } finally {
    await d.stop();
  }
}

const c = await record('c');
const ocaml = await record('ocaml');
const data = {
  note: 'Recorded by scripts/record-malformed.ts from Debian xen-utils-4.17 (C xenstored, oxenstored) through '
    + '../shared/oracle. socket: each case is one write() on a fresh dom0 socket connection followed by the probe '
    + 'READ. ring: the same bytes from a fresh unprivileged guest (domid 10 + case index) over the shim\'s ring '
    + 'page, through test/interop/ring-bridge.py --close-on-error ("closed" = the daemon wrote the page\'s error '
    + 'field). test/interop/malformed-oracle.test.ts checks the live daemons still answer this.',
  socket: { c: c.socket, ocaml: ocaml.socket },
  ring: { c: c.ring, ocaml: ocaml.ring },
};
writeFileSync(OUT, `${JSON.stringify(data, null, 1)}\n`);
console.log(`wrote ${OUT}`);
