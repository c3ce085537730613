import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { KmsDeps } from './deps';
import type { HsmProfileConfig, KekRef } from '../providers/provider';
import { dekAad } from './aad';
import { KmsError, paramError } from '../core/errors';
import { loadProfileConfig, type ProfileRow } from './hsm-profile-details';
import type { SecretBytes } from '../core/secret-bytes';
import { bool } from '../db/paging';
import { isMysql } from '../db/knex';

/** The KEK version a DEK is (or will be) wrapped with, with its key and profile. */
export interface KekVersionContext {
  keyId: number;
  keyUuid: string;
  versionId: number;
  versionNumber: number;
  status: 'Active' | 'Previous' | 'Archived';
  kekLabel: string;
  profile: ProfileRow;
}

/** A new wrapped key: the blob and the volume (owner) it belongs to. */
export interface WrappedKeyInput { zoneId: number; ownerUuid: string; blob: Buffer }

export interface WrappedKeyRow {
  id: number; uuid: string; kms_key_id: number; kek_version_id: number; zone_id: number; owner_uuid: string; wrapped_blob: Buffer; removed: number | null;
}

/**
 * A backend's "KEK not found" means the key material is gone, not that the request was wrong: it is
 * answered as a backend failure (530, never retried) naming the KMS key and version, not the label
 * (which carries internal ids).
 */
export async function withKekContext<T>(v: Pick<KekVersionContext, 'keyUuid' | 'versionNumber'>, call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (err) {
    if (err instanceof KmsError && err.kind === 'param' && /^KEK not found/.test(err.message)) {
      throw new KmsError('provider', `The KEK of KMS key ${v.keyUuid} version v${v.versionNumber} is missing from its backend`, { retryable: false });
    }
    throw err;
  }
}

/** The version a blob was made with was archived before the blob could be stored: make it again. */
export class VersionArchivedError extends KmsError {
  constructor(message: string) {
    super('unavailable', message);
  }
}

/**
 * DEKs wrapped by KEK versions: generation, wrapping of an existing secret (migration), unwrap and
 * destruction. Every blob is bound to (KMS key, KEK version, owning volume) through its AAD.
 */
export class WrappedKeys {
  constructor(private readonly app: KmsDeps) {}

  /** The Active version of a key, ready to wrap with; 431 when the profile is disabled. */
  async activeVersion(keyId: number, trx: Knex = this.app.db): Promise<KekVersionContext> {
    const row = await this.versionQuery(trx).where({ 'v.kms_key_id': keyId, 'v.status': 'Active' }).whereNull('v.removed').whereNull('k.removed').first();
    if (!row) throw paramError('The KMS key was deleted meanwhile');
    return this.toContext(row);
  }

  async versionById(versionId: number, trx: Knex = this.app.db): Promise<KekVersionContext | undefined> {
    const row = await this.versionQuery(trx).where({ 'v.id': versionId }).first();
    return row && this.toContext(row);
  }

  /** The KEK reference of a version (profile details decrypted; never log it). */
  async kekRef(v: KekVersionContext): Promise<KekRef> {
    if (!bool(v.profile.enabled)) throw paramError(`HSM profile is not enabled: ${v.profile.name}`);
    const profile: HsmProfileConfig = await loadProfileConfig(this.app.db, this.app.masterKey, v.profile);
    return { profile, label: v.kekLabel };
  }

  /** A fresh DEK of `bytes`, generated and wrapped by the backend; returns the blob only. */
  async generate(v: KekVersionContext, ownerUuid: string, bytes: number): Promise<Buffer> {
    const kek = await this.kekRef(v);
    return withKekContext(v, this.app.providers.get(kek.profile.protocol).generateAndWrap({ kek, bytes, aad: this.aad(v, ownerUuid) }));
  }

  /** Wraps an existing secret (the caller keeps and disposes it); `kek` saves a lookup when known. */
  async wrap(v: KekVersionContext, ownerUuid: string, dek: SecretBytes, kek?: KekRef): Promise<Buffer> {
    const ref = kek ?? (await this.kekRef(v));
    return withKekContext(v, this.app.providers.get(ref.profile.protocol).wrap({ kek: ref, dek, aad: this.aad(v, ownerUuid) }));
  }

  /**
   * Reads the version row under a shared lock: a version archived since a blob was made with it
   * (its KEK destroyed) fails as retryable, so no DEK is ever stored under a destroyed KEK. Call it
   * in the transaction that stores the blobs.
   */
  async assertVersionUsable(trx: Knex, v: KekVersionContext): Promise<void> {
    const q = trx('kms_kek_versions as v').join('kms_keys as k', 'k.id', 'v.kms_key_id')
      .where('v.id', v.versionId).whereNull('v.removed').whereNull('k.removed').whereIn('v.status', ['Active', 'Previous'])
      .first('v.id');
    // FOR UPDATE, not SHARE: the same transaction then raises the version's wrapped-key count, and
    // two shared locks each upgrading to exclusive would deadlock.
    const current = await (isMysql(this.app.db) ? q.forUpdate() : q);
    if (!current) {
      throw new VersionArchivedError(`KEK version v${v.versionNumber} of KMS key ${v.keyUuid} was archived or deleted meanwhile; retry`);
    }
  }

  /** Inserts the wrapped-key row after assertVersionUsable; returns its id. */
  async insert(trx: Knex, v: KekVersionContext, row: WrappedKeyInput, opts: { versionChecked?: boolean } = {}): Promise<number> {
    if (!opts.versionChecked) await this.assertVersionUsable(trx, v);
    return (await this.insertMany(trx, v, [row])).get(row.ownerUuid)!;
  }

