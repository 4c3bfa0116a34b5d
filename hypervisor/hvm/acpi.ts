// An HVM guest's ACPI power-management block and S-states. PM1a_STS/PM1a_EN and the SCI are
// Xen's own (xen/arch/x86/hvm/pmtimer.c); PM1a_CNT belongs to QEMU's PIIX4 device model, which
// xensim folds in here (there is no QEMU): writing SLP_TYP|SLP_EN enters S3 through
// HVM_PARAM_ACPI_S_STATE, or S5 as a poweroff shutdown. The guest reaches these registers with
// port I/O (a VM exit, not a hypercall); the SCI reaches it through an event channel bound to
// its pirq, as a PVHVM Linux does.
import type { Domain } from '../domain.ts';

/** ACPI_PM1A_EVT_BLK_ADDRESS_V1 and the control block after it (hvm/ioreq.h, libacpi). */
export const ACPI_PM1A_EVT_BLK_ADDRESS_V1 = 0xb000;
export const PM1a_STS = ACPI_PM1A_EVT_BLK_ADDRESS_V1;
export const PM1a_EN = ACPI_PM1A_EVT_BLK_ADDRESS_V1 + 2;
export const ACPI_PM1A_CNT_BLK_ADDRESS_V1 = ACPI_PM1A_EVT_BLK_ADDRESS_V1 + 4;

/** PM1a_STS / PM1a_EN bits (pmtimer.c). */
export const TMR_STS = 1 << 0;
export const GBL_STS = 1 << 5;
export const PWRBTN_STS = 1 << 8;
export const SLPBTN_STS = 1 << 9;
const SCI_MASK = TMR_STS | GBL_STS | PWRBTN_STS | SLPBTN_STS;

/** PM1a_CNT: SLP_TYP in bits 10-12, SLP_EN bit 13. */
export const SLP_TYP_SHIFT = 10;
export const SLP_EN = 1 << 13;
/** The SLP_TYP values hvmloader's DSDT gives: \_S3 = 1, \_S4 and \_S5 = 0. */
export const SLP_TYP_S3 = 1;
export const SLP_TYP_S5 = 0;

/** The emulated SCI: ISA IRQ 9, which a PVHVM guest binds as pirq 9. */
export const ACPI_SCI_PIRQ = 9;

/**
 * The trap a guest's IN/OUT instruction causes: VMX exit reason 30 (EXIT_REASON_IO_INSTRUCTION).
 * Not a hypercall - xensim carries it over the same trap page, numbered above every hypercall.
 */
export const VMEXIT_IO_INSTRUCTION = 0x10000 + 30;

/** HVM params (hvm/params.h) this model uses. */
export enum HvmParam {
  HVM_PARAM_CALLBACK_IRQ = 0,
  HVM_PARAM_STORE_PFN = 1,
  HVM_PARAM_STORE_EVTCHN = 2,
  HVM_PARAM_ACPI_S_STATE = 14,
  HVM_PARAM_CONSOLE_PFN = 17,
  HVM_PARAM_CONSOLE_EVTCHN = 18,
}

/** HVMOP sub-ops (hvm/hvm_op.h). */
export enum HvmOp {
  HVMOP_set_param = 0,
  HVMOP_get_param = 1,
}

/** XEN_DOMCTL_sendtrigger's triggers (domctl.h). */
export enum DomctlTrigger {
  XEN_DOMCTL_SENDTRIGGER_NMI = 0,
  XEN_DOMCTL_SENDTRIGGER_RESET = 1,
  XEN_DOMCTL_SENDTRIGGER_INIT = 2,
  XEN_DOMCTL_SENDTRIGGER_POWER = 3,
  XEN_DOMCTL_SENDTRIGGER_SLEEP = 4,
}

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
