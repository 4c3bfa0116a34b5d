// xen/include/public/domctl.h: the domctls xensim implements, for the toolstack in dom0.
/** XEN_DOMCTL_* commands. */
export enum Domctl {
  XEN_DOMCTL_createdomain = 1,
  XEN_DOMCTL_destroydomain = 2,
  XEN_DOMCTL_pausedomain = 3,
  XEN_DOMCTL_unpausedomain = 4,
  XEN_DOMCTL_getdomaininfo = 5,
  XEN_DOMCTL_max_mem = 11,
  XEN_DOMCTL_resumedomain = 27,
  XEN_DOMCTL_sendtrigger = 28,
  XEN_DOMCTL_set_virq_handler = 66,
}

/** XEN_DOMCTL_sendtrigger's triggers (domctl.h). */
export enum DomctlTrigger {
  XEN_DOMCTL_SENDTRIGGER_NMI = 0,
  XEN_DOMCTL_SENDTRIGGER_RESET = 1,
  XEN_DOMCTL_SENDTRIGGER_INIT = 2,
  XEN_DOMCTL_SENDTRIGGER_POWER = 3,
  XEN_DOMCTL_SENDTRIGGER_SLEEP = 4,
}
