import type { KmsDeps } from './deps';
import type { Rewrapper } from './rewrap';
import { KEK_DESTROY_DELAY_SETTING } from './kek-states';

const DAY_MS = 86_400_000;

/** The schedule name of the background rewrap (one runner deployment-wide). */
export const REWRAP_SCHEDULE = 'kms.rewrap';

/** The setting that spaces the rewrap's ticks (the scheduler reads it). */
export const REWRAP_INTERVAL_SETTING = 'kms.rewrap.interval.ms' as const;

/** One scheduled run of the rewrap: who runs it, how long its row claims last, and its abort signal. */
export interface RewrapTick {
  /** Identifies this worker's claims (the job service's lease owner). */
  workerId: string;
  /** Row claims last as long as the schedule lock, so rows of a worker that died are free again by the time another worker holds the lock. */
  claimMs: number;
  /** Aborted when this worker lost the schedule's lock: nothing more is committed. */
  signal?: AbortSignal;
}

/**
 * One tick of the background rewrap (registered by app.ts as the `kms.rewrap` schedule, every
 * `kms.rewrap.interval.ms`): one batch of `kms.rewrap.batch.size` wrapped keys moves from Previous
 * KEK versions to the Active one, then drained versions are archived, and Archived versions past
 * `kms.kek.destroy.delay.days` destroyed. Both settings are read at each tick.
 */
export async function runRewrapTick(rewrapper: Rewrapper, deps: Pick<KmsDeps, 'settings' | 'logger'>, tick: RewrapTick): Promise<void> {
  const batchSize = await deps.settings.getNumber('kms.rewrap.batch.size');
  const destroyDelayMs = (await deps.settings.getNumber(KEK_DESTROY_DELAY_SETTING)) * DAY_MS;
  const report = await rewrapper.tick({ batchSize, workerId: tick.workerId, claimMs: tick.claimMs, signal: tick.signal, destroyDelayMs });
  if (report.claimed || report.archived.length) {
    deps.logger.info('rewrap tick', {
      claimed: report.claimed, rewrapped: report.rewrapped, skipped: report.skipped, paused: report.paused, failed: report.failed.length,
      archived: report.archived.map((a) => `${a.keyUuid}:v${a.version}`),
    });
  }
  for (const f of report.failed.slice(0, 10)) deps.logger.warn('rewrap of a wrapped key failed; retried next tick', f);
}
