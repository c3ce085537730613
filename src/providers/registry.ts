import type { MasterKey } from '../config/master-key';
import type { DatabaseKekRepository } from '../db/repositories/database-keks';
import { KmsError } from '../core/errors';
import type { Logger } from '../core/logger';
import { createDatabaseProvider, type DatabaseProviderOptions } from './database/database-provider';
import { createPkcs11Provider, type Pkcs11ProviderOptions } from './pkcs11/pkcs11-provider';
import { createKmipProvider, type KmipProviderOptions } from './kmip/kmip-provider';
import { ProfileCircuits, type CircuitOptions, type ProfileHealth } from './circuit';
import { callBatchWithPolicy, callWithPolicy, type BackendObserver, type PolicyHooks } from './policy';
import type { BackendPolicy, HsmProfileConfig, ItemResult, KekProvider, ProviderKind, SessionStats } from './provider';

/** The providers of one process, each call already under the retry and timeout policy. */
export interface ProviderRegistry {
  /** The provider of `kind`, created on first use; every backend call goes through callWithPolicy. */
  get(kind: ProviderKind): KekProvider;
  /** HSM sessions in use and idle, per profile, of every provider created so far. */
  sessionStats(): SessionStats[];
  /**
   * The health of every HSM profile this process has used: 'Degraded' while its circuit is open
   * (calls fail fast), else 'Healthy'. Profiles not yet used are absent. For readiness checks.
   */
  profileHealth(): ProfileHealth[];
  /** True while calls to the profile (by uuid) fail fast. */
  isDegraded(profileId: string): boolean;
  /** Closes every provider created so far (drains HSM sessions, zeroes caches). */
  close(): Promise<void>;
}

/** What the registry needs; `policy` is read at every call, so a settings change applies at once. */
export interface ProviderRegistryDeps {
  /** The database provider's KEK table. */
  databaseKeks: DatabaseKekRepository;
  masterKey: MasterKey;
  policy: () => BackendPolicy | Promise<BackendPolicy>;
  logger: Logger;
  database?: Omit<DatabaseProviderOptions, 'keks' | 'masterKey' | 'logger'>;
  pkcs11?: Omit<Pkcs11ProviderOptions, 'logger'>;
  kmip?: Omit<KmipProviderOptions, 'logger'>;
  /** Test seam, passed to callWithPolicy. */
  hooks?: PolicyHooks;
  /** Hears every operation's outcome and every retry (metrics). */
  observer?: BackendObserver;
  /** Circuit thresholds and the listener told of every health change (e.g. to record an event). */
  circuit?: Omit<CircuitOptions, 'probe'>;
}

/**
 * Wraps every backend call of `provider` in callWithPolicy(policy(), '<kind>.<method>', …) (batches
 * in callBatchWithPolicy) and logs each retry (kind and message only: messages never carry secrets).
 * validateProfile (pure), invalidateProfile and close are passed through unwrapped.
 */
