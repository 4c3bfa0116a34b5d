// ACPI power control of HVM guests (spec 6): xl trigger power presses the power button and the
// guest's OSPM powers off through S5, a normal SHUTDOWN_poweroff; xl trigger sleep puts it in S3
// (HVM_PARAM_ACPI_S_STATE = 3, domain paused) and s3resume wakes it. PV guests have no ACPI:
// power/sleep are EINVAL, and init/reset are ENOSYS on x86 for everyone. The seed's
// /local/domain/0/acpi/state flow is not Xen: it exists only when both dom0 and the guest ask.
// Every spec runs in inline lockstep under several seeds.
import assert from 'node:assert/strict';
import type { Dom0Args } from '../../domains/dom0/dom0.ts';
import type { GuestArgs } from '../../domains/domU/guest.ts';
import type { TraceEvent } from '../../sim/host-runtime.ts';
import { bootHost, SEEDS, tree, treeDiff } from '../helpers/host.ts';
import { assertBaseline, assertConnected, assertGone, DEVICES, twoDisksOneNic, value } from '../helpers/toolstack.ts';

const ACPI_STATE = '/local/domain/0/acpi/state';
const POWER_BUTTON = 'ACPI: Power Button [PWRF]';
const SLEEP = 'PM: suspend entry (deep)';
const WAKE = 'ACPI: PM: Waking up from system sleep state S3';

const hvm = (name: string) => ({ ...twoDisksOneNic(name), type: 'hvm' as const });

/** Every xenstore message that names the seed's node (any domain, either direction). */
const acpiStateMessages = (trace: TraceEvent[]): TraceEvent[] =>
  trace.filter((e) => e.kind === 'xenstore' && String(e.payload).includes('acpi/state'));

/** Guest writes of anything but the "" ack to control/shutdown. */
const powerStateWrites = (trace: TraceEvent[], domid: number): TraceEvent[] =>
  trace.filter((e) => e.kind === 'xenstore' && e.dir === 'IN' && e.domid === domid && e.type === 'WRITE'
    && String(e.payload).startsWith('control/shutdown\\0') && e.payload !== 'control/shutdown\\0');

/** Sleep, wake, then power off an HVM guest; returns its domid once it is gone. */
async function sleepWakePowerOff(seed: number, dom0: Dom0Args, guest: GuestArgs): Promise<{ trace: TraceEvent[]; domid: number; seen: string[] }> {
  const { rt, xl, trace } = await bootHost(seed, dom0);
  const seen: string[] = [];
  const look = async (): Promise<void> => void seen.push(value(await tree(xl, '/local/domain/0'), ACPI_STATE) ?? '(none)');
  try {
    const id = await xl.create(hvm('seedflow'), { guest });
    await rt.quiesce();
    await look();
    await xl.trigger(id, 'sleep');
    await rt.quiesce();
    assert.equal(await xl.acpiSState(id), 3);
    await look();
    await xl.trigger(id, 's3resume');
    await rt.quiesce();
    assert.equal(await xl.acpiSState(id), 0);
    await look();
    await xl.trigger(id, 'power');
    await xl.settled();
    assertGone(rt, xl, id);
    await look();
    return { trace, domid: id, seen };
  } finally {
    await rt.shutdown();
  }
}