  /**
   * Inserts several wrapped-key rows with one statement, after the caller's assertVersionUsable in
   * the same transaction; returns each owner's new row id.
   */
  async insertMany(trx: Knex, v: KekVersionContext, rows: readonly WrappedKeyInput[]): Promise<Map<string, number>> {
    const now = Date.now();
    const records = rows.map((r) => ({
      uuid: randomUUID(), kms_key_id: v.keyId, kek_version_id: v.versionId, zone_id: r.zoneId, owner_uuid: r.ownerUuid, wrapped_blob: r.blob, created: now,
    }));
    await trx('kms_wrapped_key').insert(records);
    await adjustWrappedKeyCount(trx, v.versionId, records.length);
    const inserted: Array<{ id: number; owner_uuid: string }> = await trx('kms_wrapped_key').whereIn('uuid', records.map((r) => r.uuid)).select('id', 'owner_uuid');
    return new Map(inserted.map((r) => [r.owner_uuid, Number(r.id)]));
  }

  /**
   * The plaintext DEK of `wrappedKeyId` for the volume `ownerUuid`. The caller owns the result and
   * must dispose() it. A blob that belongs to another volume or was altered fails as `integrity`.
   */
  async unwrap(wrappedKeyId: number, ownerUuid: string): Promise<SecretBytes> {
    const wk: WrappedKeyRow | undefined = await this.app.db('kms_wrapped_key').where({ id: wrappedKeyId }).whereNull('removed').first();
    if (!wk) throw paramError('The wrapped key of this volume no longer exists');
    if (wk.owner_uuid !== ownerUuid) {
      throw new KmsError('integrity', `Wrapped key ${wk.uuid} does not belong to volume ${ownerUuid}`);
    }
    const v = await this.versionById(wk.kek_version_id);
    if (!v || v.status === 'Archived') throw new KmsError('integrity', `KEK version of wrapped key ${wk.uuid} is not available for decryption`);
    const kek = await this.kekRef(v);
    return withKekContext(v, this.app.providers.get(kek.profile.protocol).unwrap({ kek, blob: Buffer.from(wk.wrapped_blob), aad: this.aad(v, ownerUuid) }));
  }

  /** Crypto-shreds a wrapped key: the blob is overwritten and the row marked removed. */
  async destroy(trx: Knex, wrappedKeyId: number): Promise<void> {
    // Locked and conditional on the version read, so a rewrap moving the row meanwhile cannot make
    // the count of the wrong version drop.
    const q = trx('kms_wrapped_key').where({ id: wrappedKeyId }).whereNull('removed').first('kek_version_id');
    const row: { kek_version_id: number } | undefined = await (isMysql(this.app.db) ? q.forUpdate() : q);
    if (!row) return;
    const n = await trx('kms_wrapped_key').where({ id: wrappedKeyId, kek_version_id: row.kek_version_id }).whereNull('removed')
      .update({ wrapped_blob: Buffer.alloc(0), removed: Date.now() });
    await adjustWrappedKeyCount(trx, row.kek_version_id, -n);
  }

  /** Deletes wrapped keys no volume took (a migration's leftovers), keeping the version counts exact. */
  async deleteUnused(trx: Knex, ids: readonly number[]): Promise<void> {
    if (!ids.length) return;
    const perVersion: Array<{ kek_version_id: number; n: number | string }> = await trx('kms_wrapped_key').whereIn('id', [...ids]).whereNull('removed')
      .groupBy('kek_version_id').select('kek_version_id', trx.raw('count(*) as n'));
    await trx('kms_wrapped_key').whereIn('id', [...ids]).delete();
    for (const r of perVersion) await adjustWrappedKeyCount(trx, r.kek_version_id, -Number(r.n));
  }

  aad(v: Pick<KekVersionContext, 'keyUuid' | 'versionNumber'>, ownerUuid: string): Buffer {
    return dekAad({ purpose: 'volume', kmsKeyUuid: v.keyUuid, kekVersion: v.versionNumber, ownerUuid });
  }

  private versionQuery(trx: Knex) {
    return trx('kms_kek_versions as v')
      .join('kms_keys as k', 'k.id', 'v.kms_key_id')
      .join('kms_hsm_profiles as p', 'p.id', 'v.hsm_profile_id')
      .select('v.id as versionId', 'v.version_number as versionNumber', 'v.status', 'v.kek_label as kekLabel',
        'k.id as keyId', 'k.uuid as keyUuid', 'p.id as profileId', 'p.uuid as profileUuid', 'p.name as profileName',
        'p.protocol as profileProtocol', 'p.enabled as profileEnabled');
  }

  private toContext(row: Record<string, any>): KekVersionContext {
    return {
      keyId: row.keyId, keyUuid: row.keyUuid, versionId: row.versionId, versionNumber: Number(row.versionNumber), status: row.status, kekLabel: row.kekLabel,
      profile: { id: row.profileId, uuid: row.profileUuid, name: row.profileName, protocol: row.profileProtocol, enabled: row.profileEnabled },
    };
  }
}

/**
 * Keeps `kms_kek_versions.wrapped_keys` (live wrapped keys per version) exact: every statement that
 * adds, removes or moves wrapped keys calls this in the same transaction, so progress figures never
 * scan the wrapped keys, however many there are.
 */
export async function adjustWrappedKeyCount(trx: Knex, versionId: number, delta: number): Promise<void> {
  if (delta !== 0) await trx('kms_kek_versions').where({ id: versionId }).increment('wrapped_keys', delta);
}
