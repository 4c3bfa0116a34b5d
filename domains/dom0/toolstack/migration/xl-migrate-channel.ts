// The fixed messages xl's migration sender and receiver exchange around the stream
// (tools/xl/xl.h, xl_migrate.c). On the receiver's stdout (the sender's recv side): the banner, then
// after the stream "ready", then the report and one status byte. On the sender's side, after the
// save header and libxl stream: "permission to go" - the point of no return. If the status byte is
// not 0, the receiver sends "permission to go" back and the sender resumes its copy.
// The banner goes without its NUL (sizeof - 1); the other three include it (sizeof).

const te = new TextEncoder();

export enum XlMigrateMessage {
  /** Receiver → sender, first. */
  migrate_receiver_banner = 'migrate_receiver_banner',
  /** Receiver → sender, after the whole stream: the domain is built, paused. */
  migrate_receiver_ready = 'migrate_receiver_ready',
  /** Sender → receiver (and back on failure): unpause it. */
  migrate_permission_to_go = 'migrate_permission_to_go',
  /** Receiver → sender, followed by one status byte (0: the domain runs). */
  migrate_report = 'migrate_report',
}

const TEXT: Readonly<Record<XlMigrateMessage, string>> = {
  [XlMigrateMessage.migrate_receiver_banner]: 'xl migration receiver ready, send binary domain data.\n',
  [XlMigrateMessage.migrate_receiver_ready]: 'domain received, ready to unpause',
  [XlMigrateMessage.migrate_permission_to_go]: 'domain is yours, you are cleared to unpause',
  [XlMigrateMessage.migrate_report]: 'my copy unpause results are as follows',
};

/** What xl calls each message in its "contained unexpected data instead of ..." complaint. */
const WHAT: Readonly<Record<XlMigrateMessage, string>> = {
  [XlMigrateMessage.migrate_receiver_banner]: 'banner',
  [XlMigrateMessage.migrate_receiver_ready]: 'ready message',
  [XlMigrateMessage.migrate_permission_to_go]: 'GO message',
  [XlMigrateMessage.migrate_report]: 'success/failure report message',
};

/** The bytes on the wire for a message (with the NUL for all but the banner). */
export function xlMigrateMessageBytes(m: XlMigrateMessage): Uint8Array {
  const text = TEXT[m];
  return te.encode(m === XlMigrateMessage.migrate_receiver_banner ? text : `${text}\0`);
}

export class XlMigrateChannelError extends Error {}

/** migrate_read_fixedmessage(): `bytes` must be exactly the message. */
export function checkXlMigrateMessage(m: XlMigrateMessage, bytes: Uint8Array, stream = 'migration stream'): void {
  const want = xlMigrateMessageBytes(m);
  if (bytes.length !== want.length || !want.every((b, i) => bytes[i] === b)) {
    throw new XlMigrateChannelError(`${stream} contained unexpected data instead of ${WHAT[m]}`);
  }
}

/** The report and its status byte, as the receiver sends them. */
export function xlMigrateReportBytes(status: number): Uint8Array {
  if (!Number.isInteger(status) || status < 0 || status > 255) throw new RangeError(`status ${status}`);
  const r = xlMigrateMessageBytes(XlMigrateMessage.migrate_report);
  const out = new Uint8Array(r.length + 1);
  out.set(r);
  out[r.length] = status;
  return out;
}
