// xen/include/public/domctl.h: the domctls xensim implements, for the toolstack in dom0.
/** XEN_DOMCTL_* commands. */
export enum Domctl {
  XEN_DOMCTL_createdomain = 1,
  XEN_DOMCTL_destroydomain = 2,
  XEN_DOMCTL_pausedomain = 3,
  XEN_DOMCTL_unpausedomain = 4,
  XEN_DOMCTL_getdomaininfo = 5,
  XEN_DOMCTL_shadow_op = 10,
  XEN_DOMCTL_max_mem = 11,
  XEN_DOMCTL_resumedomain = 27,
  XEN_DOMCTL_sendtrigger = 28,
  XEN_DOMCTL_set_virq_handler = 66,
}

/** xen_domctl_createdomain.flags (domctl.h): the ones xensim honours. */
export enum DomctlCdf {
  XEN_DOMCTL_CDF_hvm = 1 << 0,
  /** The domain that runs xenstored (init-xenstore-domain): XSM lets it ask about every domain. */
  XEN_DOMCTL_CDF_xs_domain = 1 << 4,
}

/** XEN_DOMCTL_sendtrigger's triggers (domctl.h). */
export enum DomctlTrigger {
  XEN_DOMCTL_SENDTRIGGER_NMI = 0,
  XEN_DOMCTL_SENDTRIGGER_RESET = 1,
  XEN_DOMCTL_SENDTRIGGER_INIT = 2,
  XEN_DOMCTL_SENDTRIGGER_POWER = 3,
  XEN_DOMCTL_SENDTRIGGER_SLEEP = 4,
}

/** xen_domctl_shadow_op.op (domctl.h): the log-dirty subset xensim models. */
export enum DomctlShadowOp {
  XEN_DOMCTL_SHADOW_OP_OFF = 0,
  /** Legacy: ENABLE with XEN_DOMCTL_SHADOW_ENABLE_LOG_DIRTY. */
  XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY = 2,
  /** Return the bitmap and clear it (and the stats) for the next round. */
  XEN_DOMCTL_SHADOW_OP_CLEAN = 11,
  /** Return the bitmap, leave it as it is. */
  XEN_DOMCTL_SHADOW_OP_PEEK = 12,
  XEN_DOMCTL_SHADOW_OP_ENABLE = 32,
}

/** XEN_DOMCTL_SHADOW_OP_ENABLE's mode flag for log-dirty. */
export const XEN_DOMCTL_SHADOW_ENABLE_LOG_DIRTY = 1 << 2;
