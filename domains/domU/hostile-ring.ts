// A hostile guest for tests: corrupts its xenstore ring the way a broken or malicious kernel
// could, kicks xenstored, then reports what xenstored left in the ring's `error` field.
import type { MessagePort } from 'node:worker_threads';
import { XenstoreDomainInterface as X, XSD_SOCKMSG_SIZE, encodeHeader, XsdSockmsgType } from '../../hypervisor/public/io/xs_wire.ts';
import type { Kernel } from '../kernel/kernel.ts';

export interface HostileArgs {
  /** garbage-indexes: req_prod far beyond req_cons; oversized: a header announcing 5000 bytes. */
  readonly attack: 'garbage-indexes' | 'oversized';
}

export async function main(k: Kernel, args: HostileArgs, control: MessagePort): Promise<void> {
  const page = k.page(k.startInfo.store_mfn);
  const words = new Int32Array(page.buffer, page.byteOffset, 1024);
  const port = k.startInfo.store_evtchn;
  if (args.attack === 'garbage-indexes') {
    Atomics.store(words, X.req_prod >> 2, (Atomics.load(words, X.req_cons >> 2) + 5000) | 0);
  } else {
    const h = encodeHeader({ type: XsdSockmsgType.XS_WRITE, req_id: 1, tx_id: 0, len: 5000 });
    const prod = Atomics.load(words, X.req_prod >> 2);
    page.set(h, X.req + (prod & 1023));
    Atomics.store(words, X.req_prod >> 2, (prod + XSD_SOCKMSG_SIZE) | 0);
  }
  k.notify(port);
  // xenstored answers (or not) asynchronously: look at the error field until it is set.
  const deadline = k.now() + 5e9;
  while (Atomics.load(words, X.error >> 2) === 0 && k.now() < deadline) {
    await new Promise((r) => k.setTimer(1e6, () => r(undefined)));
  }
  control.postMessage({ cmd: 'done', domid: k.domid, results: [Atomics.load(words, X.error >> 2)], retries: 0 });
}
