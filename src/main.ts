import type { Server } from 'node:http';
import { createApp } from './app';
import { readEnv } from './config/env';
import { createServer } from './api/server';
import { registry } from './commands/registry';
import { createLogger } from './logger';

/** Starts the API server (unless KMS_ROLE=worker) and the job workers (unless KMS_ROLE=api). */
async function main(): Promise<void> {
  const logger = createLogger();
  const env = readEnv();
  const { app, generatedKeys, masterKeyGenerated } = await createApp(env, { logger });
  if (masterKeyGenerated) {
    logger.warn('generated a new master key; every node of a cluster needs the same one (KMS_MASTER_KEY)', { file: env.masterKeyFile });
  }
  if (generatedKeys) {
    // Printed once, on the terminal only (not through the logger): they are not stored in plaintext anywhere.
    process.stdout.write(
      `\nGenerated API keys for user admin (shown once; getUserKeys shows them again to an admin):\n` +
        `  apikey    = ${generatedKeys.apiKey}\n  secretkey = ${generatedKeys.secretKey}\n\n`,
    );
  }
  await app.jobs.start();
  logger.info('async jobs', { role: env.role, queue: app.jobs.queueKind, workers: env.role !== 'api' });
  let http: Server | undefined;
  if (env.role !== 'worker') {
    http = createServer(app, registry).listen(env.port, env.host, () => {
      logger.info('CloudStack KMS API listening', { url: `http://${env.host}:${env.port}/client/api`, database: env.databaseUrl ? 'mysql' : 'sqlite' });
    });
  }
  const stop = async () => {
    logger.info('shutting down');
    http?.close();
    await app.close();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

process.on('unhandledRejection', (err) => {
  process.stderr.write(JSON.stringify({ level: 'error', msg: 'unhandled rejection', error: err instanceof Error ? err.message : String(err) }) + '\n');
});

main().catch((err) => {
  process.stderr.write(`failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
