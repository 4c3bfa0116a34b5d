// The scenario library proper: lifecycle, device, xenstore-behaviour and XSA regression
// scenarios that must pass on every seed (the planted races live in races.ts).
import type { ScenarioDef } from '../sim/scenario/scenario.ts';
import bootThreeGuests from './boot-three-guests.ts';
import reboot from './reboot.ts';
import suspendResume from './suspend-resume.ts';
import acpiPowerAndSleep from './acpi-power-and-sleep.ts';
import guestDiesDuringHandshake from './guest-dies-during-handshake.ts';
import toolstackTransactionsRace from './toolstack-transactions-race.ts';
import xenstoredCrash from './xenstored-crash.ts';
import quotaBites from './quota-bites.ts';
import slowWatcher from './slow-watcher.ts';
import domidReuse from './domid-reuse.ts';

export const LIBRARY: readonly ScenarioDef[] = [
  bootThreeGuests,
  reboot,
  suspendResume,
  acpiPowerAndSleep,
  guestDiesDuringHandshake,
  toolstackTransactionsRace,
  xenstoredCrash,
  quotaBites,
  slowWatcher,
  domidReuse,
];
