import type { Knex } from 'knex';
import type { OwnerScope } from '../../core/owner-scope';
import { isMysql } from '../knex';
import { applyOwnerScope } from '../owner-scope';
import { type Page, type PageWindow } from '../paging';
import { pagedRows } from '../reader';
import { dateOrNull } from '../columns';

/** A volume (the `volumes` table). */
export interface Volume {
  id: number;
  uuid: string;
  name: string;
  accountId: number;
  domainId: number;
  zoneId: number;
  /** Bytes. */
  size: number;
  state: string;
  encryptFormat: string | null;
  passphraseId: number | null;
  kmsKeyId: number | null;
  wrappedKeyId: number | null;
  diskOfferingId: number | null;
  created: Date;
  removed: Date | null;
}

export type NewVolume = Omit<Volume, 'id' | 'removed'>;

/** A volume with its owner, zone, KMS key (and the KEK version of its DEK) and disk offering, as answers show it. */
export interface VolumeView {
  id: number; uuid: string; name: string; size: number; state: string; encryptFormat: string | null; created: Date; passphraseId: number | null;
  accountId: number; domainId: number; accountName: string; accountUuid: string; domainUuid: string; domainName: string; domainPath: string;
  /** The project owning the volume through its account, or null. */
  projectUuid: string | null; projectName: string | null;
  zoneUuid: string; zoneName: string; keyUuid: string | null; keyName: string | null; keyVersion: number | null;
  offeringUuid: string | null; offeringName: string | null; offeringDisplayText: string | null; provisioningType: string | null; storageType: string | null;
}

/** listVolumes filters (all optional; `keyword` matches the name). */
export interface VolumeFilter {
  uuid?: string; name?: string; zoneUuid?: string; diskOfferingUuid?: string; state?: string; encrypted?: boolean; kmsKeyUuid?: string; keyword?: string;
}

/** Which volumes a migration covers: the named ones, or the account's passphrase volumes in the zone. */
export interface MigrationSelection {
  readonly volumeIds?: readonly number[];
  readonly accountId: number;
  readonly zoneId: number;
}

/** A volume as a migration reads it. */
export interface MigratingVolume {
  id: number; uuid: string; name: string; passphraseId: number | null; wrappedKeyId: number | null; accountId: number; domainId: number; zoneId: number;
  /** The migration job that moved it to its KMS key, if any. */
  migrationJob: string | null;
}

const toMs = (d: Date | null): number | null => (d === null ? null : d.getTime());
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

function toVolume(r: Record<string, any>): Volume {
  return {
    id: Number(r.id), uuid: r.uuid, name: r.name, accountId: Number(r.account_id), domainId: Number(r.domain_id), zoneId: Number(r.zone_id),
    size: Number(r.size), state: r.state, encryptFormat: r.encrypt_format ?? null, passphraseId: numOrNull(r.passphrase_id),
    kmsKeyId: numOrNull(r.kms_key_id), wrappedKeyId: numOrNull(r.kms_wrapped_key_id), diskOfferingId: numOrNull(r.disk_offering_id),
    created: new Date(Number(r.created)), removed: dateOrNull(r.removed),
  };
}

function toView(r: Record<string, any>): VolumeView {
  return {
    id: Number(r.id), uuid: r.uuid, name: r.name, size: Number(r.size), state: r.state, encryptFormat: r.encrypt_format ?? null, created: new Date(Number(r.created)),
    passphraseId: numOrNull(r.passphrase_id), accountId: Number(r.account_id), domainId: Number(r.domain_id), accountName: r.account_name,
    accountUuid: r.account_uuid, domainUuid: r.domain_uuid, domainName: r.domain_name, domainPath: r.domain_path, zoneUuid: r.zone_uuid, zoneName: r.zone_name,
    keyUuid: r.key_uuid ?? null, keyName: r.key_name ?? null, keyVersion: numOrNull(r.key_version), offeringUuid: r.offering_uuid ?? null,
    offeringName: r.offering_name ?? null, offeringDisplayText: r.offering_display_text ?? null, provisioningType: r.provisioning_type ?? null,
    storageType: r.storage_type ?? null, projectUuid: r.project_uuid ?? null, projectName: r.project_name ?? null,
  };
}

function toMigrating(r: Record<string, any>): MigratingVolume {
  return {
    id: Number(r.id), uuid: r.uuid, name: r.name, passphraseId: numOrNull(r.passphrase_id), wrappedKeyId: numOrNull(r.kms_wrapped_key_id),
    accountId: Number(r.account_id), domainId: Number(r.domain_id), zoneId: Number(r.zone_id), migrationJob: r.kms_migration_job ?? null,
  };
}

/**
 * Volumes, their views, and the conditional statements of a migration (a volume is linked to its
 * wrapped key only while it still has its passphrase and no wrapped key, so a step can run twice).
 */
