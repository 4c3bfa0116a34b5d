// A guest that reports the vCPUs it booted with and which of them Xen knows: for each vCPU id
// 0..vcpus it asks EVTCHNOP_bind_vcpu to move one of its ports there (0, or -ENOENT for a vCPU
// the domain does not have).
import { EvtchnOp } from '../../hypervisor/public/event_channel.ts';
import type { ControlPort } from '../../hypervisor/public/vcpu.ts';
import { Hypercall } from '../../hypervisor/public/xen.ts';
import type { Kernel } from '../../domains/kernel/kernel.ts';

export interface VcpuReport {
  readonly cmd: 'vcpus';
  readonly domid: number;
  /** What the kernel booted with. */
  readonly vcpus: number;
  /** EVTCHNOP_bind_vcpu's answer for vCPU 0, 1, ..., vcpus (one past the last). */
  readonly bindVcpu: readonly number[];
}

export function main(k: Kernel, _args: unknown, control: ControlPort): void {
  const port = k.allocUnbound(0);
  const bindVcpu: number[] = [];
  for (let vcpu = 0; vcpu <= k.vcpus; vcpu++) {
    bindVcpu.push(Number(k.hypercall(Hypercall.__HYPERVISOR_event_channel_op, { cmd: EvtchnOp.EVTCHNOP_bind_vcpu, arg: { port, vcpu } })));
  }
  control.postMessage({ cmd: 'vcpus', domid: k.domid, vcpus: k.vcpus, bindVcpu } satisfies VcpuReport);
}
