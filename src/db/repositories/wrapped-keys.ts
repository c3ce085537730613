import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { isMysql } from '../knex';
import { KekVersionRepository, type KekStatus } from './kek-versions';

/** A DEK wrapped by one KEK version, bound to the volume (owner) it belongs to. */
export interface WrappedKey {
  id: number;
  uuid: string;
  kmsKeyId: number;
  kekVersionId: number;
  zoneId: number;
  ownerUuid: string;
  blob: Buffer;
  /** The same DEK wrapped by the standby KEK of the version (README "Standby HSM"); null without one. */
  standbyBlob: Buffer | null;
  removed: Date | null;
}

/** A new wrapped key: the blob and the volume (owner) it belongs to. */
export interface WrappedKeyInput { zoneId: number; ownerUuid: string; blob: Buffer; standbyBlob?: Buffer | null }

/** A wrapped key claimed by a rewrap worker. */
export interface ClaimedWrappedKey {
  id: number;
  uuid: string;
  kmsKeyId: number;
  kekVersionId: number;
  ownerUuid: string;
  blob: Buffer;
  standbyBlob: Buffer | null;
}

/** Which live wrapped keys a key check covers: those of one key, of one profile (their version's), of one zone; all when empty. */
export interface WrappedKeyCheckFilter { kmsKeyId?: number; hsmProfileId?: number; zoneId?: number }

/** A live wrapped key as the key check reads it; `ownerUuid` is the volume that holds it. */
export interface CheckedWrappedKey {
  id: number;
  uuid: string;
  kekVersionId: number;
  ownerUuid: string;
  blob: Buffer;
  standbyBlob: Buffer | null;
}

/** One rewrapped blob to commit, with its standby blob under the target version's standby KEK (null: none yet). */
export interface RewrappedBlob { id: number; blob: Buffer; standbyBlob?: Buffer | null }

/** A live wrapped key whose version has a standby KEK but which has no standby blob yet. */
export interface StandbyGap { id: number; kekVersionId: number; ownerUuid: string; blob: Buffer }

const bufOrNull = (b: unknown): Buffer | null => (b === null || b === undefined ? null : Buffer.from(b as Buffer));

/**
 * `kms_wrapped_key`. Every statement that adds, removes or moves wrapped keys also keeps the
 * versions' `wrapped_keys` counts exact, in the same transaction; the rewrap's claims and its
 * conditional commit live here, next to the SQL they guard.
 */
export class WrappedKeyRepository {
  private readonly versions: KekVersionRepository;

  constructor(private readonly db: Knex | Knex.Transaction) {
    this.versions = new KekVersionRepository(db);
  }

  /** A live wrapped key by id. */
  async liveById(id: number): Promise<WrappedKey | undefined> {
    const r = await this.db('kms_wrapped_key').where({ id }).whereNull('removed').first();
    return r && {
      id: Number(r.id), uuid: r.uuid, kmsKeyId: Number(r.kms_key_id), kekVersionId: Number(r.kek_version_id), zoneId: Number(r.zone_id),
      ownerUuid: r.owner_uuid, blob: Buffer.from(r.wrapped_blob), standbyBlob: bufOrNull(r.standby_blob), removed: null,
    };
  }

  /**
   * Inserts several wrapped keys under one version with one statement and raises the version's
   * count; returns each owner's new row id. Call it after the version was locked as usable.
   */
  async insertMany(keyId: number, versionId: number, rows: readonly WrappedKeyInput[], at: Date): Promise<Map<string, number>> {
    const records = rows.map((r) => ({
      uuid: randomUUID(), kms_key_id: keyId, kek_version_id: versionId, zone_id: r.zoneId, owner_uuid: r.ownerUuid, wrapped_blob: r.blob, standby_blob: r.standbyBlob ?? null, created: at.getTime(),
    }));
    await this.db('kms_wrapped_key').insert(records);
    await this.versions.adjustWrappedKeyCount(versionId, records.length);
    const inserted: Array<{ id: number; owner_uuid: string }> = await this.db('kms_wrapped_key').whereIn('uuid', records.map((r) => r.uuid)).select('id', 'owner_uuid');
    return new Map(inserted.map((r) => [r.owner_uuid, Number(r.id)]));
  }

