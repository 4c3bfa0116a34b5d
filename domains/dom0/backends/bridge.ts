// Dom0's layer-2 network: the vif net devices netback creates and the software bridges
// (xenbr0, ...) the vif-bridge hotplug script plugs them into. A bridge learns which port each
// source MAC lives behind, forwards unicast to the learned port and floods broadcast, multicast
// and unknown destinations to every other port - an Ethernet learning switch, no STP, no ageing.

/** Destination MAC at bytes 0-5 of an Ethernet frame, source at 6-11, ethertype at 12-13. */
export const ETH_ALEN = 6;
export const ETH_HLEN = 14;

/** A device that can sit on a bridge (netback's vif netdev). */
export interface BridgePort {
  readonly name: string;
  /** The bridge it is on (set by Bridge.addif / delif), like a netdev's master. */
  master: Bridge | undefined;
  /** A frame the bridge sends out of this port (towards whatever is behind it). */
  transmit(frame: Uint8Array): void;
}

export class BridgeError extends Error {}

export function macToString(b: Uint8Array, at = 0): string {
  const out: string[] = [];
  for (let i = 0; i < ETH_ALEN; i++) out.push((b[at + i] ?? 0).toString(16).padStart(2, '0'));
  return out.join(':');
}

/** "00:16:3e:00:01:00" as 6 bytes; undefined if it is not a MAC. */
export function parseMac(s: string): Uint8Array | undefined {
  const m = /^([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2})$/i.exec(s.trim());
  return m ? Uint8Array.from(m.slice(1), (h) => parseInt(h, 16)) : undefined;
}

/** The group bit (first octet's low bit): broadcast and multicast. */
const isGroup = (frame: Uint8Array, at: number): boolean => (frame[at] & 1) === 1;

export class Bridge {
  readonly ports = new Map<string, BridgePort>();
  /** Forwarding database: MAC -> port name. */
  readonly fdb = new Map<string, string>();
  readonly stats = { forwarded: 0, flooded: 0, dropped: 0 };

  constructor(readonly name: string) {}

  addif(port: BridgePort): void {
    if (port.master && port.master !== this) throw new BridgeError(`${port.name} is already on ${port.master.name}`);
    this.ports.set(port.name, port);
    port.master = this;
  }

  delif(port: BridgePort): void {
    if (this.ports.get(port.name) !== port) return;
    this.ports.delete(port.name);
    port.master = undefined;
    for (const [mac, name] of this.fdb) if (name === port.name) this.fdb.delete(mac);
  }

  /** A frame received on `from`: learn its source, then forward or flood. */
  input(from: BridgePort, frame: Uint8Array): void {
    if (this.ports.get(from.name) !== from || frame.length < ETH_HLEN) {
      this.stats.dropped++;
      return;
    }
    // A group address is never a valid source; do not let it poison the table.
    if (!isGroup(frame, ETH_ALEN)) this.fdb.set(macToString(frame, ETH_ALEN), from.name);
    if (!isGroup(frame, 0)) {
      const to = this.fdb.get(macToString(frame, 0));
      if (to !== undefined) {
        // Destination behind the port it came in on: the segment already saw it.
        if (to === from.name) {
          this.stats.dropped++;
          return;
        }
        const port = this.ports.get(to);
        if (port) {
          this.stats.forwarded++;
          port.transmit(frame);
          return;
        }
      }
    }
    this.stats.flooded++;
    // Each port gets its own copy: a receiver must not see another's changes.
    for (const port of [...this.ports.values()]) if (port !== from) port.transmit(frame.slice());
  }
}

/** Dom0's net devices and bridges (what `ip link` and `brctl show` would list). */
export class Network {
  readonly netdevs = new Map<string, BridgePort>();
  readonly bridges = new Map<string, Bridge>();

  register(dev: BridgePort): void {
    if (this.netdevs.has(dev.name)) throw new BridgeError(`net device ${dev.name} exists`);
    this.netdevs.set(dev.name, dev);
  }

  /** The device leaves its bridge and the list. */
  unregister(dev: BridgePort): void {
    dev.master?.delif(dev);
    if (this.netdevs.get(dev.name) === dev) this.netdevs.delete(dev.name);
  }

  /** The bridge by name; created on first use (a host's bridges are set up before guests). */
  bridge(name: string): Bridge {
    let br = this.bridges.get(name);
    if (!br) this.bridges.set(name, (br = new Bridge(name)));
    return br;
  }

  /** brctl addif: throws if there is no such device (the hotplug script then reports an error). */
  addif(bridge: string, devName: string): void {
    const dev = this.netdevs.get(devName);
    if (!dev) throw new BridgeError(`no net device ${devName}`);
    if (dev.master?.name === bridge) return;
    dev.master?.delif(dev);
    this.bridge(bridge).addif(dev);
  }

  /** brctl delif from whatever bridge it is on; nothing if it is on none or gone. */
  delif(devName: string): void {
    const dev = this.netdevs.get(devName);
    dev?.master?.delif(dev);
  }
}

/** Linux netback's name for a vif's net device. */
export const vifName = (domid: number, handle: number): string => `vif${domid}.${handle}`;
