// A swarm worker: runs the seeds it is sent, one at a time, and answers with compact results
// (the trace stays here; a failing seed is re-run where its trace is wanted).
import { parentPort } from 'node:worker_threads';
import type { FaultSelection } from './faults.ts';
import { findLoaded } from './load.ts';
import { runScenario } from './run.ts';
import type { SwarmAnswer } from './swarm-report.ts';

export interface SwarmJob {
  readonly scenario: string;
  /** The scenario's module (absolute), for one outside the library. */
  readonly file?: string;
  readonly variant: string;
  readonly seed: number;
  readonly faults: FaultSelection;
  readonly schedule?: string;
}

async function answer(job: SwarmJob): Promise<SwarmAnswer> {
  const base = {
    scenario: job.scenario, file: job.file, variant: job.variant, seed: job.seed, faultSelection: job.faults,
    ...(job.schedule && job.schedule !== 'random' ? { schedule: job.schedule } : {}),
  };
  let def;
  try {
    def = await findLoaded(job.scenario, job.file);
  } catch (e) {
    return { ...base, faults: {}, result: 'ERROR', message: e instanceof Error ? e.message : String(e), events: 0, hash: '', wallMs: 0 };
  }
  if (!def) return { ...base, faults: {}, result: 'ERROR', message: `no scenario ${job.scenario}`, events: 0, hash: '', wallMs: 0 };
  const r = await runScenario(def, { seed: job.seed, variant: job.variant, faults: job.faults, schedule: job.schedule });
  return {
    ...base, faults: r.faults, preemptions: r.preemptions.length, result: r.result, message: r.message, step: r.step, events: r.events, hash: r.hash,
    wallMs: r.wallMs,
  };
}

parentPort!.on('message', (job: SwarmJob | null) => {
  if (job === null) {
    parentPort!.close();
    return;
  }
  void answer(job).then((a) => parentPort!.postMessage(a));
});
