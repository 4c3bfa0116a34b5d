// io/xenbus.h: the states both ends of a split device publish in <dir>/state (as decimal text).

export enum XenbusState {
  XenbusStateUnknown = 0,
  XenbusStateInitialising = 1,
  /** The backend is ready for the frontend's ring details (hotplug may still be pending). */
  XenbusStateInitWait = 2,
  /** The frontend published its rings and event channel. */
  XenbusStateInitialised = 3,
  XenbusStateConnected = 4,
  XenbusStateClosing = 5,
  XenbusStateClosed = 6,
  XenbusStateReconfiguring = 7,
  XenbusStateReconfigured = 8,
}

/** A `state` node's text as a state: missing or unparsable reads as Unknown, as xenbus_read_driver_state. */
export function parseXenbusState(text: string | undefined): XenbusState {
  if (text === undefined || !/^\d+$/.test(text)) return XenbusState.XenbusStateUnknown;
  const n = Number(text);
  return n in XenbusState ? (n as XenbusState) : XenbusState.XenbusStateUnknown;
}

export function xenbusStateName(s: XenbusState): string {
  return XenbusState[s] ?? `XenbusState(${s})`;
}
