import { runNodeProcess } from './process/node-process';

/**
 * The server: the API (unless KMS_ROLE=worker) and the job workers (unless KMS_ROLE=api).
 * Production runs `node dist/main.js`; `npm start` runs this file through tsx in the same process.
 */
process.on('unhandledRejection', (err) => {
  process.stderr.write(JSON.stringify({ level: 'error', time: new Date().toISOString(), msg: 'unhandled rejection', error: err instanceof Error ? err.message : String(err) }) + '\n');
});

void runNodeProcess({
  onCreated: ({ generatedKeys, masterKeyGenerated, app }, logger) => {
    if (masterKeyGenerated) {
      logger.warn('generated a new master key; every node of a cluster needs the same one (KMS_MASTER_KEY)', { file: app.env.masterKeyFile });
    }
    if (generatedKeys) {
      // Printed once, on the terminal only (not through the logger): they are not stored in plaintext anywhere.
      process.stdout.write(
        `\nGenerated API keys for user admin (shown once; getUserKeys shows them again to an admin):\n` +
          `  apikey    = ${generatedKeys.apiKey}\n  secretkey = ${generatedKeys.secretKey}\n\n`,
      );
    }
  },
});
