import type { App } from '../app';

/**
 * Gauges of deployment state, read from the database and the providers at each scrape: the job
 * queue (unfinished jobs waiting for a worker, and running under a live lease), HSM sessions per
 * profile, and wrapped DEKs per KMS key and KEK state (those not under the Active version are
 * still to rewrap). The database ones are the same on every node; aggregate them with max().
 */
export function registerStateMetrics(app: App): void {
  const m = app.metrics;
  m.gauge('kms_job_queue_depth', 'Unfinished async jobs: waiting for a worker, or active under a live lease', ['state'], async () => {
    const row: { total: number | string | null; active: number | string | null } | undefined = await app.db('async_job')
      .where({ status: 0 })
      .first(app.db.raw('COUNT(*) AS total'), app.db.raw('SUM(CASE WHEN lease_expires > ? THEN 1 ELSE 0 END) AS active', [Date.now()]));
    const active = Number(row?.active ?? 0);
    const by = { waiting: Number(row?.total ?? 0) - active, active };
    return Object.entries(by).map(([state, value]) => ({ labels: { state }, value }));
  });
  m.gauge('kms_hsm_sessions', 'Pooled HSM sessions of this process, per HSM profile: in use by an operation, or idle', ['profile', 'state'], async () =>
    app.providers.sessionStats().flatMap((s) => [
      { labels: { profile: s.profile, state: 'in_use' }, value: s.inUse },
      { labels: { profile: s.profile, state: 'idle' }, value: s.idle },
    ]));
  // From the per-version counts kept with every change of wrapped keys: a scrape never scans
  // kms_wrapped_key, however many DEKs the fleet has.
  const wrapped = async () => {
    const rows: Array<{ kms_key: string; kek_state: string; n: number | string | null }> = await app.db('kms_kek_versions as v')
      .join('kms_keys as k', 'k.id', 'v.kms_key_id')
      .whereNull('k.removed')
      .where('v.wrapped_keys', '>', 0)
      .groupBy('k.uuid', 'v.status')
      .select({ kms_key: 'k.uuid', kek_state: 'v.status' })
      .sum({ n: 'v.wrapped_keys' });
    return rows.map((r) => ({ kmsKey: r.kms_key, kekState: r.kek_state, n: Number(r.n ?? 0) }));
  };
  m.gauge('kms_wrapped_keys', 'Wrapped DEKs, per KMS key and state of the KEK version that wraps them', ['kms_key', 'kek_state'], async () =>
    (await wrapped()).map((r) => ({ labels: { kms_key: r.kmsKey, kek_state: r.kekState }, value: r.n })));
  m.gauge('kms_deks_to_rewrap', 'Wrapped DEKs not yet under their KMS key\'s Active KEK version, per KMS key', ['kms_key'], async () => {
    const by = new Map<string, number>();
    for (const r of await wrapped()) by.set(r.kmsKey, (by.get(r.kmsKey) ?? 0) + (r.kekState === 'Active' ? 0 : r.n));
    return [...by].map(([kmsKey, value]) => ({ labels: { kms_key: kmsKey }, value }));
  });
}
