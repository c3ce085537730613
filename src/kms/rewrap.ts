import type { KmsDeps } from './deps';
import type { ClaimedWrappedKey } from '../db/repositories/wrapped-keys';
import type { KekRef, ProviderKind } from '../providers/provider';
import { mapLimit } from './concurrency';
import { isKmsError } from '../core/errors';
import { changeKekState, DESTROYED_STATUS, KEK_TRANSITIONS, REWRAP_SOURCE_STATUSES } from './kek-states';
import { WrappedKeys, type KekVersionContext } from './wrapped-keys';

/** What one rewrap tick did; failures are listed per wrapped key and retried at the next tick. */
export interface RewrapReport {
  claimed: number;
  rewrapped: number;
  /** Rows another worker or a volume deletion changed first. */
  skipped: number;
  /** Rows left for a later tick because their HSM profile is Degraded (not failures: nothing is parked). */
  paused: number;
  failed: Array<{ wrappedKeyId: string; error: string }>;
  /** Wrapped keys given their missing standby blob by the standby fill (README "Standby HSM"). */
  standbyFilled: number;
  archived: Array<{ keyUuid: string; version: number }>;
}

export interface RewrapOptions {
  batchSize: number;
  /** Identifies this worker's claims. */
  workerId: string;
  /** How long a claim stays ours; after that another worker may take the row. */
  claimMs: number;
  /** Backend calls in flight. */
  concurrency?: number;
  /** Aborted when this worker lost the tick's lock: nothing more is committed. */
  signal?: AbortSignal;
  /** How long an Archived KEK is kept before it is destroyed (kms.kek.destroy.delay.days); 0 (default): at once. */
  destroyDelayMs?: number;
}

/** How long a wrapped key whose rewrap failed for good waits before it is tried again. */
const PERMANENT_FAILURE_PARK_MS = 60 * 60 * 1000;

/** Rows per UPDATE statement when committing rewrapped blobs. */
const COMMIT_CHUNK = 250;

/** Wrapped keys per backend batch (one hop to the HSM's thread each). */
const REWRAP_BATCH = 250;

/** What the rewrap uses. */
export type RewrapDeps = Pick<KmsDeps, 'repos' | 'providers' | 'masterKey' | 'events' | 'logger'>;

/** Parked claims are held under this owner name until they expire. */
const PARKED_OWNER = 'rewrap-failed';

type ClaimedRow = ClaimedWrappedKey;

/**
 * The background rewrap after rotation: claims wrapped keys on Previous (and not yet destroyed
 * Archived) KEK versions, rewraps each
 * to its key's Active version and commits blob and version together with a conditional update, so a
 * crash at any instant leaves every row readable (old blob on a Previous version, or new blob on the
 * new one) and a repeat does no harm. Drained Previous versions become Archived and their KEK is
 * destroyed in the backend.
 */
export class Rewrapper {
  private readonly wrappedKeys: WrappedKeys;

  constructor(private readonly deps: RewrapDeps) {
    this.wrappedKeys = new WrappedKeys(deps);
  }

  async tick(opts: RewrapOptions): Promise<RewrapReport> {
    const report: RewrapReport = { claimed: 0, rewrapped: 0, skipped: 0, paused: 0, failed: [], standbyFilled: 0, archived: [] };
    const rows = await this.claim(opts);
    report.claimed = rows.length;
    if (rows.length) await this.rewrapRows(rows, opts, report);
    if (!opts.signal?.aborted) await this.fillStandby(opts, report);
    if (!opts.signal?.aborted) report.archived = await this.archiveDrained(opts.destroyDelayMs ?? 0);
    return report;
  }

  /** Claims up to batchSize unclaimed (or expired) rows on Previous versions with a conditional update. */
  private claim(opts: RewrapOptions): Promise<ClaimedRow[]> {
    return this.deps.repos.wrappedKeys.claim(REWRAP_SOURCE_STATUSES, opts.batchSize, opts.workerId, opts.claimMs, Date.now());
  }

