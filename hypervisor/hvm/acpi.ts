// An HVM guest's ACPI power-management block and S-states. PM1a_STS/PM1a_EN and the SCI are
// Xen's own (xen/arch/x86/hvm/pmtimer.c); PM1a_CNT belongs to QEMU's PIIX4 device model, which
// xensim folds in here (there is no QEMU): writing SLP_TYP|SLP_EN enters S3 through
// HVM_PARAM_ACPI_S_STATE, or S5 as a poweroff shutdown. The guest reaches these registers with
// port I/O (a VM exit, not a hypercall); the SCI reaches it through an event channel bound to
// its pirq, as a PVHVM Linux does.
import type { Domain } from '../domain.ts';
import {
  ACPI_PM1A_CNT_BLK_ADDRESS_V1, GBL_STS, PM1a_EN, PM1a_STS, PWRBTN_STS, SLP_EN, SLP_TYP_S3, SLP_TYP_S5, SLP_TYP_SHIFT, SLPBTN_STS, TMR_STS,
} from '../public/hvm/ioreq.ts';

const SCI_MASK = TMR_STS | GBL_STS | PWRBTN_STS | SLPBTN_STS;

export interface AcpiHooks {
  /** The SCI line is asserted: send the guest its pirq. */
  sci(d: Domain): void;
  /** hvm_s3_suspend / hvm_s3_resume. */
  s3(d: Domain, entering: boolean): void;
  /** QEMU's shutdown request after an S5 write. */
  poweroff(d: Domain): void;
}

export class HvmAcpi {
  pm1aSts = 0;
  pm1aEn = 0;
  /** HVM_PARAM_ACPI_S_STATE: 0 (S0) or 3 (S3). */
  sState = 0;
  /** The last PM1a_CNT value written. */
  pm1aCnt = 0;

  constructor(private readonly d: Domain, private readonly hooks: AcpiHooks) {}

  /** pmt_update_sci: the SCI is asserted while an enabled status bit is set. */
  private updateSci(): void {
    if (this.pm1aSts & this.pm1aEn & SCI_MASK) this.hooks.sci(this.d);
  }

  /** XEN_DOMCTL_sendtrigger POWER / SLEEP: the buttons' status bits. */
  pressButton(bit: typeof PWRBTN_STS | typeof SLPBTN_STS): void {
    this.pm1aSts |= bit;
    this.updateSci();
  }

  /** A port read; undefined for a port this block does not decode. */
  ioRead(port: number): number | undefined {
    switch (port) {
      case PM1a_STS: return this.pm1aSts;
      case PM1a_EN: return this.pm1aEn;
      case ACPI_PM1A_CNT_BLK_ADDRESS_V1: return this.pm1aCnt & ~SLP_EN;
      default: return undefined;
    }
  }

  /** A port write; false for a port this block does not decode. */
  ioWrite(port: number, value: number): boolean {
    const v = value & 0xffff;
    switch (port) {
      case PM1a_STS:
        // Write 1 to clear.
        this.pm1aSts &= ~v;
        this.updateSci();
        return true;
      case PM1a_EN:
        this.pm1aEn = v;
        this.updateSci();
        return true;
      case ACPI_PM1A_CNT_BLK_ADDRESS_V1: {
        this.pm1aCnt = v;
        if (!(v & SLP_EN)) return true;
        const typ = (v >> SLP_TYP_SHIFT) & 7;
        if (typ === SLP_TYP_S3) this.setSState(3);
        else if (typ === SLP_TYP_S5) this.hooks.poweroff(this.d);
        return true;
      }
      default:
        return false;
    }
  }

  /** HVMOP_set_param(HVM_PARAM_ACPI_S_STATE): only 0 and 3 (-EINVAL otherwise, as hvm.c). */
  setSState(value: number): boolean {
    if (value !== 0 && value !== 3) return false;
    if (value === this.sState) return true;
    this.sState = value;
    this.hooks.s3(this.d, value === 3);
    return true;
  }
}