describe('toolstack: ACPI power and sleep (xl trigger)', function () {

  for (const seed of SEEDS) {
    describe(`seed ${seed}`, () => {
      it('HVM, xl trigger power: the guest powers off through S5 (SHUTDOWN_poweroff) and on_poweroff=destroy leaves the boot tree', async () => {
        const { rt, xl, trace } = await bootHost(seed);
        try {
          const base = await tree(xl);
          const id = await xl.create(hvm('hvm-power'));
          await rt.quiesce();
          await assertConnected(xl, id);
          const mark = trace.length;

          assert.equal(await xl.trigger(id, 'power'), 0);
          await xl.settled();

          assert.deepEqual(xl.events.filter((e) => e.domid === id && e.event === 'shutdown').map((e) => e.reason), ['SHUTDOWN_poweroff']);
          const con = await xl.console(id);
          const button = con.indexOf(POWER_BUTTON);
          assert.ok(button >= 0, con);
          assert.ok(con.indexOf('reboot: Power down', button) > button, con);
          // The OS closed its devices before S5 (the toolstack's forced removal came after).
          for (const dev of DEVICES.map(([kind, devid]) => `${kind}/${devid}`)) {
            const fe = trace.slice(mark).filter((e) => e.kind === 'xenbus' && e.role === 'frontend' && e.domid === id && e.device === dev)
              .map((e) => e.state);
            assert.deepEqual(fe, [5, 6], `${dev} frontend`);
          }
          // Not through control/shutdown: the guest wrote no power state anywhere.
          assert.deepEqual(powerStateWrites(trace, id), []);
          assertGone(rt, xl, id);
          assertBaseline(base, await tree(xl));
        } finally {
          await rt.shutdown();
        }
      });

      it('HVM, xl trigger sleep: HVM_PARAM_ACPI_S_STATE is 3 and the domain paused; s3resume: 0, running, devices still Connected', async () => {
        const { rt, xl } = await bootHost(seed);
        try {
          const id = await xl.create(hvm('hvm-s3'));
          await rt.quiesce();
          await assertConnected(xl, id);
          assert.equal(await xl.acpiSState(id), 0);
          const before = await tree(xl);

          assert.equal(await xl.trigger(id, 'sleep'), 0);
          await rt.quiesce();
          assert.equal(await xl.acpiSState(id), 3);
          assert.equal(rt.host.domains.get(id)?.runState, 'paused');
          assert.equal(xl.list().find((r) => r.id === id)?.state, '--p---');
          assert.ok((await xl.console(id)).includes(SLEEP));
          // S3 is no shutdown: nothing reported, nothing done by xl.
          assert.deepEqual(xl.events.filter((e) => e.domid === id), []);
          // Asleep for a while: still asleep.
          await xl.settled();
          assert.equal(await xl.acpiSState(id), 3);
          assert.equal(rt.host.domains.get(id)?.runState, 'paused');

          assert.equal(await xl.trigger(id, 's3resume'), 0);
          await rt.quiesce();
          assert.equal(await xl.acpiSState(id), 0);
          assert.equal(rt.host.domains.get(id)?.runState, 'running');
          const con = await xl.console(id);
          assert.ok(con.indexOf(WAKE) > con.indexOf(SLEEP), con);
          await assertConnected(xl, id);
          // Nothing in xenstore changed across S3.
          const after = await tree(xl);
          assert.deepEqual(treeDiff(before, after), { added: [], removed: [] });
          for (const [p, v] of before) assert.equal(after.get(p), v, p);
          // And it sleeps again on the next press.
          await xl.trigger(id, 'sleep');
          await rt.quiesce();
          assert.equal(await xl.acpiSState(id), 3);
        } finally {
          await rt.shutdown();
        }
      });

      it('xl trigger power/sleep on a PV guest is EINVAL; init and reset are ENOSYS on x86 (PV and HVM); the guests keep running', async () => {
        const { rt, xl } = await bootHost(seed);
        try {
          const pv = await xl.create({ name: 'pv', disks: [{ vdev: 'xvda', target: 'pv-root' }] });
          const hv = await xl.create({ name: 'hv', type: 'hvm', disks: [{ vdev: 'xvda', target: 'hv-root' }] });
          await rt.quiesce();
          await assert.rejects(xl.trigger(pv, 'power'), /EINVAL/);
          await assert.rejects(xl.trigger(pv, 'sleep'), /EINVAL/);
          for (const id of [pv, hv]) {
            await assert.rejects(xl.trigger(id, 'reset'), /ENOSYS/);
            await assert.rejects(xl.trigger(id, 'init'), /ENOSYS/);
          }
          await rt.quiesce();
          for (const id of [pv, hv]) assert.equal(rt.host.domains.get(id)?.runState, 'running');
          assert.deepEqual(xl.events, []);
          assert.ok(!(await xl.console(pv)).includes(POWER_BUTTON));
        } finally {
          await rt.shutdown();
        }
      });

      it('the seed\'s /local/domain/0/acpi/state is off by default: no such node ever appears through sleep, resume and power off', async () => {
        const { trace, domid, seen } = await sleepWakePowerOff(seed, {}, {});
        assert.deepEqual(seen, ['(none)', '(none)', '(none)', '(none)']);
        assert.deepEqual(acpiStateMessages(trace), []);
        assert.deepEqual(powerStateWrites(trace, domid), []);
      });

      it('only one side asking for the seed\'s flow is not enough: no acpi/state node', async () => {
        const dom0Only = await sleepWakePowerOff(seed, { quirks: { toolstack: { acpiSeedFlow: true } } }, {});
        assert.deepEqual(dom0Only.seen, ['(none)', '(none)', '(none)', '(none)']);
        assert.deepEqual(acpiStateMessages(dom0Only.trace).filter((e) => e.type === 'WRITE'), []);
        const guestOnly = await sleepWakePowerOff(seed, {}, { acpiSeedFlow: true });
        assert.deepEqual(guestOnly.seen, ['(none)', '(none)', '(none)', '(none)']);
        assert.deepEqual(acpiStateMessages(guestOnly.trace), []);
      });

      it('with the seed\'s flow on in dom0 and the guest: acpi/state reads S3 asleep, S0 after resume, S5 at power off', async () => {
        const { seen } = await sleepWakePowerOff(seed, { quirks: { toolstack: { acpiSeedFlow: true } } }, { acpiSeedFlow: true });
        assert.deepEqual(seen, ['(none)', 'S3', 'S0', 'S5']);
      });
    });
  }
});
