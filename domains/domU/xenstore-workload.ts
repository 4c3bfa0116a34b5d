// A guest program for tests and benchmarks: runs a list of xenstore operations over its ring,
// as a guest kernel's xenbus users would, and reports the results to the simulator.
import type { MessagePort } from 'node:worker_threads';
import { XsError } from '../libs/store/xs.ts';
import type { Kernel } from '../kernel/kernel.ts';
import { xenbusInit } from '../kernel/xenbus.ts';

export type WorkloadOp =
  | readonly ['write', string, string]
  | readonly ['read', string]
  | readonly ['directory', string]
  | readonly ['rm', string]
  | readonly ['getPerms', string]
  /** read-modify-write of a counter in a transaction, retried on EAGAIN; `n` times. */
  | readonly ['txIncrement', string, number]
  /** `n` plain writes of growing values. */
  | readonly ['writes', string, number];

export interface WorkloadArgs {
  readonly ops: readonly WorkloadOp[];
}

export async function main(k: Kernel, args: WorkloadArgs, control: MessagePort): Promise<void> {
  const xs = xenbusInit(k);
  const results: unknown[] = [];
  let retries = 0;
  for (const op of args.ops) {
    try {
      switch (op[0]) {
        case 'write': await xs.write(op[1], op[2]); results.push('OK'); break;
        case 'read': results.push((await xs.read(op[1])).toString('latin1')); break;
        case 'directory': results.push(await xs.directory(op[1])); break;
        case 'rm': await xs.rm(op[1]); results.push('OK'); break;
        case 'getPerms': results.push(await xs.getPerms(op[1])); break;
        case 'writes':
          for (let i = 0; i < op[2]; i++) await xs.write(op[1], String(i));
          results.push('OK');
          break;
        case 'txIncrement':
          for (let i = 0; i < op[2]; i++) {
            retries += (await xs.transaction(async (tx) => {
              let v = 0;
              try {
                v = Number((await xs.read(op[1], tx)).toString());
              } catch (e) {
                if (!(e instanceof XsError && e.code === 'ENOENT')) throw e;
              }
              await xs.write(op[1], String(v + 1), tx);
            })).retries;
          }
          results.push('OK');
          break;
      }
    } catch (e) {
      results.push(e instanceof XsError ? e.code : String(e));
    }
  }
  control.postMessage({ cmd: 'done', domid: k.domid, results, retries });
}
