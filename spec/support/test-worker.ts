/** A worker process for the tests: src/worker-main plus the test job kind. Env as for `npm run worker`. */
import { runWorkerProcess } from '../../src/worker-main';
import { createLogger } from '../../src/core/logger';
import { registerTestJobs } from './test-jobs';

runWorkerProcess({ logger: createLogger({ level: 'info' }), setup: registerTestJobs }).catch((err: unknown) => {
  process.stderr.write(`test worker failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
