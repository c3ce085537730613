import type { KmsDeps } from './deps';
import type { Caller } from '../identity/caller';
import type { Repositories } from '../db/repositories';
import type { MigratingVolume } from '../db/repositories/volumes';
import type { KmsKey } from '../db/repositories/kms-keys';
import { requireEnabledProfile, requireKey, requireUsableKey } from './guards';
import { KmsError, isKmsError, paramError } from '../core/errors';
import { PassphraseGoneError, Passphrases } from './passphrases';
import { using } from '../core/secret-bytes';
import { VersionArchivedError, WrappedKeys, type KekVersionContext } from './wrapped-keys';
import type { SecretBytes } from '../core/secret-bytes';

/** Which volumes to migrate: explicit ids, or every legacy volume of the key's account in the zone / account. */
export interface MigrationScope {
  volumeUuids?: string[];
  zoneUuid?: string;
  account?: string;
  domainUuid?: string;
}

/** The validated request, as stored in the job record (no secrets). */
export interface MigrationPlan {
  keyId: number;
  keyUuid: string;
  /** Internal volume ids when the caller named them. */
  volumeIds?: number[];
  accountId: number;
  zoneId: number;
}

export interface MigrationReport {
  migrated: number;
  skipped: number;
  failed: number;
  failedVolumeIds: string[];
}

type LegacyVolume = MigratingVolume;

const OFFENDERS_SHOWN = 50;

type Outcome = 'migrated' | 'skipped' | 'failed';

/** Who runs a migration: the job its volumes are marked with (null outside a job) and the acting user for events. */
interface RunContext { jobUuid: string | null; userId: number }

/** The per-volume event, written in the transaction that migrates the volume (so exactly once). */
const migratedEvent = (plan: MigrationPlan, v: LegacyVolume, run: RunContext) => ({
  type: 'VOLUME.MIGRATE.TO.KMS' as const, description: `Successfully migrated volume encryption key to KMS key ${plan.keyUuid}`,
  actor: { userId: run.userId, accountId: v.accountId, domainId: v.domainId }, resourceType: 'Volume', resourceId: v.uuid,
});

/** Rounds of retries of a batch's transiently failed volumes, and the first wait between them. */
const TRANSIENT_ROUNDS = 5;
const TRANSIENT_WAIT_MS = 1000;

/** Volumes per INSERT/UPDATE statement when committing a batch. */
const COMMIT_CHUNK = 250;

/**
 * migrateVolumesToKMS (reference/cloudstack-kms-4.23.md §1.10, §4): each legacy volume's passphrase
 * becomes its DEK, wrapped by the key's Active KEK version, so the disk never changes. Each volume's
 * change (wrapped key stored, volume pointed at it, passphrase removed) commits in one transaction,
 * together with the rest of its batch. A volume already migrated is skipped, so a rerun after a
 * crash migrates every volume exactly once.
 */
export class Migration {
  private readonly wrappedKeys: WrappedKeys;
  private readonly passphrases: Passphrases;

  constructor(private readonly deps: KmsDeps) {
    this.wrappedKeys = new WrappedKeys(deps);
    this.passphrases = new Passphrases(deps.masterKey);
  }

  /**
   * The KMS key checks of a migration (the shared guards of src/kms/guards.ts): the key exists and,
   * unless `existsOnly`, it and its HSM profile are enabled.
   */
  private async checkedKey(keyUuid: string, existsOnly = false): Promise<KmsKey> {
    const { kmsKeys, hsmProfiles } = this.deps.repos;
    const key = requireKey(await kmsKeys.byUuid(keyUuid), keyUuid);
    if (existsOnly) return key;
    requireUsableKey(key);
    requireEnabledProfile(await hsmProfiles.byId(key.hsmProfileId), key.hsmProfileId);
    return key;
  }

  /** 431 "KMS key not found" unless the key exists (the request's check; the job checks the rest). */
  async assertKeyExists(keyUuid: string): Promise<void> {
    await this.checkedKey(keyUuid, true);
  }

  /** The name and owner of the plan's key, for the summary event. */
  keyOwner(plan: MigrationPlan): Promise<{ name: string; accountId: number; domainId: number } | undefined> {
    return this.deps.repos.volumes.kmsKeyOwner(plan.keyId);
  }