export class VolumeRepository {
  constructor(private readonly db: Knex) {}

  async insert(v: NewVolume): Promise<number> {
    const [id] = await this.db('volumes').insert({
      uuid: v.uuid, name: v.name, account_id: v.accountId, domain_id: v.domainId, zone_id: v.zoneId, size: v.size, state: v.state,
      encrypt_format: v.encryptFormat, passphrase_id: v.passphraseId, kms_key_id: v.kmsKeyId, kms_wrapped_key_id: v.wrappedKeyId,
      disk_offering_id: v.diskOfferingId, created: v.created.getTime(), removed: null,
    });
    return Number(id);
  }

  /** A live (not removed) volume by uuid. */
  async findLive(uuid: string): Promise<Volume | undefined> {
    const r = await this.db('volumes').where({ uuid }).whereNull('removed').first();
    return r ? toVolume(r) : undefined;
  }

  /** The secrets of a live volume, read under a row lock (FOR UPDATE on MariaDB): call it in a transaction. */
  async lockSecrets(id: number): Promise<{ wrappedKeyId: number | null; passphraseId: number | null } | undefined> {
    const q = this.db('volumes').where({ id }).whereNull('removed').first('kms_wrapped_key_id', 'passphrase_id');
    const r = await (isMysql(this.db) ? q.forUpdate() : q);
    return r ? { wrappedKeyId: numOrNull(r.kms_wrapped_key_id), passphraseId: numOrNull(r.passphrase_id) } : undefined;
  }

  /** Marks the volume expunged at `at` and unlinks its secrets. */
  async expunge(id: number, at: Date): Promise<void> {
    await this.db('volumes').where({ id }).update({ state: 'Expunged', removed: toMs(at), kms_wrapped_key_id: null, passphrase_id: null });
  }

  /** The KMS key and KEK version number a wrapped key belongs to. */
  async wrappedKeyOrigin(wrappedKeyId: number): Promise<{ keyUuid: string; version: number } | undefined> {
    const r = await this.db('kms_wrapped_key as w').join('kms_kek_versions as kv', 'kv.id', 'w.kek_version_id').join('kms_keys as k', 'k.id', 'w.kms_key_id')
      .where('w.id', wrappedKeyId).first('k.uuid as keyUuid', 'kv.version_number as version');
    return r ? { keyUuid: r.keyUuid, version: Number(r.version) } : undefined;
  }

  /** A KMS key's name and owner by id (removed or not), for the migration's summary event. */
  async kmsKeyOwner(id: number): Promise<{ name: string; accountId: number; domainId: number } | undefined> {
    const r = await this.db('kms_keys').where({ id }).first('name', 'account_id', 'domain_id');
    return r ? { name: r.name, accountId: Number(r.account_id), domainId: Number(r.domain_id) } : undefined;
  }

  private viewQuery(): Knex.QueryBuilder {
    return this.db('volumes as v')
      .join('account as a', 'a.id', 'v.account_id').join('domain as d', 'd.id', 'v.domain_id').join('data_center as z', 'z.id', 'v.zone_id')
      .leftJoin('projects as pr', 'pr.project_account_id', 'a.id')
      .leftJoin('kms_keys as k', 'k.id', 'v.kms_key_id')
      .leftJoin('kms_wrapped_key as w', 'w.id', 'v.kms_wrapped_key_id')
      .leftJoin('kms_kek_versions as kv', 'kv.id', 'w.kek_version_id')
      .leftJoin('disk_offering as o', 'o.id', 'v.disk_offering_id')
      .whereNull('v.removed')
      .select('v.id', 'v.uuid', 'v.name', 'v.size', 'v.state', 'v.encrypt_format', 'v.created', 'v.passphrase_id', 'v.account_id', 'v.domain_id',
        'a.account_name', 'a.uuid as account_uuid', 'd.uuid as domain_uuid', 'd.name as domain_name', 'd.path as domain_path',
        'z.uuid as zone_uuid', 'z.name as zone_name', 'k.uuid as key_uuid', 'k.name as key_name', 'kv.version_number as key_version',
        'o.uuid as offering_uuid', 'o.name as offering_name', 'o.display_text as offering_display_text', 'o.provisioning_type', 'o.storage_type',
        'pr.uuid as project_uuid', 'pr.name as project_name');
  }

  /** A live volume with its owner, zone, key and offering. */
  async view(uuid: string): Promise<VolumeView | undefined> {
    const r = await this.viewQuery().where('v.uuid', uuid).first();
    return r ? toView(r) : undefined;
  }

