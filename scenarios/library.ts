// The scenario library proper: lifecycle, device and xenstore-behaviour scenarios, then the XSA
// regressions. All must pass on every seed (the planted races live in races.ts).
import type { ScenarioDef } from '../sim/scenario/scenario.ts';
import acpiPowerAndSleep from './acpi-power-and-sleep.ts';
import bootThreeGuests from './boot-three-guests.ts';
import dom0CrashWithXenstoreDomain from './dom0-crash-with-xenstore-domain.ts';
import domidReuse from './domid-reuse.ts';
import guestCrashesAtRandomPoint from './guest-crashes-at-random-point.ts';
import guestDiesDuringHandshake from './guest-dies-during-handshake.ts';
import migrateDestinationDies from './migrate-destination-dies.ts';
import migrateDuringBlockIo from './migrate-during-block-io.ts';
import migrateDirtyStorm from './migrate-dirty-storm.ts';
import migrateIdleGuest from './migrate-idle-guest.ts';
import migrateThereAndBack from './migrate-there-and-back.ts';
import migrateWithOpenUserTxn from './migrate-with-open-user-txn.ts';
import migrateWithWatches from './migrate-with-watches.ts';
import quotaBites from './quota-bites.ts';
import reboot from './reboot.ts';
import ringOwnership from './ring-ownership.ts';
import slowWatcher from './slow-watcher.ts';
import saveRestore from './save-restore.ts';
import saveRestoreRenamed from './save-restore-renamed.ts';
import suspendResume from './suspend-resume.ts';
import toolstackTransactionsRace from './toolstack-transactions-race.ts';
import vbdHandshake from './vbd-handshake.ts';
import vbdReplacedWhileGuestPaused from './vbd-replaced-while-guest-paused.ts';
import xenstoredCrash from './xenstored-crash.ts';
import xenstoredFailover from './xenstored-failover.ts';
import xenstoredRestart from './xenstored-restart.ts';
import xsa115 from './xsa-115-watch-permissions.ts';
import xsa322 from './xsa-322-417-stale-acl.ts';
import xsa323 from './xsa-323-path-length.ts';
import xsa324 from './xsa-324-huge-watch-token.ts';
import xsa325 from './xsa-325-bad-client-release.ts';
import xsa326 from './xsa-326-unread-replies.ts';
import xsa352 from './xsa-352-353-ocaml-owner-and-root.ts';
import xsa414 from './xsa-414-415-failed-create.ts';
import xsa419 from './xsa-419-stray-nodes.ts';
import xsa440 from './xsa-440-double-delete.ts';
import xsa481 from './xsa-481-empty-domid-component.ts';

/** XSA regression scenarios (tag `xsa`), by XSA number. */
export const XSAS: readonly ScenarioDef[] = [
  xsa115, xsa322, xsa323, xsa324, xsa325, xsa326, xsa352, xsa414, xsa419, xsa440, xsa481,
];

/** Live migration between two hosts of one run (tag `migration`). */
export const MIGRATIONS: readonly ScenarioDef[] = [
  migrateIdleGuest,
  migrateDestinationDies,
  migrateDirtyStorm,
  migrateThereAndBack,
  migrateWithWatches,
  migrateWithOpenUserTxn,
  migrateDuringBlockIo,
  saveRestoreRenamed,
];

export const LIBRARY: readonly ScenarioDef[] = [
  vbdHandshake,
  bootThreeGuests,
  reboot,
  suspendResume,
  saveRestore,
  acpiPowerAndSleep,
  guestDiesDuringHandshake,
  guestCrashesAtRandomPoint,
  toolstackTransactionsRace,
  xenstoredCrash,
  xenstoredRestart,
  dom0CrashWithXenstoreDomain,
  xenstoredFailover,
  quotaBites,
  slowWatcher,
  domidReuse,
  vbdReplacedWhileGuestPaused,
  ringOwnership,
  ...MIGRATIONS,
  ...XSAS,
];
