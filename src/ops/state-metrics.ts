import type { Repositories } from '../db/repositories';
import { awaitsRewrap } from '../kms/kek-states';
import type { ProviderRegistry } from '../providers/registry';
import type { Metrics } from './metrics';

/** What the state gauges read: counts through the repositories, pool figures from the providers. */
export interface StateMetricsDeps {
  readonly metrics: Pick<Metrics, 'gauge'>;
  readonly repos: Pick<Repositories, 'opsState' | 'kekVersions'>;
  readonly providers: Pick<ProviderRegistry, 'sessionStats'>;
}

/**
 * Gauges of deployment state, read from the database and the providers at each scrape: the job
 * queue (unfinished jobs waiting for a worker, and running under a live lease), HSM sessions per
 * profile, and wrapped DEKs per KMS key and KEK state (those not under the Active version are
 * still to rewrap). The database ones are the same on every node; aggregate them with max().
 */
export function registerStateMetrics({ metrics: m, repos, providers }: StateMetricsDeps): void {
  m.gauge('kms_job_queue_depth', 'Unfinished async jobs: waiting for a worker, or active under a live lease', ['state'], async () => {
    const by = await repos.opsState.jobQueueDepth(Date.now());
    return Object.entries(by).map(([state, value]) => ({ labels: { state }, value }));
  });
  m.gauge('kms_hsm_sessions', 'Pooled HSM sessions of this process, per HSM profile: in use by an operation, or idle', ['profile', 'state'], async () =>
    providers.sessionStats().flatMap((s) => [
      { labels: { profile: s.profile, state: 'in_use' }, value: s.inUse },
      { labels: { profile: s.profile, state: 'idle' }, value: s.idle },
    ]));
  // From the per-version counts kept with every change of wrapped keys: a scrape never scans
  // kms_wrapped_key, however many DEKs the fleet has.
  m.gauge('kms_wrapped_keys', 'Wrapped DEKs, per KMS key and state of the KEK version that wraps them', ['kms_key', 'kek_state'], async () =>
    (await repos.kekVersions.wrappedKeyCounts()).map((r) => ({ labels: { kms_key: r.kmsKeyUuid, kek_state: r.kekState }, value: r.count })));
  m.gauge('kms_deks_to_rewrap', 'Wrapped DEKs not yet under their KMS key\'s Active KEK version, per KMS key', ['kms_key'], async () => {
    const by = new Map<string, number>();
    for (const r of await repos.kekVersions.wrappedKeyCounts()) by.set(r.kmsKeyUuid, (by.get(r.kmsKeyUuid) ?? 0) + (awaitsRewrap(r.kekState) ? r.count : 0));
    return [...by].map(([kmsKey, value]) => ({ labels: { kms_key: kmsKey }, value }));
  });
}
