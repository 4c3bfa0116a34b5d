// The default guest kernel's user space: bring xenbus up, say so under data/, then wait for
// events (the guest's devices and power handling come with the toolstack issue).
import type { MessagePort } from 'node:worker_threads';
import type { Kernel } from '../kernel/kernel.ts';
import { xenbusInit } from '../kernel/xenbus.ts';

export async function main(k: Kernel, _args: unknown, control: MessagePort): Promise<void> {
  const xs = xenbusInit(k);
  await xs.write('data/xenbus', 'connected');
  control.postMessage({ cmd: 'booted', domid: k.domid });
}
