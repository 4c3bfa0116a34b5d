// The seed's standbys on threads of their own (daemon option seedStandbys 'threads'): each worker
// reads the replication log every few milliseconds (Atomics.wait on its tail), off the primary's
// thread. When the primary dies, standby 0 reads the rest and sends its state stream back; the
// host hands it to XenstoredDaemon.failover(). This file is both the host's side and the
// worker's entry (told apart by isMainThread).
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import type { XenstoredOptions } from './core.ts';
import type { Replication } from './daemon.ts';
import { Standby } from './replica.ts';
import { ReplicationLogReader, type ReplicationLogShared } from './replication-log.ts';

interface StandbyBoot {
  readonly xenstoredStandby: true;
  readonly shared: ReplicationLogShared;
  readonly index: number;
  /** The options the new daemon will read the stream with (profile, faults: the stale-ACL rule). */
  readonly opts: Pick<XenstoredOptions, 'profile' | 'faults'>;
}

/** What standby 0 sends when it has taken over: its state stream, and the batches it applied. */
export interface Promoted {
  readonly stream: Uint8Array;
  readonly applied: number;
}

export interface StandbyThreads {
  /** Resolves once every standby thread reads the log. */
  readonly ready: Promise<void>;
  /** Resolves once standby 0 has seen the primary die and written its state stream. */
  readonly promoted: Promise<Promoted>;
  /** Ends every standby thread. */
  stop(): Promise<void>;
}

const EXT = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const PRELOAD = fileURLToPath(new URL('../../../scripts/tsx-preload.mjs', import.meta.url));

/** Starts one worker per reader of `r`'s log. */
export function startStandbyThreads(r: Replication, opts: Pick<XenstoredOptions, 'profile' | 'faults'>): StandbyThreads {
  const argv = [...process.execArgv];
  if (EXT === '.ts' && !argv.some((a) => a.includes('tsx-preload'))) argv.push('--import', PRELOAD);
  const workers: Worker[] = [];
  const started: Promise<void>[] = [];
  let resolve!: (p: Promoted) => void;
  let reject!: (e: Error) => void;
  const promoted = new Promise<Promoted>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  for (let index = 0; index < r.writer.readers; index++) {
    const boot: StandbyBoot = { xenstoredStandby: true, shared: r.shared, index, opts };
    const w = new Worker(new URL(import.meta.url), { workerData: boot, execArgv: argv });
    started.push(new Promise((res) => w.once('message', () => res())));
    w.on('message', (m: Promoted | { ready: true }) => {
      if ('stream' in m) resolve(m);
    });
    w.on('error', (e) => reject(e));
    workers.push(w);
  }
  return {
    ready: Promise.all(started).then(() => undefined),
    promoted,
    async stop() {
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}

function runStandby(boot: StandbyBoot): void {
  const standby = new Standby(new ReplicationLogReader(boot.shared, boot.index));
  const reader = standby.reader;
  // Look every 5 ms (woken early by a filling ring or the primary's death), then let messages in.
  const step = (): void => {
    reader.wait(5);
    standby.pump();
    if (!reader.dead()) {
      setImmediate(step);
      return;
    }
    if (boot.index !== 0) return;
    standby.catchUp();
    // A copy of its own to hand over (the writer's bytes may sit in a shared pool).
    const stream = new Uint8Array(standby.stream(boot.opts));
    parentPort!.postMessage({ stream, applied: standby.applied } satisfies Promoted, [stream.buffer]);
  };
  // Standby 0 maps the ring in before it says it is ready; the primary writes meanwhile.
  if (boot.index === 0) reader.mapIn();
  parentPort!.postMessage({ ready: true });
  step();
}

if (!isMainThread && (workerData as Partial<StandbyBoot> | null)?.xenstoredStandby === true) runStandby(workerData as StandbyBoot);
