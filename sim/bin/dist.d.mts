/** The folders tsconfig.build.json compiles. */
export const SOURCES: readonly string[];
/** True when every compiled source under `root` has a dist/ file at least as new as itself. */
export function distIsFresh(root: string): boolean;
