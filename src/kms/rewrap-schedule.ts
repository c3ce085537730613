import type { App } from '../app';
import { resolveWorkerOptions } from '../config/worker-options';
import { Rewrapper } from './rewrap';

/** The schedule name of the background rewrap (one runner deployment-wide). */
export const REWRAP_SCHEDULE = 'kms.rewrap';

/**
 * Registers the background rewrap: every `kms.rewrap.interval.ms`, one batch of
 * `kms.rewrap.batch.size` wrapped keys moves from Previous KEK versions to the Active one, then
 * drained versions are archived and destroyed. Both settings are read at each tick.
 */
export function registerRewrapSchedule(app: App): void {
  // Row claims last as long as the schedule lock, so rows of a worker that died are free again
  // by the time another worker holds the lock.
  const claimMs = resolveWorkerOptions(app.env.jobOptions).leaseMs;
  const rewrapper = new Rewrapper(app);
  app.jobs.schedule(REWRAP_SCHEDULE, {
    intervalSetting: 'kms.rewrap.interval.ms',
    run: async (tick) => {
      const batchSize = await app.settings.getNumber('kms.rewrap.batch.size');
      const report = await rewrapper.tick({ batchSize, workerId: app.jobs.owner, claimMs, signal: tick.signal });
      if (report.claimed || report.archived.length) {
        app.logger.info('rewrap tick', {
          claimed: report.claimed, rewrapped: report.rewrapped, skipped: report.skipped, paused: report.paused, failed: report.failed.length,
          archived: report.archived.map((a) => `${a.keyUuid}:v${a.version}`),
        });
      }
      for (const f of report.failed.slice(0, 10)) app.logger.warn('rewrap of a wrapped key failed; retried next tick', f);
    },
  });
}