  /** The parameters' shape: some scope, and an account with any domain. */
  static checkScopeShape(scope: MigrationScope): void {
    if (scope.domainUuid && !scope.account) throw paramError('accountName must be specified when domainId is provided');
    if (!scope.volumeUuids && !scope.zoneUuid && !scope.account) {
      throw paramError('Specify the volumes to migrate: volumeids, zoneid, or account with domainid');
    }
  }

  /** Checks the request (run by the job): key and profile enabled, every volume the key's zone and account. */
  async plan(caller: Caller, keyUuid: string, scope: MigrationScope): Promise<MigrationPlan> {
    const { repos, directory } = this.deps;
    const key = await this.checkedKey(keyUuid);
    Migration.checkScopeShape(scope);
    const plan: MigrationPlan = { keyId: key.id, keyUuid: key.uuid, accountId: key.accountId, zoneId: key.zoneId };
    if (scope.zoneUuid) {
      const zone = await repos.zones.findLive(scope.zoneUuid);
      if (!zone) throw paramError(`Unable to find zone by id ${scope.zoneUuid}`);
      if (zone.id !== key.zoneId) throw paramError(`KMS key ${keyUuid} belongs to another zone than ${scope.zoneUuid}`);
    }
    if (scope.account) {
      const account = await directory.owningAccount(caller, { account: scope.account, domainid: scope.domainUuid });
      if (account.id !== key.accountId) throw paramError(`Account ${scope.account} does not own KMS key ${keyUuid}; only the key's account can migrate to it`);
    }
    if (scope.volumeUuids) {
      const wanted = [...new Set(scope.volumeUuids)];
      const rows = await repos.volumes.liveByUuids(wanted);
      const missing = wanted.filter((u) => !rows.some((r) => r.uuid === u));
      if (missing.length) throw paramError(`Unable to find volumes by id: ${missing.slice(0, OFFENDERS_SHOWN).join(', ')}`);
      const foreign = rows.filter((r) => r.accountId !== key.accountId).map((r) => r.uuid);
      if (foreign.length) throw paramError(`The following volumes do not belong to the same account as the KMS key: ${foreign.slice(0, OFFENDERS_SHOWN).join(', ')}`);
      const otherZone = rows.filter((r) => r.zoneId !== key.zoneId).map((r) => r.uuid);
      if (otherZone.length) throw paramError(`The following volumes are not in the zone of the KMS key: ${otherZone.slice(0, OFFENDERS_SHOWN).join(', ')}`);
      const plain = rows.filter((r) => r.passphraseId === null && r.wrappedKeyId === null).map((r) => r.uuid);
      if (plain.length) throw paramError(`The following volumes are not encrypted, so there is nothing to migrate: ${plain.slice(0, OFFENDERS_SHOWN).join(', ')}`);
      plan.volumeIds = rows.map((r) => r.id).sort((a, b) => a - b);
    }
    return plan;
  }

  /**
   * Runs a plan in batches of `batchSize`, reporting progress (percent) after each batch. With
   * `jobUuid`, every volume it migrates is marked with the job in the same transaction, so a run
   * taken over by another worker reports the whole job: the volumes earlier attempts migrated count
   * as migrated (not skipped), and `migrated` is counted from the marks, not from this attempt.
   */
  async run(plan: MigrationPlan, opts: { batchSize: number; userId: number; jobUuid?: string; progress(percent: number): Promise<void>; aborted?(): boolean }): Promise<MigrationReport> {
    const report: MigrationReport = { migrated: 0, skipped: 0, failed: 0, failedVolumeIds: [] };
    const jobUuid = opts.jobUuid ?? null;
    const run: RunContext = { jobUuid, userId: opts.userId };
    const { volumes } = this.deps.repos;
    const total = plan.volumeIds ? plan.volumeIds.length : await volumes.countSelection(plan);
    let lastId = 0;
    let processed = 0;
    for (;;) {
      if (opts.aborted?.()) throw new KmsError('unavailable', 'Migration interrupted; it resumes where it stopped when the job is taken over');
      const batch = await volumes.selectionBatch(plan, lastId, opts.batchSize);
      if (!batch.length) break;
      lastId = batch[batch.length - 1]!.id;
      const outcomes = await this.migrateBatch(plan, batch, run);
      for (const v of batch) {
        const outcome = outcomes.get(v.id)!;
        if (outcome === 'skipped' && jobUuid !== null && v.migrationJob === jobUuid) continue; // an earlier attempt of this job migrated it
        if (outcome === 'migrated') report.migrated++;
        else if (outcome === 'skipped') report.skipped++;
        else {
          report.failed++;
          if (report.failedVolumeIds.length < 1000) report.failedVolumeIds.push(v.uuid);
        }
      }
      processed += batch.length;
      await opts.progress(total ? Math.min(99, Math.floor((processed * 100) / total)) : 99);
    }
    if (jobUuid !== null) report.migrated = await volumes.countMigratedBy(jobUuid);
    return report;
  }