  private async rewrapRows(rows: ClaimedRow[], opts: RewrapOptions, report: RewrapReport): Promise<void> {
    const versions = new Map<number, Promise<KekVersionContext | undefined>>();
    const actives = new Map<number, Promise<KekVersionContext>>();
    const refs = new Map<number, Promise<KekRef>>();
    const versionOf = (id: number) => versions.get(id) ?? versions.set(id, this.wrappedKeys.versionById(id)).get(id)!;
    const activeOf = (keyId: number) => actives.get(keyId) ?? actives.set(keyId, this.wrappedKeys.activeVersion(keyId)).get(keyId)!;
    const refOf = (v: KekVersionContext) => refs.get(v.versionId) ?? refs.set(v.versionId, this.wrappedKeys.kekRef(v)).get(v.versionId)!;

    const done: Array<{ row: ClaimedRow; from: KekVersionContext; to: KekVersionContext; blob: Buffer; standbyBlob?: Buffer | null }> = [];
    const permanent = new Set<number>();
    const fail = (row: ClaimedRow, err: unknown) => {
      if (isKmsError(err) && !err.retryable) permanent.add(row.id);
      report.failed.push({ wrappedKeyId: row.uuid, error: isKmsError(err) ? err.message : 'internal error' });
      if (!isKmsError(err)) this.deps.logger.error('rewrap failed', { wrappedKey: row.uuid, error: err instanceof Error ? err.stack : String(err) });
    };

    // Rows whose two versions share a backend kind are rewrapped in batches, one per pair of
    // profiles (one hop to the HSM's thread per batch; inside the HSM within one PKCS#11 profile);
    // rows moving between kinds are unwrapped and wrapped again one by one.
    const batches = new Map<string, Array<{ row: ClaimedRow; from: KekVersionContext; to: KekVersionContext }>>();
    const across: Array<{ row: ClaimedRow; from: KekVersionContext; to: KekVersionContext }> = [];
    await mapLimit(rows, opts.concurrency ?? 16, async (row) => {
      try {
        const from = await versionOf(row.kekVersionId);
        const to = await activeOf(row.kmsKeyId);
        if (!from || from.versionId === to.versionId) return;
        if (this.deps.providers.isDegraded(from.profile.uuid) || this.deps.providers.isDegraded(to.profile.uuid)) {
          report.paused++;
          return;
        }
        if (from.profile.protocol !== to.profile.protocol) return void across.push({ row, from, to });
        const pair = `${from.profile.uuid}>${to.profile.uuid}`;
        batches.set(pair, [...(batches.get(pair) ?? []), { row, from, to }]);
      } catch (err) {
        fail(row, err);
      }
    });
    // Two batches in flight, so the HSM's thread has the next batch while this one's answer is read.
    const parts = [...batches.values()].flatMap((group) => Array.from({ length: Math.ceil(group.length / REWRAP_BATCH) }, (_, i) => group.slice(i * REWRAP_BATCH, (i + 1) * REWRAP_BATCH)));
    await mapLimit(parts, 2, async (part) => {
      try {
        const requests = await Promise.all(part.map(async ({ row, from, to }) => ({
          from: { kek: await refOf(from), blob: Buffer.from(row.blob), aad: this.wrappedKeys.aad(from, row.ownerUuid) },
          to: { kek: await refOf(to), aad: this.wrappedKeys.aad(to, row.ownerUuid) },
        })));
        const results = await this.deps.providers.get(part[0]!.from.profile.protocol as ProviderKind).rewrapMany(requests);
        results.forEach((r, j) => (r.ok ? done.push({ row: part[j]!.row, from: part[j]!.from, to: part[j]!.to, blob: r.value }) : fail(part[j]!.row, r.error)));
      } catch (err) {
        for (const { row } of part) fail(row, err);
      }
    });
    await mapLimit(across, opts.concurrency ?? 16, async ({ row, from, to }) => {
      try {
        done.push({ row, from, to, blob: await this.rewrapAcrossKinds(row, from, to, refOf) });
      } catch (err) {
        fail(row, err);
      }
    });

    // The standby wrap moves with the primary one: a target version with a standby KEK gets the
    // DEK's standby blob in the same commit (a standby that fails now leaves it to the standby fill).
    await mapLimit(done.filter((d) => d.to.standby), opts.concurrency ?? 16, async (d) => {
      d.standbyBlob = await this.standbyForTarget(d.row, d.from, d.to).catch((err) => {
        this.deps.logger.warn('standby rewrap failed; left to the standby fill', { wrappedKey: d.row.uuid, error: isKmsError(err) ? err.message : String(err) });
        return null;
      });
    });

    // One conditional UPDATE per chunk and source version: each row gets its new blob and version
    // together, and only if it is still ours and still on the version it was read from.
    if (opts.signal?.aborted) return; // our claims expire; whoever holds the lock now redoes these rows
    // The counts are added after the commit: a transaction retried on a conflict runs again from scratch.
    const committed = await this.deps.repos.transaction(async (tx) => {
      const counted = { rewrapped: 0, skipped: 0 };
      // Each target version must still be live: a version archived (and its KEK destroyed) since it
      // was read as Active fails the whole commit, and the rows are retried next tick.
      const targets = new Map(done.map((d) => [d.to.versionId, d.to]));
      for (const to of targets.values()) await this.wrappedKeys.assertVersionUsable(tx, to);
      for (let i = 0; i < done.length; i += COMMIT_CHUNK) {
        const chunk = done.slice(i, i + COMMIT_CHUNK);
        const bySource = new Map<string, typeof chunk>();
        for (const d of chunk) {
          const k = `${d.row.kekVersionId}:${d.to.versionId}`;
          bySource.set(k, [...(bySource.get(k) ?? []), d]);
        }
        for (const group of bySource.values()) {
          const n = await tx.wrappedKeys.commitRewrapped(group[0]!.row.kekVersionId, group[0]!.to.versionId, opts.workerId,
            group.map((d) => ({ id: d.row.id, blob: d.blob, standbyBlob: d.standbyBlob ?? null })), Date.now());
          counted.rewrapped += n;
          counted.skipped += group.length - n;
        }
      }
      return counted;
    });
    report.rewrapped += committed.rewrapped;
    report.skipped += committed.skipped;
    // Failed rows stay on their Previous version; release them so the next tick retries at once.
    const succeeded = new Set(done.map((d) => d.row.id));
    // Transient failures are released for the next tick; a blob that can never be rewrapped
    // (tampered, swapped, KEK gone) is parked for an hour instead of being retried every tick.
    const failedIds = rows.filter((r) => !succeeded.has(r.id) && !permanent.has(r.id)).map((r) => r.id);
    await this.deps.repos.wrappedKeys.releaseClaims(failedIds, opts.workerId);
    await this.deps.repos.wrappedKeys.parkClaims([...permanent], opts.workerId, PARKED_OWNER, Date.now() + PERMANENT_FAILURE_PARK_MS);
  }

