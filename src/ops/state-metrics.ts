import type { Logger } from '../core/logger';
import type { Repositories } from '../db/repositories';
import { awaitsRewrap, type KekStatus } from '../kms/kek-states';
import type { ProviderRegistry } from '../providers/registry';
import type { Metrics } from './metrics';

/** What the state gauges read: counts through the repositories, pool figures from the providers. */
export interface StateMetricsDeps {
  readonly metrics: Pick<Metrics, 'processGauge' | 'setWrappedKeys' | 'jobQueueDepth' | 'stateRefreshed'>;
  readonly repos: Pick<Repositories, 'opsState' | 'kekVersions'>;
  readonly providers: Pick<ProviderRegistry, 'sessionStats'>;
  readonly logger: Logger;
  /** How often the database gauges are read (KMS_METRICS_REFRESH_SEC), in ms. */
  readonly refreshMs: number;
}

/**
 * Gauges of deployment state. The database ones (the job queue: unfinished jobs waiting for a
 * worker, and running under a live lease; wrapped DEKs per KEK state, and those still to rewrap)
 * are read in the background every `refreshMs`, one read at a time, so scrapes never reach the
 * database, however many come. They are the same on every node; aggregate them with max(). HSM
 * sessions per profile are this process's pool figures, read from memory when a view is rendered.
 */
export class StateMetrics {
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #failing = false;

  constructor(private readonly deps: StateMetricsDeps) {
    const { metrics: m, providers } = deps;
    m.processGauge('kms_hsm_sessions', 'Pooled HSM sessions of this process: in use by an operation, or idle',
      { anonymous: ['state'], detailed: ['profile', 'state'] },
      {
        anonymous: () => {
          const stats = providers.sessionStats();
          return [
            { labels: { state: 'in_use' }, value: stats.reduce((n, s) => n + s.inUse, 0) },
            { labels: { state: 'idle' }, value: stats.reduce((n, s) => n + s.idle, 0) },
          ];
        },
        detailed: () => providers.sessionStats().flatMap((s) => [
          { labels: { profile: s.profile, state: 'in_use' }, value: s.inUse },
          { labels: { profile: s.profile, state: 'idle' }, value: s.idle },
        ]),
      });
  }

  /** Reads the database gauges now, then every `refreshMs` until `stop()`. */
  start(): void {
    if (this.#timer) return;
    void this.refresh();
    this.#timer = setInterval(() => void this.refresh(), this.deps.refreshMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  /** One read of the database gauges (a read still running is awaited, not doubled). A failed read keeps the last values. */
  refresh(): Promise<void> {
    this.#running ??= (async () => {
      const { repos, metrics: m } = this.deps;
      try {
        const [depth, counts] = await Promise.all([repos.opsState.jobQueueDepth(Date.now()), repos.kekVersions.wrappedKeyCounts()]);
        m.jobQueueDepth.set({ state: 'waiting' }, depth.waiting);
        m.jobQueueDepth.set({ state: 'active' }, depth.active);
        // From the per-version counts kept with every change of wrapped keys: never a scan of kms_wrapped_key.
        m.setWrappedKeys(counts, (s) => awaitsRewrap(s as KekStatus));
        m.stateRefreshed.set(Date.now() / 1000);
        if (this.#failing) this.deps.logger.info('state metrics read again');
        this.#failing = false;
      } catch (e) {
        if (!this.#failing) this.deps.logger.warn('could not read the state metrics; keeping the last values', { error: e instanceof Error ? e.message : String(e) });
        this.#failing = true;
      }
    })().finally(() => { this.#running = undefined; });
    return this.#running;
  }
}