  /** The live volumes in `scope` matching `f`, by id, one page and the total. */
  async listViews(scope: OwnerScope, f: VolumeFilter, page: PageWindow): Promise<Page<VolumeView>> {
    const q = applyOwnerScope(this.viewQuery(), scope, { accountCol: 'v.account_id', domainCol: 'v.domain_id' }).orderBy('v.id');
    if (f.uuid) q.where('v.uuid', f.uuid);
    if (f.name) q.where('v.name', f.name);
    if (f.zoneUuid) q.where('z.uuid', f.zoneUuid);
    if (f.diskOfferingUuid) q.where('o.uuid', f.diskOfferingUuid);
    if (f.state) q.where('v.state', f.state);
    if (f.encrypted !== undefined) q.where((w) => (f.encrypted ? w.whereNotNull('v.encrypt_format') : w.whereNull('v.encrypt_format')));
    if (f.kmsKeyUuid) q.where('k.uuid', f.kmsKeyUuid);
    if (f.keyword) q.where('v.name', 'like', `%${f.keyword}%`);
    const { rows, count } = await pagedRows<Record<string, any>>(q, page);
    return { rows: rows.map(toView), count };
  }

  // ── migration ──

  /** Live volumes by uuid (those found). */
  async liveByUuids(uuids: readonly string[]): Promise<MigratingVolume[]> {
    const rows = await this.db('volumes').whereIn('uuid', [...uuids]).whereNull('removed')
      .select('id', 'uuid', 'name', 'account_id', 'domain_id', 'zone_id', 'passphrase_id', 'kms_wrapped_key_id', 'kms_migration_job');
    return rows.map(toMigrating);
  }

  private selectionQuery(s: MigrationSelection): Knex.QueryBuilder {
    const q = this.db('volumes').whereNull('removed');
    if (s.volumeIds) return q.whereIn('id', [...s.volumeIds]);
    return q.where({ account_id: s.accountId, zone_id: s.zoneId }).whereNotNull('passphrase_id');
  }

  /** How many volumes a selection holds now. */
  async countSelection(s: MigrationSelection): Promise<number> {
    return Number(((await this.selectionQuery(s).count({ n: '*' }).first()) as { n?: number | string } | undefined)?.n ?? 0);
  }

  /** The next `limit` volumes of a selection after id `afterId`, by id. */
  async selectionBatch(s: MigrationSelection, afterId: number, limit: number): Promise<MigratingVolume[]> {
    const rows = await this.selectionQuery(s).where('id', '>', afterId).orderBy('id').limit(limit)
      .select('id', 'uuid', 'name', 'passphrase_id', 'kms_wrapped_key_id', 'account_id', 'domain_id', 'zone_id', 'kms_migration_job');
    return rows.map(toMigrating);
  }

  /**
   * Points each volume at its wrapped key with one conditional UPDATE: only volumes that still have
   * a passphrase and no wrapped key (a concurrent run may have migrated some). Marks them with the
   * job. Returns the ids of the volumes that now hold their wrapped key.
   */
  async linkWrappedKeys(keyId: number, jobUuid: string | null, links: ReadonlyArray<{ volumeId: number; wrappedKeyId: number }>): Promise<Set<number>> {
    if (!links.length) return new Set();
    const volumeIds = links.map((l) => l.volumeId);
    const caseSql = `CASE id ${links.map(() => 'WHEN ? THEN ?').join(' ')} END`;
    await this.db('volumes').whereIn('id', volumeIds).whereNotNull('passphrase_id').whereNull('kms_wrapped_key_id').whereNull('removed')
      .update({
        kms_key_id: keyId, passphrase_id: null, kms_migration_job: jobUuid,
        kms_wrapped_key_id: this.db.raw(caseSql, links.flatMap((l) => [l.volumeId, l.wrappedKeyId])),
      });
    const linked: Array<{ id: number }> = await this.db('volumes').whereIn('id', volumeIds).whereIn('kms_wrapped_key_id', links.map((l) => l.wrappedKeyId)).select('id');
    return new Set(linked.map((r) => Number(r.id)));
  }

  /** Points one volume at its wrapped key only if it still has `passphraseId` and no wrapped key; true when it did. */
  async linkWrappedKey(volumeId: number, passphraseId: number | null, keyId: number, wrappedKeyId: number, jobUuid: string | null): Promise<boolean> {
    const n = await this.db('volumes').where({ id: volumeId, passphrase_id: passphraseId }).whereNull('kms_wrapped_key_id').whereNull('removed')
      .update({ kms_key_id: keyId, kms_wrapped_key_id: wrappedKeyId, passphrase_id: null, kms_migration_job: jobUuid });
    return n === 1;
  }

  /** How many volumes the migration job `jobUuid` moved (over all its attempts). */
  async countMigratedBy(jobUuid: string): Promise<number> {
    const r = await this.db('volumes').where({ kms_migration_job: jobUuid }).count({ n: '*' }).first();
    return Number((r as { n?: number | string } | undefined)?.n ?? 0);
  }
}