  /** Crypto-shreds a wrapped key: the blob is overwritten and the row marked removed. */
  async destroy(id: number, at: Date): Promise<void> {
    // Locked and conditional on the version read, so a rewrap moving the row meanwhile cannot make
    // the count of the wrong version drop.
    const q = this.db('kms_wrapped_key').where({ id }).whereNull('removed').first('kek_version_id');
    const row: { kek_version_id: number } | undefined = await (isMysql(this.db) ? q.forUpdate() : q);
    if (!row) return;
    const n = await this.db('kms_wrapped_key').where({ id, kek_version_id: row.kek_version_id }).whereNull('removed')
      .update({ wrapped_blob: Buffer.alloc(0), standby_blob: null, removed: at.getTime() });
    await this.versions.adjustWrappedKeyCount(row.kek_version_id, -n);
  }

  /** Deletes wrapped keys no volume took (a migration's leftovers), keeping the version counts exact. */
  async deleteUnused(ids: readonly number[]): Promise<void> {
    if (!ids.length) return;
    const perVersion: Array<{ kek_version_id: number; n: number | string }> = await this.db('kms_wrapped_key').whereIn('id', [...ids]).whereNull('removed')
      .groupBy('kek_version_id').select('kek_version_id', this.db.raw('count(*) as n'));
    await this.db('kms_wrapped_key').whereIn('id', [...ids]).delete();
    for (const r of perVersion) await this.versions.adjustWrappedKeyCount(r.kek_version_id, -Number(r.n));
  }

  /** Whether a live wrapped key is under this version (FOR SHARE on MariaDB, for a transaction that locked the version). */
  async anyLiveUnder(versionId: number): Promise<boolean> {
    const q = this.db('kms_wrapped_key').where('kek_version_id', versionId).whereNull('removed').first('id');
    return !!(await (isMysql(this.db) ? q.forShare() : q));
  }

  /**
   * Claims up to `limit` live wrapped keys under versions in `states` that nobody holds (or whose
   * claim expired) for `workerId`, with a conditional update; returns the rows this worker got.
   */
  async claim(states: readonly KekStatus[], limit: number, workerId: string, claimMs: number, now: number): Promise<ClaimedWrappedKey[]> {
    const candidates: Array<{ id: number }> = await this.db('kms_wrapped_key as w')
      .join('kms_kek_versions as v', 'v.id', 'w.kek_version_id')
      .whereIn('v.status', [...states]).whereNull('v.removed').whereNull('w.removed')
      .andWhere((q) => q.whereNull('w.claim_expires').orWhere('w.claim_expires', '<', now))
      .orderBy('w.id').limit(limit).select('w.id');
    if (!candidates.length) return [];
    const ids = candidates.map((c) => c.id);
    await this.db('kms_wrapped_key').whereIn('id', ids)
      .andWhere((q) => q.whereNull('claim_expires').orWhere('claim_expires', '<', now))
      .update({ claim_owner: workerId, claim_expires: now + claimMs });
    const rows: Array<Record<string, any>> = await this.db('kms_wrapped_key').whereIn('id', ids).where({ claim_owner: workerId }).whereNull('removed')
      .select('id', 'uuid', 'kms_key_id', 'kek_version_id', 'owner_uuid', 'wrapped_blob', 'standby_blob');
    return rows.map((r) => ({
      id: Number(r.id), uuid: r.uuid, kmsKeyId: Number(r.kms_key_id), kekVersionId: Number(r.kek_version_id), ownerUuid: r.owner_uuid, blob: r.wrapped_blob,
      standbyBlob: bufOrNull(r.standby_blob),
    }));
  }

  /**
   * The rewrap's commit for rows read on version `fromVersionId`: ONE conditional UPDATE gives each
   * row its new blob and the version `toVersionId` together, and only if it is still claimed by
   * `workerId`, still on `fromVersionId` and live; the two versions' counts move by the rows that
   * changed. Returns how many changed (the rest were changed first by another worker or a deletion).
   */
  async commitRewrapped(fromVersionId: number, toVersionId: number, workerId: string, blobs: readonly RewrappedBlob[], at: number): Promise<number> {
    const blobCase = this.db.raw(`CASE id ${blobs.map(() => 'WHEN ? THEN ?').join(' ')} END`, blobs.flatMap((b) => [b.id, b.blob]));
    // Both wraps move together: the standby blob of the source version is never left next to a blob of the target.
    const withStandby = blobs.filter((b) => b.standbyBlob);
    const standbyCase = withStandby.length
      ? this.db.raw(`CASE id ${withStandby.map(() => 'WHEN ? THEN ?').join(' ')} ELSE NULL END`, withStandby.flatMap((b) => [b.id, b.standbyBlob!]))
      : null;
    const n = await this.db('kms_wrapped_key')
      .whereIn('id', blobs.map((b) => b.id))
      .where({ kek_version_id: fromVersionId, claim_owner: workerId }).whereNull('removed')
      .update({ wrapped_blob: blobCase, standby_blob: standbyCase, kek_version_id: toVersionId, claim_owner: null, claim_expires: null, updated: at });
    await this.versions.adjustWrappedKeyCount(fromVersionId, -n);
    await this.versions.adjustWrappedKeyCount(toVersionId, n);
    return n;
  }

