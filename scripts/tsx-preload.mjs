// Lets TypeScript run under Node 20 on the main thread and in every worker
// (tsx registers its hooks on the main thread only; workers inherit execArgv).
import { isMainThread } from 'node:worker_threads';

if (isMainThread) {
  await import('tsx');
} else {
  const { register } = await import('tsx/esm/api');
  register();
}
