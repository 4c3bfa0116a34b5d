// Replies and watch events longer than XENSTORE_PAYLOAD_MAX (4096). C xenstored refuses such a
// reply with E2BIG and drops such an event, on every connection. oxenstored decides per
// transport (connection.ml, packet_of): a Unix socket gets the long message as it is; a guest's
// ring gets an E2BIG error in its place, for an event too (with the event's rid 0). Checked on
// Debian's 4.17.7 daemons (xs-difffuzz.py, repro files *-long-messages.txt).
import assert from 'node:assert/strict';
import { XsdSockmsgType as T, type XsMessage, nulJoin } from '../../../hypervisor/public/io/xs_wire.ts';
import { type Guest, Rig } from './ring-rig.ts';

/** Everything the ring carries now: a message longer than the 1 KiB ring comes in parts. */
function drain(g: Guest): ReturnType<Guest['take']> {
  const out: ReturnType<Guest['take']> = [];
  for (let i = 0; i < 16; i++) out.push(...g.take());
  return out;
}

const text = (m: XsMessage): string => Buffer.from(m.payload).toString('latin1').replace(/\0$/, '');

/** What a dom0 socket connection was sent, as [type, payload length or error name]. */
function socketClient(rig: Rig): { ask(type: number, ...parts: string[]): void; got: XsMessage[] } {
  const conn = rig.daemon.xs.connectSocket();
  const got: XsMessage[] = [];
  rig.daemon.attach(conn, { send: (m) => void got.push(m), flush: () => undefined, ended: () => undefined });
  let rid = 100;
  return { ask: (type, ...parts) => rig.daemon.input(conn, { type, req_id: rid++, tx_id: 0, payload: nulJoin(...parts) }), got };
}

describe('xenstored: replies and events longer than XENSTORE_PAYLOAD_MAX', () => {
  for (const profile of ['c', 'ocaml'] as const) {
    describe(profile, () => {
      it(`a DIRECTORY listing of 4,160 bytes: the dom0 socket gets ${profile === 'c' ? 'E2BIG' : 'the listing'}, the guest's ring E2BIG`, () => {
        const rig = new Rig({ profile });
        const g = rig.guest(3);
        const pub = rig.pubDir(3);
        for (let i = 0; i < 40; i++) assert.equal(rig.d0(T.XS_MKDIR, `${pub}/${String(i).padStart(3, '0')}${'n'.repeat(100)}`), 'OK');
        const listing = rig.d0(T.XS_DIRECTORY, pub);
        assert.equal(profile === 'c' ? listing : listing.length, profile === 'c' ? 'E2BIG' : 4159);
        assert.equal(g.request(T.XS_DIRECTORY, nulJoin(pub)), 'E2BIG');
      });

      it(`a watch event of 4,182 bytes: the dom0 socket gets ${profile === 'c' ? 'nothing' : 'the event'}, the guest's ring ${profile === 'c' ? 'nothing' : 'an E2BIG error with rid 0'}`, () => {
        const rig = new Rig({ profile });
        const g = rig.guest(3);
        const pub = rig.pubDir(3);
        const tool = socketClient(rig);
        tool.ask(T.XS_WATCH, pub, 'k'.repeat(4000));
        g.send(T.XS_WATCH, nulJoin(pub, 'g'.repeat(4000)));
        assert.deepEqual(drain(g).map((m) => [m.type, m.payload.length]), [[T.XS_WATCH, 2], [T.XS_WATCH_EVENT, pub.length + 4001]]);
        tool.got.length = 0;
        assert.equal(rig.d0(T.XS_WRITE, `${pub}/${'c'.repeat(160)}`), 'OK');
        const toTool = tool.got.map((m) => [m.type, m.payload.length]);
        assert.deepEqual(toTool, profile === 'c' ? [] : [[T.XS_WATCH_EVENT, pub.length + 1 + 160 + 1 + 4000 + 1]]);
        const toGuest = drain(g).map((m) => [m.type, m.req_id, m.payload]);
        assert.deepEqual(toGuest, profile === 'c' ? [] : [[T.XS_ERROR, 0, 'E2BIG']]);
        // The guest's connection is not stuck: an event that fits still comes.
        assert.equal(rig.d0(T.XS_WRITE, `${pub}/x`), 'OK');
        assert.deepEqual(drain(g).map((m) => m.type), [T.XS_WATCH_EVENT]);
        assert.ok(text(tool.got[tool.got.length - 1]).startsWith(`${pub}/x\0`));
      });
    });
  }
});
