// Planted races: each ships the buggy variant of a step that really failed in Xen or Linux next
// to the fixed one (spec/known-races.md). With no fault injected, every buggy variant fails on
// some schedules and passes on others (a race), and the fixed ones pass the same seeds. R15 is
// not here: its bug leaks on every reused domid whatever the schedule, so it is the library's
// domid-reuse variant before-xsa-322; nor is R10 (a), whose netback loses the posted buffers on
// every schedule: the library's ring-ownership.
import type { ScenarioDef } from '../sim/scenario/scenario.ts';
import r01 from './race-r01-watch-first-event-lost.ts';
import r02 from './race-r02-coalesced-state-skip.ts';
import r03 from './race-r03-netback-hotplug-gate.ts';
import r04 from './race-r04-cached-state-in-aborted-txn.ts';
import r05 from './race-r05-resume-stale-frontend.ts';
import r05m from './race-r05-migrate-stale-frontend.ts';
import r06 from './race-r06-close-before-connect.ts';
import r07 from './race-r07-double-disconnect.ts';
import r08 from './race-r08-grant-revoke-toctou.ts';
import r09 from './race-r09-evtchn-unbind-during-dispatch.ts';
import r11 from './race-r11-introduce-before-metadata.ts';
import r12 from './race-r12-leaked-watch-eexist.ts';
import r13 from './race-r13-devd-late-start.ts';
import r14 from './race-r14-releasedomain-lost.ts';
import r16 from './race-r16-late-xenstore-connect.ts';
import r17 from './race-r17-suspend-vs-open-user-txn.ts';
import r18 from './race-r18-suspend-ack-vs-timeout.ts';
import r19 from './race-r19-txn-retry-side-effects.ts';
import r20 from './race-r20-partial-publish.ts';

export const RACES: readonly ScenarioDef[] = [
  r01,
  r02,
  r03,
  r04,
  r05,
  r05m,
  r06,
  r07,
  r08,
  r09,
  r11,
  r12,
  r13,
  r14,
  r16,
  r17,
  r18,
  r19,
  r20,
];