  /**
   * One batch: passphrases read in one query, wrapped with up to 16 backend calls in flight, then
   * committed in one transaction of per-volume conditional updates. If that transaction fails
   * (e.g. the version was archived meanwhile), each volume is retried in a transaction of its own.
   */
  private async migrateBatch(plan: MigrationPlan, batch: LegacyVolume[], run: RunContext): Promise<Map<number, Outcome>> {
    const outcomes = new Map<number, Outcome>();
    const todo = batch.filter((v) => v.passphraseId !== null);
    for (const v of batch) if (v.passphraseId === null) outcomes.set(v.id, 'skipped');
    if (!todo.length) return outcomes;
    const version = await this.wrappedKeys.activeVersion(plan.keyId);
    const kek = await this.wrappedKeys.kekRef(version);
    const secrets = await this.passphrases.readMany(this.deps.repos, todo.map((v) => v.passphraseId!));
    const wrapped: Array<{ v: LegacyVolume; blob: Buffer; standbyBlob?: Buffer | null }> = [];
    try {
      // A transient failure (HSM busy, restarting, degraded) is retried in later rounds, after the
      // profile answers again; only what still fails, or fails for good, is reported per volume.
      let pending = todo;
      for (let round = 0; pending.length; round++) {
        const transient: LegacyVolume[] = [];
        const failed = (v: LegacyVolume, err: unknown) => {
          if (isKmsError(err) && err.retryable && round < TRANSIENT_ROUNDS) return void transient.push(v);
          this.deps.logger.warn('volume migration to KMS failed', { volume: v.uuid, error: isKmsError(err) ? err.message : String(err) });
          outcomes.set(v.id, 'failed');
        };
        const items: Array<{ v: LegacyVolume; dek: SecretBytes }> = [];
        for (const v of pending) {
          const dek = secrets.get(v.passphraseId!);
          if (dek) items.push({ v, dek });
          else outcomes.set(v.id, 'skipped');
        }
        // One backend batch per round (one hop to the HSM's thread): each volume's result is its own.
        try {
          const results = await this.wrappedKeys.wrapMany(version, items.map(({ v, dek }) => ({ ownerUuid: v.uuid, dek })), kek);
          // A key with a standby: the same secrets wrapped by the standby KEK, stored in the same transaction.
          const ok = items.filter((_, i) => results[i]!.ok);
          const standby = await this.wrappedKeys.wrapManyStandby(version, ok.map(({ v, dek }) => ({ ownerUuid: v.uuid, dek })));
          const standbyOf = new Map(ok.map(({ v }, i) => [v.id, standby[i] ?? null]));
          results.forEach((r, i) => (r.ok ? wrapped.push({ v: items[i]!.v, blob: r.value, standbyBlob: standbyOf.get(items[i]!.v.id) ?? null }) : failed(items[i]!.v, r.error)));
        } catch (err) {
          for (const { v } of items) failed(v, err);
        }
        if (transient.length) await this.untilProfileAnswers(version.profile.uuid, round);
        pending = transient;
      }
    } finally {
      for (const s of secrets.values()) s.dispose();
    }
    try {
      const committed = await this.deps.repos.transaction(async (tx) => {
        await this.wrappedKeys.assertVersionUsable(tx, version);
        const out = new Map<number, Outcome>();
        for (let i = 0; i < wrapped.length; i += COMMIT_CHUNK) {
          for (const [id, o] of await this.commitChunk(tx, plan, version, wrapped.slice(i, i + COMMIT_CHUNK), run)) out.set(id, o);
        }
        return out;
      });
      for (const [id, o] of committed) outcomes.set(id, o);
    } catch {
      for (const { v } of wrapped) outcomes.set(v.id, await this.migrateOne(plan, v, run));
    }
    return outcomes;
  }

