// R08 (XSA-396): blkfront, done with a request, takes its data page back while the backend - a
// driver domain that need not be trusted - maps the page's grant again when it likes (Xen lets it:
// the grant stands until the frontend ends it). Before the fix blkfront asked "is it mapped?" and,
// told no, ended access without checking that this worked and reused the page; a map landing
// between the question and the end kept the page reachable from the backend while it carried the
// guest's next data. The fix ends access with one compare-and-swap that fails while Xen has the
// grant marked in use, and then keeps the page out of circulation. Whether the backend's late map
// falls in the window (blkfront's completion and xenblkd's next step are separate tasks on
// separate vCPUs) is up to the schedule.
import { BlkifRsp } from '../hypervisor/public/io/blkif.ts';
import type { ScenarioRun } from '../sim/scenario/run.ts';
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';
import type { TraceEvent } from '../sim/host-runtime.ts';
import {
  GRANT_ENTRIES_PER_PAGE_V1, GTF_permit_access, GTF_reading, GTF_type_mask, readGrantEntryV1,
} from '../hypervisor/public/grant_table.ts';

const XVDA = 'vbd/51712';

/**
 * Hypervisor-side: for each of the guest's grants another domain has pinned (Xen's active
 * entries), the shared entry still grants that frame to that domain with Xen's in-use flag, and
 * no other entry grants the same frame - blkfront grants a data page once per request, so a
 * second grant is the page's next use. The description of the first breach, or undefined.
 */
function pageReusedWhileMapped(s: ScenarioRun, domid: number): string | undefined {
  const d = s.rt.host.domains.get(domid);
  if (!d) return undefined;
  const table = s.rt.gnttab.tableFrames(d).map((f) => f.bytes);
  const nr = table.length * GRANT_ENTRIES_PER_PAGE_V1;
  for (const act of s.rt.gnttab.activeEntries(d)) {
    if (act.pin === 0) continue;
    const e = readGrantEntryV1(table, act.ref);
    if ((e.flags & GTF_type_mask) !== GTF_permit_access || e.domid !== act.domid || e.frame !== act.gfn || !(e.flags & GTF_reading)) {
      return `grant ref ${act.ref} was ended or rewritten (flags 0x${e.flags.toString(16)}, frame ${e.frame}) while d${act.domid} maps gfn ${act.gfn} through it`;
    }
    for (let ref = 0; ref < nr; ref++) {
      if (ref === act.ref) continue;
      const o = readGrantEntryV1(table, ref);
      if ((o.flags & GTF_type_mask) === GTF_permit_access && o.frame === act.gfn) {
        return `gfn ${act.gfn} is granted anew (ref ${ref}, to d${o.domid}) while d${act.domid} still maps it through ref ${act.ref}`;
      }
    }
  }
  return undefined;
}

export default defineScenario({
  name: 'race-r08-grant-revoke-toctou',
  title: 'a backend maps an answered request\'s grant late; blkfront never reuses a page the backend still maps',
  tags: ['race', 'vbd', 'xsa', 'grant'],
  race: { id: 'R08', name: 'grant-revoke-toctou (XSA-396)', source: 'Linux abf1fd5919d6 (blkfront), 31185df7e2b1 (netfront)' },
  variants: {
    fixed: {
      description: 'blkfront ends each grant with the atomic try-end and keeps a page still mapped out of circulation',
      dom0: { quirks: { blkback: { mapAnsweredGrantLate: true } } },
    },
    buggy: {
      description: 'blkfront asks whether a grant is mapped, then ends it unchecked and reuses the page',
      dom0: { quirks: { blkback: { mapAnsweredGrantLate: true } } },
      guest: { quirks: { blkfront: { queryThenEndAccess: true } } },
    },
  },
  expect: { fixed: 'pass', buggy: 'fail' },
  faults: { jitter: { p: [0, 0.3], maxNs: 1e6 } },
  async run(s) {
    const id = await s.step('xl create guest with a disk', () =>
      s.create('guest', guestConfig('guest', { disks: [{ vdev: 'xvda', target: 'r08' }] })));
    s.invariant('no page of the guest is reused while another domain maps it', async () => pageReusedWhileMapped(s, id));
    await s.step('xvda connects', async () => {
      s.expect(await s.waitFor(`/local/domain/${id}/device/${XVDA}/state`, '4'), 'blkfront Connected');
      s.expect(await s.waitFor(`/local/domain/0/backend/vbd/${id}/51712/state`, '4'), 'blkback Connected');
    });
    // Checked at every grant operation on the guest's table as it happens: once the I/O is over
    // the second grant may be ended again and the evidence gone. (runUntil's predicate serves as
    // the observer here: it never matches, so each action runs until the host is quiet.)
    let breach: string | undefined;
    const watching = (action: () => Promise<unknown>) => s.runUntil(action, (e: TraceEvent) => {
      if (breach === undefined && e.kind === 'gnttab' && (e.dom === id || e.domid === id)) breach = pageReusedWhileMapped(s, id);
      return false;
    });
    const write = async (fill: number, which: string): Promise<void> => {
      let r: { status?: number; error?: string } = {};
      await watching(async () => {
        r = await s.guest<{ status?: number; error?: string }>('guest', {
          cmd: 'blk', device: XVDA, op: 'write', sector: 0, sectors: 8, data: new Uint8Array(4096).fill(fill),
        });
      });
      s.expect(breach === undefined, breach ?? '');
      // Done, or - the fixed blkfront having found the grant still mapped - failed with the
      // device disabled (that request, and any later one).
      const disabled = r.status === BlkifRsp.BLKIF_RSP_ERROR || /disabled for further use/.test(r.error ?? '');
      s.expect(r.status === BlkifRsp.BLKIF_RSP_OKAY || disabled, `${which} write: ${r.error ?? r.status}`);
      if (disabled) s.note(`${which} write: xvda disabled, a grant was still mapped`);
    };
    await s.step('the guest writes a page; blkback answers, then maps the page\'s grant again as xenblkd\'s next step', async () => {
      await write(0xa1, 'first');
    });
    await s.step('the guest writes another page (its allocator hands out the page freed last)', async () => {
      await write(0xb2, 'second');
    });
  },
});