export function withPolicy(
  provider: KekProvider, policy: () => BackendPolicy | Promise<BackendPolicy>, logger: Logger, hooks: PolicyHooks = {},
  circuits?: ProfileCircuits, observer?: BackendObserver,
): KekProvider {
  const hooksFor = (labels: { profile: string; operation: string }): PolicyHooks => ({
    ...hooks,
    onRetry: (info) => {
      logger.warn('KMS backend call failed; retrying', {
        op: info.op, attempt: info.attempt, delayMs: info.delayMs, kind: info.error.kind, error: info.error.message,
      });
      observer?.retry(labels);
      hooks.onRetry?.(info);
    },
  });
  const run = async <T>(method: string, profile: HsmProfileConfig, fn: () => Promise<T>): Promise<T> => {
    const labels = { profile: profile.name, operation: method };
    const h = hooksFor(labels);
    const started = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    try {
      const value = await callWithPolicy(await policy(), `${provider.kind}.${method}`, fn, h);
      observer?.operation({ ...labels, outcome: 'ok', seconds: seconds() });
      return value;
    } catch (e) {
      observer?.operation({ ...labels, outcome: e instanceof KmsError ? e.kind : 'internal', seconds: seconds() });
      throw e;
    }
  };
  /**
   * A batch under callBatchWithPolicy (timeout scaled by its size, retryable items retried). The
   * observer hears one outcome per item, each with the batch's time shared out evenly, so counters
   * count DEKs and the duration histogram shows the cost of one.
   */
  const runBatch = async <R, T>(method: string, profile: HsmProfileConfig, items: readonly R[], fn: (items: readonly R[]) => Promise<ItemResult<T>[]>): Promise<ItemResult<T>[]> => {
    const labels = { profile: profile.name, operation: method };
    const started = process.hrtime.bigint();
    const each = (): number => Number(process.hrtime.bigint() - started) / 1e9 / Math.max(1, items.length);
    try {
      const results = await callBatchWithPolicy(await policy(), `${provider.kind}.${method}`, items, fn, hooksFor(labels));
      const seconds = each();
      for (const r of results) observer?.operation({ ...labels, outcome: r.ok ? 'ok' : r.error.kind, seconds });
      return results;
    } catch (e) {
      const seconds = each();
      const outcome = e instanceof KmsError ? e.kind : 'internal';
      for (let i = 0; i < items.length; i++) observer?.operation({ ...labels, outcome, seconds });
      throw e;
    }
  };
  // The circuit sees one outcome per operation, after the policy's retries and timeout.
  const guarded = <T>(profile: HsmProfileConfig, method: string, fn: () => Promise<T>): Promise<T> =>
    circuits ? circuits.guard(profile, () => run(method, profile, fn)) : run(method, profile, fn);
  // One outcome per batch too: a batch whose every item failed as 'unavailable' counts as one failure.
  const guardedBatch = <R, T>(profile: HsmProfileConfig | undefined, method: string, items: readonly R[], fn: (items: readonly R[]) => Promise<ItemResult<T>[]>): Promise<ItemResult<T>[]> => {
    if (!profile) return Promise.resolve([]);
    return circuits ? circuits.guard(profile, () => runBatch(method, profile, items, fn), allUnavailable) : runBatch(method, profile, items, fn);
  };
  return {
    kind: provider.kind,
    capabilities: provider.capabilities,
    validateProfile: (details) => provider.validateProfile(details),
    probe: (profile) => run('probe', profile, () => provider.probe(profile)),
    createKek: (kek, bits) => guarded(kek.profile, 'createKek', () => provider.createKek(kek, bits)),
    destroyKek: (kek) => guarded(kek.profile, 'destroyKek', () => provider.destroyKek(kek)),
    hasKek: (kek) => guarded(kek.profile, 'hasKek', () => provider.hasKek(kek)),
    wrap: (req) => guarded(req.kek.profile, 'wrap', () => provider.wrap(req)),
    unwrap: (req) => guarded(req.kek.profile, 'unwrap', () => provider.unwrap(req)),
    generateAndWrap: (req) => guarded(req.kek.profile, 'generateAndWrap', () => provider.generateAndWrap(req)),
    rewrap: (req) => guarded(req.from.kek.profile, 'rewrap', () => provider.rewrap(req)),
    wrapMany: (reqs) => guardedBatch(reqs[0]?.kek.profile, 'wrapMany', reqs, (part) => provider.wrapMany(part)),
    unwrapMany: (reqs) => guardedBatch(reqs[0]?.kek.profile, 'unwrapMany', reqs, (part) => provider.unwrapMany(part)),
    generateAndWrapMany: (reqs) => guardedBatch(reqs[0]?.kek.profile, 'generateAndWrapMany', reqs, (part) => provider.generateAndWrapMany(part)),
    rewrapMany: (reqs) => guardedBatch(reqs[0]?.from.kek.profile, 'rewrapMany', reqs, (part) => provider.rewrapMany(part)),
    invalidateProfile: (profileId) => {
      circuits?.forget(profileId);
      return provider.invalidateProfile(profileId);
    },
    sessionStats: provider.sessionStats && (() => provider.sessionStats!()),
    close: () => provider.close(),
  };
}

/** The error of a batch whose every item failed as 'unavailable' (the backend is down), else undefined. */
function allUnavailable(results: ItemResult<unknown>[]): KmsError | undefined {
  if (results.length === 0 || !results.every((r) => !r.ok && r.error.kind === 'unavailable')) return undefined;
  return (results[0] as { error: KmsError }).error;
}

/** Builds the registry. Nothing connects until a provider's first call. */
export function createProviderRegistry(deps: ProviderRegistryDeps): ProviderRegistry {
  const created = new Map<ProviderKind, { raw: KekProvider; wrapped: KekProvider }>();
  const rawOf = (kind: ProviderKind): KekProvider => {
    let entry = created.get(kind);
    if (!entry) {
      const raw = build(kind);
      entry = { raw, wrapped: withPolicy(raw, deps.policy, deps.logger, deps.hooks, circuits, deps.observer) };
      created.set(kind, entry);
    }
    return entry.raw;
  };
  const circuits = new ProfileCircuits({
    ...deps.circuit,
    // The probe runs under the policy's timeout, so a hung HSM keeps the profile Degraded.
    probe: async (profile) => callWithPolicy({ ...(await deps.policy()), retries: 0 }, `${profile.protocol}.probe`, () => rawOf(profile.protocol).probe(profile)),
    onChange: (health) => {
      const log = health.health === 'Degraded' ? deps.logger.warn : deps.logger.info;
      log.call(deps.logger, `HSM profile ${health.name} is ${health.health}`, { profile: health.profileId, reason: health.reason });
      deps.circuit?.onChange?.(health);
    },
  });
  const build = (kind: ProviderKind): KekProvider => {
    switch (kind) {
      case 'database':
        return createDatabaseProvider({ ...deps.database, keks: deps.databaseKeks, masterKey: deps.masterKey, logger: deps.logger });
      case 'pkcs11':
        return createPkcs11Provider({ ...deps.pkcs11, logger: deps.logger });
      case 'kmip':
        return createKmipProvider({ ...deps.kmip, logger: deps.logger });
      default:
        throw new KmsError('param', `Unknown KMS provider: ${String(kind)}`);
    }
  };
  return {
    get(kind) {
      rawOf(kind);
      return created.get(kind)!.wrapped;
    },
    sessionStats() {
      return [...created.values()].flatMap((e) => e.raw.sessionStats?.() ?? []);
    },
    profileHealth: () => circuits.list(),
    isDegraded: (profileId) => circuits.isDegraded(profileId),
    async close() {
      circuits.close();
      const all = [...created.values()];
      created.clear();
      const results = await Promise.allSettled(all.map((e) => e.raw.close()));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    },
  };
}