  /** Waits before the next round of transient retries: back-off, longer while the profile is Degraded. */
  private async untilProfileAnswers(profileUuid: string, round: number): Promise<void> {
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const until = Date.now() + TRANSIENT_WAIT_MS * 2 ** round;
    await sleep(Math.min(TRANSIENT_WAIT_MS * 2 ** round, 1000));
    while (this.deps.providers.isDegraded(profileUuid) && Date.now() < until) await sleep(250);
  }

  /**
   * Stores a chunk's wrapped keys and points each volume at its own with one conditional UPDATE
   * (only volumes that still have their passphrase and no wrapped key: a concurrent run may have
   * migrated some). Wrapped keys no volume took are deleted again; migrated volumes' passphrases too.
   */
  private async commitChunk(tx: Repositories, plan: MigrationPlan, version: KekVersionContext, chunk: Array<{ v: LegacyVolume; blob: Buffer; standbyBlob?: Buffer | null }>, run: RunContext): Promise<Map<number, Outcome>> {
    const wrappedIdOf = await this.wrappedKeys.insertMany(tx, version, chunk.map(({ v, blob, standbyBlob }) => ({ zoneId: v.zoneId, ownerUuid: v.uuid, blob, standbyBlob })));
    const migrated = await tx.volumes.linkWrappedKeys(plan.keyId, run.jobUuid, chunk.map(({ v }) => ({ volumeId: v.id, wrappedKeyId: wrappedIdOf.get(v.uuid)! })));
    const orphans = chunk.filter(({ v }) => !migrated.has(v.id)).map(({ v }) => wrappedIdOf.get(v.uuid)!);
    await this.wrappedKeys.deleteUnused(tx, orphans);
    await tx.passphrases.delete(chunk.filter(({ v }) => migrated.has(v.id)).map(({ v }) => v.passphraseId!));
    await this.deps.events.recordMany(chunk.filter(({ v }) => migrated.has(v.id)).map(({ v }) => migratedEvent(plan, v, run)), tx);
    return new Map(chunk.map(({ v }) => [v.id, migrated.has(v.id) ? 'migrated' : 'skipped']));
  }

  /**
   * Stores the wrapped key and points the volume at it, only if the volume still has this
   * passphrase (a concurrent run may have migrated it). The caller deletes the passphrase row.
   */
  private async commitOne(tx: Repositories, plan: MigrationPlan, version: KekVersionContext, v: LegacyVolume, blob: Buffer, standbyBlob: Buffer | null, run: RunContext): Promise<Outcome> {
    const wrappedKeyId = await this.wrappedKeys.insert(tx, version, { zoneId: v.zoneId, ownerUuid: v.uuid, blob, standbyBlob }, { versionChecked: true });
    if (await tx.volumes.linkWrappedKey(v.id, v.passphraseId, plan.keyId, wrappedKeyId, run.jobUuid)) {
      await this.deps.events.record(migratedEvent(plan, v, run), tx);
      return 'migrated';
    }
    await this.wrappedKeys.deleteUnused(tx, [wrappedKeyId]);
    return 'skipped';
  }

  /** One volume in its own transaction, starting again on the new version if its version was archived. */
  private async migrateOne(plan: MigrationPlan, v: LegacyVolume, run: RunContext): Promise<Outcome> {
    for (let attempt = 1; ; attempt++) {
      try {
        const version = await this.wrappedKeys.activeVersion(plan.keyId);
        const [blob, standbyBlob] = await using(await this.passphrases.read(this.deps.repos, v.passphraseId!), async (secret) => [
          await this.wrappedKeys.wrap(version, v.uuid, secret),
          (await this.wrappedKeys.wrapManyStandby(version, [{ ownerUuid: v.uuid, dek: secret }]))[0] ?? null,
        ] as const);
        return await this.deps.repos.transaction(async (tx) => {
          await this.wrappedKeys.assertVersionUsable(tx, version);
          const outcome = await this.commitOne(tx, plan, version, v, blob, standbyBlob, run);
          if (outcome === 'migrated') await this.passphrases.delete(tx, v.passphraseId!);
          return outcome;
        });
      } catch (err) {
        if (err instanceof VersionArchivedError && attempt < 3) continue;
        if (err instanceof PassphraseGoneError) return 'skipped'; // a concurrent run migrated it and removed the passphrase
        this.deps.logger.warn('volume migration to KMS failed', { volume: v.uuid, error: isKmsError(err) ? err.message : String(err) });
        return 'failed';
      }
    }
  }
}
