import { createApp, type App } from './app';
import { readEnv, type Env } from './config/env';
import { createLogger, type Logger } from './logger';

/** Options of a worker process. */
export interface WorkerProcessOptions {
  logger?: Logger;
  /** Registers extra job handlers or schedules before the workers start (tests use it). */
  setup?: (app: App) => void | Promise<void>;
}

/**
 * Runs job workers, the sweeper and the scheduler without the HTTP API (`npm run worker`).
 * Point it at the same database, master key, REDIS_URL and KMS_QUEUE_PREFIX as the API nodes.
 */
export async function startWorker(env: Env, opts: WorkerProcessOptions = {}): Promise<App> {
  const { app } = await createApp({ ...env, role: 'worker' }, { logger: opts.logger });
  await opts.setup?.(app);
  await app.jobs.start();
  return app;
}

/** Runs a worker until SIGINT/SIGTERM, then lets its running jobs finish or hand them back. */
export async function runWorkerProcess(opts: WorkerProcessOptions = {}): Promise<void> {
  const logger = opts.logger ?? createLogger();
  const app = await startWorker(readEnv(), { ...opts, logger });
  logger.info('job worker started', { queue: app.jobs.queueKind, owner: app.jobs.owner });
  const stop = async () => {
    logger.info('job worker shutting down');
    await app.close();
    process.exit(0);
  };
  process.once('SIGINT', () => { void stop(); });
  process.once('SIGTERM', () => { void stop(); });
}

if (require.main === module) {
  process.on('unhandledRejection', (err) => {
    process.stderr.write(JSON.stringify({ level: 'error', msg: 'unhandled rejection', error: err instanceof Error ? err.message : String(err) }) + '\n');
  });
  runWorkerProcess().catch((err: unknown) => {
    process.stderr.write(`worker failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
