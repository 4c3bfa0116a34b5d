// The suspend gate of Linux's drivers/xen/xenbus/xenbus_xs.c: while a suspend is under way no
// xenstore request may be in flight and no transaction open, so the kernel counts its "users"
// (xs_state_users: each request from submission to reply, each transaction from
// XS_TRANSACTION_START to XS_TRANSACTION_END) and xs_suspend waits for that count to reach 0.
// Meanwhile a new request is held back, unless users remain (then it may be what ends a
// transaction, and holding it would deadlock the kernel against itself).
//
// Requests that /dev/xen/xenbus forwards for user space count while in flight, but since Linux
// d10e0cc113c9 (R17) their transactions do not: user space is frozen before xs_suspend runs, so
// a user transaction could never end. Instead every suspend, completed or cancelled, bumps the
// generation (xb_dev_generation_id); the device refuses to commit a user transaction begun in
// an earlier generation (EAGAIN) and acknowledges its abort (xenbus-dev-frontend.ts).
import { XsdSockmsgType, type XsMessage } from '../../hypervisor/public/io/xs_wire.ts';
import { XsError, type XsRequestGate } from '../libs/store/xs.ts';

export interface XsStateQuirks {
  /**
   * R17's buggy variant (before Linux d10e0cc113c9): user transactions count like the kernel's,
   * so a suspend that froze a process holding one waits forever.
   */
  readonly userTransactionsBlockSuspend?: boolean;
}

/** The request's outcome: the XS_ERROR name, EIO for a lost connection, undefined for success. */
const errorOf = (reply: XsMessage | Error): string | undefined =>
  reply instanceof XsError ? reply.code : reply instanceof Error ? 'EIO' : undefined;

export class XsState implements XsRequestGate {
  /** xs_state_users: requests in flight plus open (counted) transactions. */
  private usersCount = 0;
  /** xs_suspend_active: suspends waiting or under way. */
  private suspendActive = 0;
  /** xb_dev_generation_id: completed or cancelled suspends so far. */
  private generationId = 0;
  /** Requests held back by a suspend (xs_state_enter_wq), in arrival order. */
  private readonly enterWaiters: (() => void)[] = [];
  /** The suspend waiting for the users to leave (xs_state_exit_wq). */
  private exitWaiter: (() => void) | undefined;

  constructor(readonly quirks: XsStateQuirks = {}) {}

  get users(): number {
    return this.usersCount;
  }

  get suspending(): boolean {
    return this.suspendActive > 0;
  }

  get generation(): number {
    return this.generationId;
  }

  /** Whether a transaction of this origin counts as a user of the critical region. */
  private counts(forwarded: boolean): boolean {
    return !forwarded || (this.quirks.userTransactionsBlockSuspend ?? false);
  }

  /** xs_request_enter: waits while a suspend is active and nobody is inside. */
  enter(type: number, forwarded: boolean): Promise<void> | undefined {
    if (this.usersCount === 0 && this.suspendActive > 0) {
      return new Promise<void>((r) => this.enterWaiters.push(r)).then(() => this.enter(type, forwarded));
    }
    if (type === XsdSockmsgType.XS_TRANSACTION_START && this.counts(forwarded)) this.usersCount++;
    this.usersCount++;
    return undefined;
  }

  /** xs_request_exit: the reply (or the failure) of a request that entered. */
  exit(type: number, forwarded: boolean, reply: XsMessage | Error): void {
    const err = errorOf(reply);
    this.leave();
    // A transaction that failed to start never counted as open; one that ended leaves (an
    // ENOENT end is a transaction xenstored did not know, which Linux warns about and keeps).
    if ((type === XsdSockmsgType.XS_TRANSACTION_START && err !== undefined && this.counts(forwarded))
      || (type === XsdSockmsgType.XS_TRANSACTION_END && this.counts(forwarded) && err !== 'ENOENT')) {
      this.leave();
    }
    if (this.suspendActive > 0 && this.usersCount === 0) {
      const w = this.exitWaiter;
      this.exitWaiter = undefined;
      w?.();
    }
  }

  /**
   * Not clamped at 0: Linux's unsigned counter wraps when a transaction that never counted is
   * ended as the kernel's own (the device's release aborting a user transaction with
   * xenbus_transaction_end), and every later suspend then waits for ever.
   */
  private leave(): void {
    this.usersCount--;
  }

  /** xs_suspend (xs_suspend_enter): no new requests, then wait until every user has left. */
  suspend(): Promise<void> {
    this.suspendActive++;
    if (this.usersCount === 0) return Promise.resolve();
    if (this.exitWaiter) throw new Error('xs_suspend: a suspend is already waiting');
    return new Promise<void>((r) => (this.exitWaiter = r));
  }

  /** xs_resume / xs_suspend_cancel (xs_suspend_exit): a new generation; held requests go on. */
  resume(): void {
    if (this.suspendActive === 0) throw new Error('xs_resume without xs_suspend');
    this.generationId++;
    this.suspendActive--;
    if (this.suspendActive > 0) return;
    for (const w of this.enterWaiters.splice(0)) w();
  }
}
