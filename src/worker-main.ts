import { createApp, type App } from './app';
import type { Env } from './config/env';
import type { Logger } from './core/logger';
import { runNodeProcess } from './process/node-process';

/** Options of a worker process. */
export interface WorkerProcessOptions {
  logger?: Logger;
  /** Registers extra job handlers or schedules before the workers start (tests use it). */
  setup?: (app: App) => void | Promise<void>;
}

/**
 * Starts job workers, the sweeper and the scheduler without the HTTP API, in this process.
 * Point it at the same database, master key, REDIS_URL and KMS_QUEUE_PREFIX as the API nodes.
 */
export async function startWorker(env: Env, opts: WorkerProcessOptions = {}): Promise<App> {
  const { app } = await createApp({ ...env, role: 'worker' }, { logger: opts.logger });
  await opts.setup?.(app);
  await app.jobs.start();
  return app;
}

/**
 * A worker process (`node dist/worker-main.js`, `npm run worker`): workers only, health and metrics
 * on KMS_OPS_PORT when set. SIGINT/SIGTERM lets running jobs finish or hands them back, then exits 0.
 */
export function runWorkerProcess(opts: WorkerProcessOptions = {}): Promise<void> {
  return runNodeProcess({ ...opts, role: 'worker' });
}

if (require.main === module) {
  process.on('unhandledRejection', (err) => {
    process.stderr.write(JSON.stringify({ level: 'error', time: new Date().toISOString(), msg: 'unhandled rejection', error: err instanceof Error ? err.message : String(err) }) + '\n');
  });
  void runWorkerProcess();
}
