// The guest's ACPI driver (OSPM) on an HVM platform: it enables the power and sleep buttons,
// takes the SCI through an event channel bound to its pirq, and answers a power button with an
// orderly poweroff ending in S5, a sleep button with suspend-to-RAM (S3) - both by writing
// SLP_TYP|SLP_EN to PM1a_CNT, as Linux's acpi_enter_sleep_state does.
//
// `seedFlow` is the project seed's description, which is NOT how Xen works (see the spec's
// reality check): the guest writes "S5"/"S3" to its control/shutdown node before acting, so that
// dom0 can mirror it at /local/domain/0/acpi/state. Off by default.
import type { XsHandle } from '../libs/store/xs.ts';
import {
  ACPI_PM1A_CNT_BLK_ADDRESS_V1, ACPI_SCI_PIRQ, PM1a_EN, PM1a_STS, PWRBTN_STS, SLP_EN, SLP_TYP_S3, SLP_TYP_S5, SLP_TYP_SHIFT,
  SLPBTN_STS,
} from '../../hypervisor/public/hvm/ioreq.ts';
import type { Kernel } from '../kernel/kernel.ts';

export interface AcpiOptions {
  readonly seedFlow?: boolean;
  /** What the OS does before entering S5 (close its devices). */
  readonly beforePoweroff: () => Promise<void>;
  readonly printk: (text: string) => void;
}

export function acpiInit(k: Kernel, xs: XsHandle, opts: AcpiOptions): void {
  const enter = async (typ: number, name: 'S3' | 'S5'): Promise<void> => {
    if (opts.seedFlow) await xs.write('control/shutdown', name).catch(() => undefined);
    k.outw(ACPI_PM1A_CNT_BLK_ADDRESS_V1, (typ << SLP_TYP_SHIFT) | SLP_EN);
  };
  let busy = false;
  const sci = async (): Promise<void> => {
    const sts = k.inw(PM1a_STS);
    // Write 1 to clear what we are about to handle.
    k.outw(PM1a_STS, sts & (PWRBTN_STS | SLPBTN_STS));
    if (busy) return;
    if (sts & PWRBTN_STS) {
      busy = true;
      opts.printk('ACPI: Power Button [PWRF]\n');
      await opts.beforePoweroff();
      opts.printk('reboot: Power down\n');
      await enter(SLP_TYP_S5, 'S5');
      k.stop();
    } else if (sts & SLPBTN_STS) {
      busy = true;
      opts.printk('PM: suspend entry (deep)\n');
      await enter(SLP_TYP_S3, 'S3');
      // The OUT paused the domain (hvm_s3_suspend); it runs again once woken.
      await new Promise<void>((r) => void k.setTimer(1, r));
      opts.printk('ACPI: PM: Waking up from system sleep state S3\n');
      if (opts.seedFlow) await xs.write('control/shutdown', '').catch(() => undefined);
      busy = false;
    }
  };
  const port = k.bindPirq(ACPI_SCI_PIRQ);
  k.on(port, () => void sci());
  k.outw(PM1a_EN, PWRBTN_STS | SLPBTN_STS);
}
