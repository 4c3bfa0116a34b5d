/** Compiles sim/native/malloc-trim.c to `out`; returns null when built, else why not. */
export function buildMallocTrim(out: string): string | null;
