/** The folders tsconfig.build.json compiles. */
export const SOURCES: readonly string[];
/** True when every compiled source under `root` (and each of `extra`, paths under root) has a dist/ file at least as new as itself. */
export function distIsFresh(root: string, extra?: readonly string[]): boolean;
