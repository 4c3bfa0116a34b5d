// A guest program for XSA-326: a kernel that floods its xenstore ring with requests and does not
// read the replies. It writes XS_READ requests into req[] whenever there is room and leaves rsp[]
// alone until told to drain it, so xenstored's own bound on replies it holds (C: it stops reading
// the ring at `outstanding` = 20 unsent replies) is what decides how much it takes in.
import {
  XSD_SOCKMSG_SIZE, XS_RING_REQ, XS_RING_RSP, XsdSockmsgType, decodeHeader, encodeMessage, xsRingCopyIn, xsRingCopyOut, XENSTORE_RING_SIZE,
} from '../../hypervisor/public/io/xs_wire.ts';
import type { ControlPort } from '../../hypervisor/public/vcpu.ts';
import type { Kernel } from '../kernel/kernel.ts';

export type XsFloodCommand =
  /** Queue `count` XS_READ requests of `path` (req_id 1..count); replies {}. */
  | { cmd: 'flood'; id: number; count: number; path: string }
  /** {written, consumed (requests xenstored has taken off the ring), repliesInRing (complete, unread)}. */
  | { cmd: 'status'; id: number }
  /** Read every reply from now on; replies {replies: the req_ids in order} once all `count` came. */
  | { cmd: 'drain'; id: number };

export async function main(k: Kernel, _args: unknown, control: ControlPort): Promise<void> {
  const page = k.page(k.startInfo.store_mfn);
  const words = new Int32Array(page.buffer, page.byteOffset, 1024);
  const port = k.startInfo.store_evtchn;
  const load = (off: number): number => Atomics.load(words, off >> 2) >>> 0;
  const store = (off: number, v: number): void => void Atomics.store(words, off >> 2, v | 0);

  let request: Uint8Array = new Uint8Array(0);
  let count = 0;
  let written = 0;
  let base = 0;
  let draining: ((ids: number[]) => void) | undefined;
  const ids: number[] = [];
  let partial: Uint8Array = new Uint8Array(0);

  /** Requests into whatever room req[] has. */
  const pump = (): void => {
    let prod = load(XS_RING_REQ.prod);
    const cons = load(XS_RING_REQ.cons);
    let moved = false;
    while (written < count && XENSTORE_RING_SIZE - ((prod - cons) >>> 0) >= request.length) {
      request[4] = (written + 1) & 0xff; // req_id, little endian (count stays below 65536)
      request[5] = ((written + 1) >> 8) & 0xff;
      xsRingCopyIn(page, XS_RING_REQ, prod, request);
      prod = (prod + request.length) >>> 0;
      written++;
      moved = true;
    }
    if (moved) {
      store(XS_RING_REQ.prod, prod);
      k.notify(port);
    }
  };

  /** Complete replies in rsp[] from `cons` on (peeking, or consuming them). */
  const replies = (consume: boolean): number => {
    const cons = load(XS_RING_RSP.cons);
    const prod = load(XS_RING_RSP.prod);
    const bytes = new Uint8Array((prod - cons) >>> 0);
    xsRingCopyOut(page, XS_RING_RSP, cons, bytes);
    if (!consume) {
      let n = 0;
      for (let at = 0; at + XSD_SOCKMSG_SIZE <= bytes.length; n++) {
        const len = XSD_SOCKMSG_SIZE + decodeHeader(bytes, at).len;
        if (at + len > bytes.length) break;
        at += len;
      }
      return n;
    }
    const all = Buffer.concat([partial, bytes]);
    let at = 0;
    while (at + XSD_SOCKMSG_SIZE <= all.length) {
      const h = decodeHeader(all, at);
      if (at + XSD_SOCKMSG_SIZE + h.len > all.length) break;
      ids.push(h.req_id);
      at += XSD_SOCKMSG_SIZE + h.len;
    }
    partial = all.subarray(at);
    if (bytes.length > 0) {
      store(XS_RING_RSP.cons, prod);
      k.notify(port);
    }
    return ids.length;
  };

  const step = (): void => {
    if (draining) replies(true);
    pump();
    if (draining && ids.length >= count) {
      draining(ids.splice(0));
      draining = undefined;
    }
  };
  k.on(port, step);

  control.on('message', (m: XsFloodCommand) => {
    const reply = (r: Record<string, unknown>): void => control.postMessage({ cmd: 'result', id: m.id, ...r });
    switch (m.cmd) {
      case 'flood':
        request = encodeMessage({ type: XsdSockmsgType.XS_READ, req_id: 0, tx_id: 0, payload: Buffer.from(`${m.path}\0`, 'latin1') });
        count = m.count;
        base = load(XS_RING_REQ.cons);
        pump();
        reply({});
        return;
      case 'status': {
        const consumed = ((load(XS_RING_REQ.cons) - base) >>> 0) / request.length;
        reply({ written, consumed, repliesInRing: replies(false) });
        return;
      }
      case 'drain':
        draining = (got) => reply({ replies: got });
        step();
        return;
    }
  });
  control.postMessage({ cmd: 'booted', domid: k.domid });
}
