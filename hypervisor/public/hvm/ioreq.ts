// xen/include/public/hvm/ioreq.h and what a guest needs to drive the emulated ACPI PM block: the
// register addresses hvmloader's tables describe, their bits (pmtimer.c, PIIX4's PM1a_CNT), the
// SCI's pirq, and the trap an IN/OUT instruction causes.
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
