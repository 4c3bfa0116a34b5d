/** Compiles sim/native/malloc-trim.c to `out`; returns null when built, else why not. */
export function buildMallocTrim(out: string): string | null;
/** Compiles sim/native/socket-buffer.c to `out`; returns null when built, else why not. */
export function buildSocketBuffer(out: string): string | null;
