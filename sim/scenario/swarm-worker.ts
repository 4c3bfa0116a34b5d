// A swarm worker: runs the seeds it is sent, one at a time, and answers with compact results
// (the trace stays here; a failing seed is re-run where its trace is wanted).
import { parentPort } from 'node:worker_threads';
import { findScenario } from '../../scenarios/index.ts';
import { runScenario } from './run.ts';

export interface SwarmJob {
  readonly scenario: string;
  readonly variant: string;
  readonly seed: number;
}

export interface SwarmAnswer extends SwarmJob {
  readonly result: string;
  readonly message?: string;
  readonly step?: string;
  readonly events: number;
  readonly hash: string;
  readonly wallMs: number;
}

parentPort!.on('message', (job: SwarmJob | null) => {
  if (job === null) {
    parentPort!.close();
    return;
  }
  const def = findScenario(job.scenario);
  if (!def) {
    parentPort!.postMessage({ ...job, result: 'ERROR', message: `no scenario ${job.scenario}`, events: 0, hash: '', wallMs: 0 });
    return;
  }
  void runScenario(def, { seed: job.seed, variant: job.variant }).then((r) => {
    const answer: SwarmAnswer = {
      ...job, result: r.result, message: r.message, step: r.step, events: r.events, hash: r.hash, wallMs: r.wallMs,
    };
    parentPort!.postMessage(answer);
  });
});
