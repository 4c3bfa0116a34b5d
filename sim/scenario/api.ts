// What a scenario of one's own imports: `import { defineScenario } from 'xensim/scenario'`
// (package.json "exports"). Everything a scenario file outside this repository needs to define
// scenarios with variants and knobs of its own, read the run, and declare its own fault kinds.
export { defineScenario, guestConfig, ScenarioFailure, ScenarioSkip } from './scenario.ts';
export type { RaceRef, ScenarioDef, VariantDef } from './scenario.ts';
export type { RunResult, ScenarioRun } from './run.ts';
export { declareFault, FaultRng, round } from './fault-registry.ts';
export type { FaultHost, FaultKind, FaultRanges, Faults, FaultSpace } from './fault-registry.ts';
export { XenbusState } from '../../hypervisor/public/io/xenbus.ts';
