// Reading the event-channel model's results in specs: -EINVAL style names, so that failures read
// like Xen's, and the record of a call that must succeed.
import assert from 'node:assert/strict';
import type { EvtchnResult } from '../../hypervisor/event-channel.ts';
import { Errno } from '../../hypervisor/public/xen.ts';

/** A result as Xen names it: -EINVAL, a number, or 'record'. */
export function rc(r: unknown): string {
  if (typeof r !== 'number') return 'record';
  return r < 0 ? `-${Errno[-r] ?? -r}` : String(r);
}

/** The record of a call that must succeed (fails the spec with the errno otherwise). */
export function ok<T>(r: EvtchnResult<T>): T {
  if (typeof r === 'number' && r < 0) assert.fail(`expected success, got ${rc(r)}`);
  return r as T;
}
