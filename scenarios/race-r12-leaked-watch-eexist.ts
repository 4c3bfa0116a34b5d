// R12: when a domain goes, xenopsd's watch thread hears @releaseDomain, rescans, and removes the
// per-VM watches it installed for it. Before xenopsd ac8df23b it did so only for a VM still in its
// metadata DB - but VM_destroy removes the VM's entry right after destroying the domain, so when
// the watch thread's rescan comes after that, the domain is "not managed by us" and its watches
// stay registered in xenstored. The next start of the same VM watches /vm/<uuid>/rtc/timeoffset
// again, with the same token, and xenstored answers EEXIST (the commit's own tell-tale).
import { defineScenario } from '../sim/scenario/scenario.ts';
import type { TraceEvent } from '../sim/host-runtime.ts';
import { interestingPaths, type XenopsdState } from '../domains/dom0/toolstack/xenopsd.ts';

const VM = '12121212-1212-4212-8212-121212121212';

/** XS_WATCH / XS_UNWATCH requests on `conn` that xenstored answered with an error. */
function watchErrors(trace: readonly TraceEvent[], conn: number): string[] {
  const asked = new Map<number, string>();
  const out: string[] = [];
  for (const e of trace) {
    if (e.kind !== 'xenstore' || e.conn !== conn) continue;
    if (e.dir === 'IN' && (e.type === 'WATCH' || e.type === 'UNWATCH')) asked.set(Number(e.req_id), `XS_${String(e.type)} ${String(e.payload).split('\\0')[0]}`);
    else if (e.dir === 'OUT' && e.type === 'ERROR' && asked.has(Number(e.req_id))) {
      out.push(`${asked.get(Number(e.req_id))} -> ${String(e.payload).split('\\0')[0]}`);
    }
  }
  return out;
}

export default defineScenario({
  name: 'race-r12-leaked-watch-eexist',
  title: 'xenopsd destroys a VM and starts it again while its watch thread handles @releaseDomain',
  tags: ['race', 'lifecycle', 'xenstore', 'xenopsd'],
  race: { id: 'R12', name: 'leaked-watch-EEXIST', source: 'xenopsd ac8df23b (CA-83264)' },
  variants: {
    fixed: { description: 'the watch thread removes the watches it installed for a domain whenever the domain goes', dom0: { xenopsd: true } },
    buggy: {
      description: 'the watch thread removes a domain\'s watches only if its VM is still in the metadata DB',
      dom0: { xenopsd: true, quirks: { xenopsd: { unwatchOnlyManaged: true } } },
    },
  },
  expect: { fixed: 'pass', buggy: 'fail' },
  async run(s) {
    s.invariant('xenopsd\'s watch table is xenstored\'s, and no XS_WATCH/XS_UNWATCH of its failed', async () => {
      const st = await s.rt.toolstack<XenopsdState>('xenopsd-state', {});
      const key = (p: string, t: string): string => `${p} (token ${t})`;
      const client = new Set(['@introduceDomain', '@releaseDomain'].map((p) => key(p, '')));
      for (const i of st.installed) for (const p of i.paths) client.add(key(p, p));
      const server = new Set(st.server.map((w) => key(w.path, w.token)));
      const onlyServer = [...server].filter((w) => !client.has(w));
      const onlyClient = [...client].filter((w) => !server.has(w));
      if (onlyServer.length || onlyClient.length) {
        return `xenstored has ${onlyServer.join(', ') || 'nothing'} that xenopsd does not know of; xenopsd counts on ${onlyClient.join(', ') || 'nothing'} that xenstored does not have`;
      }
      const errors = st.conn === undefined ? [] : watchErrors(s.trace, st.conn);
      if (errors.length) return `xenstored refused xenopsd's watch thread: ${errors.join('; ')}`;
      return undefined;
    });
    const start = (): Promise<unknown> => Promise.all([s.rt.toolstack('VM_create', { uuid: VM, name: 'vm' }), s.rt.toolstack('VM_build', { uuid: VM })]);
    await s.step('xenopsd: VM_start (VM_create, VM_build)', start);
    await s.step('xenopsd: VM_destroy', () => s.rt.toolstack('VM_destroy', { uuid: VM }));
    await s.step('xenopsd: VM_start of the same VM (a new domid)', start);
    const st = await s.rt.toolstack<XenopsdState>('xenopsd-state', {});
    const stale = st.installed.filter((i) => s.rt.host.domains.get(i.domid)?.handle !== i.uuid);
    s.expect(stale.length === 0, `xenopsd still watches ${stale.flatMap((i) => interestingPaths(i.domid, i.uuid)).join(', ')} for domains that are gone`);
  },
});
