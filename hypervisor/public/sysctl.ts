// xen/include/public/sysctl.h: the sysctls xensim implements, for the toolstack in dom0.
export enum Sysctl {
  XEN_SYSCTL_getdomaininfolist = 6,
}
