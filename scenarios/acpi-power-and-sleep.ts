// ACPI buttons of an HVM guest (xl trigger): sleep makes the guest's OSPM enter S3, which Xen
// records as HVM_PARAM_ACPI_S_STATE = 3 and answers by pausing the domain; s3resume (the device
// model's system_wakeup) sets it back to 0 and the guest runs on with its devices intact. The
// power button then makes it power off through S5 - an ordinary SHUTDOWN_poweroff that xl cleans up.
import { defineScenario, guestConfig } from '../sim/scenario/scenario.ts';

export default defineScenario({
  name: 'acpi-power-and-sleep',
  title: 'an HVM guest sleeps in S3 (paused), wakes on s3resume, and powers off on the power button',
  tags: ['lifecycle', 'acpi', 'hvm'],
  faults: { jitter: { p: [0, 0.3], maxNs: 2e6 } },
  async run(s) {
    s.devicesAgree('guest');
    const id = await s.step('xl create an HVM guest (xvda, vif 0)', () =>
      s.create('guest', guestConfig('hvm', { type: 'hvm', disks: [{ vdev: 'xvda', target: 'hvm-root', sizeMiB: 8 }], vifs: [{}] })));
    await s.step('every device connects; the guest is in S0', async () => {
      for (const d of ['vbd/51712', 'vif/0']) s.expect(await s.waitFor(`/local/domain/${id}/device/${d}/state`, '4'), `${d} frontend Connected`);
      s.expect(await s.xl.acpiSState(id) === 0, 'HVM_PARAM_ACPI_S_STATE is 0');
    });
    await s.step('xl trigger sleep', () => s.xl.trigger(id, 'sleep'));
    await s.step('the guest is in S3 and paused', async () => {
      s.expect(await s.xl.acpiSState(id) === 3, 'HVM_PARAM_ACPI_S_STATE is 3');
      s.expect(s.rt.host.domains.get(id)?.runState === 'paused', `domain ${id} is paused (${s.rt.host.domains.get(id)?.runState})`);
      // S3 is not a shutdown: nothing for xl to act on.
      s.expect(!s.xl.events.some((e) => e.domid === id), 'no SHUTDOWN event for S3');
    });
    await s.step('xl trigger s3resume', () => s.xl.trigger(id, 's3resume'));
    await s.step('the guest is back in S0 and running', async () => {
      s.expect(await s.xl.acpiSState(id) === 0, 'HVM_PARAM_ACPI_S_STATE is 0 again');
      s.expect(s.rt.host.domains.get(id)?.runState === 'running', `domain ${id} runs (${s.rt.host.domains.get(id)?.runState})`);
      const io = await s.guest<{ status?: number; error?: string }>('guest', { cmd: 'blk', device: 'vbd/51712', op: 'read', sector: 0, sectors: 8 });
      s.expect(io.status === 0, `xvda read after wake-up: ${io.error ?? io.status}`);
    });
    await s.step('xl trigger power', () => s.xl.trigger(id, 'power'));
    s.expect(s.xl.events.some((e) => e.domid === id && e.reason === 'SHUTDOWN_poweroff'), 'the power button led to SHUTDOWN_poweroff (S5)');
    s.expect(!s.rt.host.domains.has(id), 'on_poweroff=destroy removed the domain');
    await s.expectNoOrphans();
  },
});