  /**
   * The standby blob of a DEK rewrapped from `from` to `to`: the row's standby blob rewrapped from
   * the source version's standby KEK to the target's (the primary is not needed, so this works
   * while the primary is away), or, when the row has none, the DEK unwrapped by the primary of the
   * source version and wrapped by the standby KEK of the target.
   */
  private async standbyForTarget(row: ClaimedRow, from: KekVersionContext, to: KekVersionContext): Promise<Buffer | null> {
    const toKek = await this.wrappedKeys.standbyRef(to);
    if (!toKek) return null;
    const source = row.standbyBlob && from.standby
      ? { kek: await this.wrappedKeys.standbyRef(from), blob: row.standbyBlob }
      : { kek: await this.wrappedKeys.kekRef(from), blob: Buffer.from(row.blob) };
    if (!source.kek) return null;
    const fromAad = this.wrappedKeys.aad(from, row.ownerUuid);
    const toAad = this.wrappedKeys.aad(to, row.ownerUuid);
    const fromProvider = this.deps.providers.get(source.kek.profile.protocol as ProviderKind);
    if (source.kek.profile.protocol === toKek.profile.protocol) {
      return fromProvider.rewrap({ from: { kek: source.kek, blob: source.blob, aad: fromAad }, to: { kek: toKek, aad: toAad } });
    }
    const dek = await fromProvider.unwrap({ kek: source.kek, blob: source.blob, aad: fromAad });
    try {
      return await this.deps.providers.get(toKek.profile.protocol as ProviderKind).wrap({ kek: toKek, dek, aad: toAad });
    } finally {
      dek.dispose();
    }
  }