  private checkQuery(f: WrappedKeyCheckFilter) {
    const q = this.db('kms_wrapped_key as w').join('kms_kek_versions as v', 'v.id', 'w.kek_version_id').whereNull('w.removed');
    if (f.kmsKeyId !== undefined) q.where('w.kms_key_id', f.kmsKeyId);
    if (f.hsmProfileId !== undefined) q.where('v.hsm_profile_id', f.hsmProfileId);
    if (f.zoneId !== undefined) q.where('w.zone_id', f.zoneId);
    return q;
  }

  /** How many live wrapped keys the filter covers. */
  async countForCheck(f: WrappedKeyCheckFilter): Promise<number> {
    const r = await this.checkQuery(f).count({ n: '*' }).first();
    return Number((r as { n?: number | string } | undefined)?.n ?? 0);
  }

  /** The next `limit` live wrapped keys of the filter after id `afterId`, by id, with their volume's name (read only; nothing is claimed). */
  async pageForCheck(f: WrappedKeyCheckFilter, afterId: number, limit: number): Promise<CheckedWrappedKey[]> {
    const rows: Array<Record<string, any>> = await this.checkQuery(f).where('w.id', '>', afterId)
      .orderBy('w.id').limit(limit)
      .select('w.id', 'w.uuid', 'w.kek_version_id', 'w.owner_uuid', 'w.wrapped_blob', 'w.standby_blob');
    return rows.map((r) => ({
      id: Number(r.id), uuid: r.uuid, kekVersionId: Number(r.kek_version_id), ownerUuid: r.owner_uuid, blob: Buffer.from(r.wrapped_blob),
      standbyBlob: bufOrNull(r.standby_blob),
    }));
  }

  /** The names of the live volumes `uuids` (the owners of wrapped keys), for a report. */
  async volumeNames(uuids: readonly string[]): Promise<Map<string, string>> {
    if (!uuids.length) return new Map();
    const rows: Array<{ uuid: string; name: string }> = await this.db('volumes').whereIn('uuid', [...uuids]).whereNull('removed').select('uuid', 'name');
    return new Map(rows.map((r) => [r.uuid, r.name]));
  }

  /**
   * Up to `limit` live wrapped keys, not claimed by a rewrap, whose version has a standby KEK but
   * which have no standby blob yet (a standby added to an existing key; a standby wrap that failed).
   */
  async standbyGaps(limit: number, now: number): Promise<StandbyGap[]> {
    const rows: Array<Record<string, any>> = await this.db('kms_wrapped_key as w')
      .join('kms_kek_versions as v', 'v.id', 'w.kek_version_id')
      .whereNotNull('v.standby_kek_label').whereNull('v.removed').whereNull('w.removed').whereNull('w.standby_blob')
      .andWhere((q) => q.whereNull('w.claim_expires').orWhere('w.claim_expires', '<', now))
      .orderBy('w.id').limit(limit).select('w.id', 'w.kek_version_id', 'w.owner_uuid', 'w.wrapped_blob');
    return rows.map((r) => ({ id: Number(r.id), kekVersionId: Number(r.kek_version_id), ownerUuid: r.owner_uuid, blob: Buffer.from(r.wrapped_blob) }));
  }

  /** Stores a row's standby blob, only if it is still live, on `versionId` and without one; true when stored. */
  async fillStandby(id: number, versionId: number, standbyBlob: Buffer): Promise<boolean> {
    return (await this.db('kms_wrapped_key').where({ id, kek_version_id: versionId }).whereNull('removed').whereNull('standby_blob')
      .update({ standby_blob: standbyBlob })) === 1;
  }

  /** Releases this worker's claims on `ids` (retried at the next tick). */
  async releaseClaims(ids: readonly number[], workerId: string): Promise<void> {
    if (!ids.length) return;
    await this.db('kms_wrapped_key').whereIn('id', [...ids]).where({ claim_owner: workerId }).update({ claim_owner: null, claim_expires: null });
  }

  /** Parks this worker's claims on `ids` under `parkedAs` until `until` (epoch ms): no worker takes them before. */
  async parkClaims(ids: readonly number[], workerId: string, parkedAs: string, until: number): Promise<void> {
    if (!ids.length) return;
    await this.db('kms_wrapped_key').whereIn('id', [...ids]).where({ claim_owner: workerId }).update({ claim_owner: parkedAs, claim_expires: until });
  }
}
