// The scenario library: every scenario `xensim list` shows, in the order it shows them.
import type { ScenarioDef } from '../sim/scenario/scenario.ts';
import bootAndShutdown from './boot-and-shutdown.ts';
import { LIBRARY } from './library.ts';
import { RACES } from './races.ts';

export const SCENARIOS: readonly ScenarioDef[] = [
  bootAndShutdown,
  ...LIBRARY,
  ...RACES,
];

export function findScenario(name: string): ScenarioDef | undefined {
  return SCENARIOS.find((s) => s.name === name);
}