  /**
   * The standby fill: live wrapped keys whose version has a standby KEK but no standby blob yet (a
   * standby added to an existing key, a standby wrap that failed) get one, up to batchSize per
   * tick. Each is stored with a conditional update (still on the version read, still without one),
   * so a rewrap or a deletion racing it wins, and two workers filling the same row store it once.
   */
  private async fillStandby(opts: RewrapOptions, report: RewrapReport): Promise<void> {
    const gaps = await this.deps.repos.wrappedKeys.standbyGaps(opts.batchSize, Date.now());
    const versions = new Map<number, Promise<KekVersionContext | undefined>>();
    await mapLimit(gaps, opts.concurrency ?? 16, async (gap) => {
      if (opts.signal?.aborted) return;
      try {
        const v = await (versions.get(gap.kekVersionId) ?? versions.set(gap.kekVersionId, this.wrappedKeys.versionById(gap.kekVersionId)).get(gap.kekVersionId)!);
        if (!v?.standby || v.destroyed) return;
        if (this.deps.providers.isDegraded(v.profile.uuid) || this.deps.providers.isDegraded(v.standby.profile.uuid)) {
          report.paused++;
          return;
        }
        const blob = await this.wrappedKeys.standbyFromPrimary(v, gap.ownerUuid, gap.blob);
        if (blob && (await this.deps.repos.wrappedKeys.fillStandby(gap.id, v.versionId, blob))) report.standbyFilled++;
      } catch (err) {
        report.failed.push({ wrappedKeyId: String(gap.id), error: isKmsError(err) ? err.message : 'internal error' });
      }
    });
  }

  /** Between backend kinds (database ⇄ pkcs11) the DEK is unwrapped by one and wrapped by the other, in memory. */
  private async rewrapAcrossKinds(row: ClaimedRow, from: KekVersionContext, to: KekVersionContext, refOf: (v: KekVersionContext) => Promise<KekRef>): Promise<Buffer> {
    const [fromKek, toKek] = await Promise.all([refOf(from), refOf(to)]);
    const dek = await this.deps.providers.get(fromKek.profile.protocol as ProviderKind)
      .unwrap({ kek: fromKek, blob: Buffer.from(row.blob), aad: this.wrappedKeys.aad(from, row.ownerUuid) });
    try {
      return await this.deps.providers.get(toKek.profile.protocol as ProviderKind).wrap({ kek: toKek, dek, aad: this.wrappedKeys.aad(to, row.ownerUuid) });
    } finally {
      dek.dispose();
    }
  }


