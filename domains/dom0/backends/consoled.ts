// xenconsoled: the primary console's backend. No xenbus handshake: once the toolstack has
// published ~/console/ring-ref and port, it maps the guest's console page through grant ref 0,
// binds the port, marks the page connected, and drains the guest's output into a log that
// `xl console` shows. Like every @releaseDomain watcher it learns of a death by rescanning: a
// domain dying or gone loses its mapping, the last thing that may hold a destroyed domain's
// memory in dom0 (R14).
import type { XsHandle } from '../../libs/store/xs.ts';
import { Xenwatch } from '../../kernel/xenbus-watch.ts';
import { Hypercall } from '../../../hypervisor/public/xen.ts';
import { Domctl } from '../../../hypervisor/public/domctl.ts';
import { consoleReadOut, consoleWriteIn, isXenconsBroken, XenconsConnection, XenconsInterface } from '../../../hypervisor/public/io/console.ts';
import { GNTTAB_RESERVED_CONSOLE, GntSt } from '../../../hypervisor/public/grant_table.ts';
import type { Kernel } from '../../kernel/kernel.ts';

interface Console {
  page?: Uint8Array;
  handle?: number;
  port?: number;
  /** Everything the guest wrote, as bytes. */
  log: Buffer[];
  broken?: boolean;
}

export class Consoled {
  private readonly consoles = new Map<number, Console>();

  /** Its own thread of watch callbacks (a daemon of its own in Xen), on the toolstack's connection. */
  private readonly watch: Xenwatch;

  constructor(private readonly k: Kernel, private readonly xs: XsHandle) {
    this.watch = new Xenwatch(xs, 'xenconsoled');
    this.watch.sched = xs.sched;
    this.watch.task = 'xenconsoled';
  }

  /** Watches @releaseDomain, which names no domain: each firing rescans the domains it serves. */
  async start(): Promise<void> {
    await this.watch.register('@releaseDomain', () => this.domainsChanged());
  }

  /** xenconsoled's enum_domains: a domain gone, or dying (Xen's XEN_DOMINF_dying), is dead to it. */
  private domainsChanged(): void {
    for (const [domid, c] of this.consoles) {
      if (!c.page) continue;
      const info = this.k.hypercall(Hypercall.__HYPERVISOR_domctl, { cmd: Domctl.XEN_DOMCTL_getdomaininfo, domain: domid });
      const state = typeof info === 'number' ? 'gone' : (info as { state: string }).state;
      if (state === 'gone' || state === 'dying' || state === 'dead') this.disconnect(domid);
    }
  }

  /** Connects the console of `domid` (after the toolstack wrote its keys). */
  async connect(domid: number): Promise<boolean> {
    const base = `/local/domain/${domid}/console`;
    const read = async (p: string): Promise<string | undefined> => (await this.xs.read(`${base}/${p}`).catch(() => undefined))?.toString('latin1');
    const portText = await read('port');
    if (portText === undefined || !/^\d+$/.test(portText)) return false;
    // The log outlives its domain (xl console after death) only until the domid is reused: a new
    // domain's console starts empty.
    const live = this.consoles.get(domid);
    const c: Console = live?.page ? live : { log: [] };
    this.consoles.set(domid, c);
    const m = this.k.mapGrant(domid, GNTTAB_RESERVED_CONSOLE, false);
    if (m.status !== GntSt.GNTST_okay || !m.page) return false;
    c.page = m.page;
    c.handle = m.handle;
    c.port = this.k.bindInterdomain(domid, Number(portText));
    this.k.on(c.port, () => this.drain(domid));
    c.page[XenconsInterface.connection] = XenconsConnection.XENCONS_CONNECTED;
    await this.xs.write(`${base}/tty`, `/dev/pts/${domid}`).catch(() => undefined);
    this.drain(domid);
    return true;
  }

  private drain(domid: number): void {
    const c = this.consoles.get(domid);
    if (!c?.page || c.broken) return;
    const out = consoleReadOut(c.page);
    if (isXenconsBroken(out)) {
      // A guest that scribbles on the indexes loses its console, nothing else.
      c.broken = true;
      return;
    }
    if (out.length) {
      c.log.push(Buffer.from(out));
      this.k.notify(c.port!);
    }
  }

  /** Input to the guest (what a user types at `xl console`). */
  type(domid: number, text: string): number {
    const c = this.consoles.get(domid);
    if (!c?.page) return 0;
    const n = consoleWriteIn(c.page, Buffer.from(text, 'latin1'));
    if (typeof n !== 'number') return 0;
    this.k.notify(c.port!);
    return n;
  }

  output(domid: number): string {
    return Buffer.concat(this.consoles.get(domid)?.log ?? []).toString('latin1');
  }

  /** The domain is gone: unbind and unmap. */
  disconnect(domid: number): void {
    const c = this.consoles.get(domid);
    if (!c) return;
    if (c.port !== undefined) this.k.close(c.port);
    if (c.handle !== undefined) this.k.unmapGrant(c.handle);
    c.page = c.port = c.handle = undefined;
  }
}
