// xen/include/public/hvm/params.h: the HVM params xensim uses.
/** HVM params (hvm/params.h) this model uses. */
export enum HvmParam {
  HVM_PARAM_CALLBACK_IRQ = 0,
  HVM_PARAM_STORE_PFN = 1,
  HVM_PARAM_STORE_EVTCHN = 2,
  HVM_PARAM_ACPI_S_STATE = 14,
  HVM_PARAM_CONSOLE_PFN = 17,
  HVM_PARAM_CONSOLE_EVTCHN = 18,
}