  /**
   * Previous versions without live wrapped keys become Archived (a conditional update that re-checks
   * emptiness); then Archived versions archived at least `destroyDelayMs` ago, with no live wrapped
   * key (rows restored from a backup wait for the rewrap), have their KEK destroyed; a destruction
   * that failed is tried again at the next tick.
   */
  async archiveDrained(destroyDelayMs = 0): Promise<Array<{ keyUuid: string; version: number }>> {
    const { repos } = this.deps;
    const archived: Array<{ keyUuid: string; version: number }> = [];
    const drainFrom = KEK_TRANSITIONS.drain.from;
    for (const id of await repos.kekVersions.idsIn([drainFrom])) {
      // The version row is locked before the count: a transaction storing a DEK on this version
      // holds a lock on the same row (WrappedKeys.assertVersionUsable), so either its row is
      // counted here, or it sees the version Archived and stores nothing.
      const archivedNow = await repos.transaction(async (tx) => {
        if (!(await tx.kekVersions.lockIfIn(id, drainFrom))) return false;
        if (await tx.wrappedKeys.anyLiveUnder(id)) return false;
        return (await changeKekState(tx.kekVersions, { id }, 'drain', new Date())) === 1;
      });
      if (archivedNow) {
        const v = await this.wrappedKeys.versionById(id);
        if (v) archived.push({ keyUuid: v.keyUuid, version: v.versionNumber });
      }
    }
    for (const id of await repos.kekVersions.archivedDue(Date.now() - destroyDelayMs)) await this.destroyArchived(id, destroyDelayMs > 0 ? 'after its retention period' : 'after all wrapped keys were rewrapped');
    return archived;
  }

  /**
   * A root admin's purge (`npm run admin -- purge-archived-keks`): destroys at once the KEK of every
   * Archived version (of one key, or of all) that no live wrapped key is under, whatever its
   * retention. Answers the versions destroyed and those kept because wrapped keys are under them.
   */
  async purgeArchived(keyId?: number): Promise<{ destroyed: Array<{ keyUuid: string; version: number }>; kept: Array<{ keyUuid: string; version: number; wrappedKeys: number }> }> {
    const destroyed: Array<{ keyUuid: string; version: number }> = [];
    for (const id of await this.deps.repos.kekVersions.archivedDue(Number.MAX_SAFE_INTEGER, keyId)) {
      const v = await this.destroyArchived(id, 'by a purge');
      if (v) destroyed.push(v);
    }
    const kept: Array<{ keyUuid: string; version: number; wrappedKeys: number }> = [];
    for (const id of await this.deps.repos.kekVersions.idsIn([DESTROYED_STATUS], { live: true })) {
      const v = await this.wrappedKeys.versionById(id);
      if (!v || (keyId !== undefined && v.keyId !== keyId)) continue;
      const row = (await this.deps.repos.kekVersions.liveOf(v.keyId)).find((x) => x.id === id);
      kept.push({ keyUuid: v.keyUuid, version: v.versionNumber, wrappedKeys: row?.wrappedKeys ?? 0 });
    }
    return { destroyed, kept };
  }

  private async destroyArchived(versionId: number, why: string): Promise<{ keyUuid: string; version: number } | undefined> {
    const v = await this.wrappedKeys.versionById(versionId);
    if (!v) return undefined;
    const key = await this.deps.repos.kmsKeys.ownerOf(v.keyId);
    const actor = { accountId: key?.accountId, domainId: key?.domainId };
    try {
      const kek = await this.wrappedKeys.kekRef(v);
      await this.deps.providers.get(kek.profile.protocol as ProviderKind).destroyKek(kek);
      const standby = await this.wrappedKeys.standbyRef(v);
      if (standby) await this.deps.providers.get(standby.profile.protocol as ProviderKind).destroyKek(standby);
      await this.deps.repos.kekVersions.markDestroyed(versionId, new Date());
      await this.deps.events.record({
        type: 'KMS.KEY.DELETE', actor, resourceType: 'KmsKey', resourceId: v.keyUuid,
        description: `Archived KEK version v${v.versionNumber} of KMS key ${v.keyUuid} and destroyed it in its backend ${why}`,
      });
      return { keyUuid: v.keyUuid, version: v.versionNumber };
    } catch (err) {
      await this.deps.events.record({
        type: 'KMS.KEY.DELETE', level: 'WARN', actor, resourceType: 'KmsKey', resourceId: v.keyUuid,
        description: `KEK version v${v.versionNumber} of KMS key ${v.keyUuid} is Archived but could not be destroyed yet: ${isKmsError(err) ? err.message : 'internal error'}`,
      });
      return undefined;
    }
  }
}
