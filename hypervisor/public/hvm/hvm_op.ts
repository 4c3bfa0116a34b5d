// xen/include/public/hvm/hvm_op.h.
/** HVMOP sub-ops (hvm/hvm_op.h). */
export enum HvmOp {
  HVMOP_set_param = 0,
  HVMOP_get_param = 1,
}
