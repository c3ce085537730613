import type { Knex } from 'knex';
import { knexReader, pagedRows, type Reader } from '../reader';
import type { OwnerScope } from '../../core/owner-scope';
import { applyOwnerScope } from '../owner-scope';
import { type Page, type PageWindow } from '../paging';
import { bool, dateOrNull } from '../columns';

/** A KMS key: zone-scoped, owned by one account; `kekLabel`, `hsmProfileId` and `keyBits` mirror its Active version. */
export interface KmsKey {
  id: number;
  uuid: string;
  name: string;
  description: string | null;
  kekLabel: string;
  purpose: string;
  accountId: number;
  domainId: number;
  zoneId: number;
  algorithm: string;
  keyBits: number;
  enabled: boolean;
  hsmProfileId: number;
  /** The key's standby HSM profile (README "Standby HSM"); null without one. */
  standbyHsmProfileId?: number | null;
  created: Date;
  removed: Date | null;
}

/** A key with the names and the Active version number that responses show. */
export interface KmsKeyView extends KmsKey {
  accountName: string;
  accountUuid: string;
  /** The project owning the key through its account, or null. */
  projectUuid: string | null;
  projectName: string | null;
  domainUuid: string;
  domainName: string;
  domainPath: string;
  zoneUuid: string;
  zoneName: string;
  profileUuid: string;
  profileName: string;
  standbyProfileUuid?: string | null;
  standbyProfileName?: string | null;
  /** The Active version's number; null only for a key caught between states. */
  version: number | null;
}

/** A new key row. */
export type NewKmsKey = Omit<KmsKey, 'id' | 'removed'>;

/** listKMSKeys filters (the owner scope and page come separately). */
export interface KmsKeyListFilter {
  purpose: string;
  uuid?: string;
  zoneUuid?: string;
  profileUuid?: string;
  enabled?: boolean;
  keyword?: string;
}

export function toKmsKey(r: Record<string, any>): KmsKey {
  return {
    id: Number(r.id), uuid: r.uuid, name: r.name, description: r.description ?? null, kekLabel: r.kek_label, purpose: r.purpose,
    accountId: Number(r.account_id), domainId: Number(r.domain_id), zoneId: Number(r.zone_id), algorithm: r.algorithm, keyBits: Number(r.key_bits),
    enabled: bool(r.enabled), hsmProfileId: Number(r.hsm_profile_id),
    standbyHsmProfileId: r.standby_hsm_profile_id === null || r.standby_hsm_profile_id === undefined ? null : Number(r.standby_hsm_profile_id),
    created: new Date(Number(r.created)), removed: dateOrNull(r.removed),
  };
}

function toView(r: Record<string, any>): KmsKeyView {
  return {
    ...toKmsKey(r), accountName: r.account_name, accountUuid: r.account_uuid, domainUuid: r.domain_uuid, domainName: r.domain_name,
    projectUuid: r.project_uuid ?? null, projectName: r.project_name ?? null, domainPath: r.domain_path, zoneUuid: r.zone_uuid, zoneName: r.zone_name, profileUuid: r.profile_uuid, profileName: r.profile_name,
    standbyProfileUuid: r.standby_profile_uuid ?? null, standbyProfileName: r.standby_profile_name ?? null,
    version: r.version === null || r.version === undefined ? null : Number(r.version),
  };
}

const count = async (q: Knex.QueryBuilder): Promise<number> => Number(((await q.count({ n: '*' }).first()) as { n: number | string } | undefined)?.n ?? 0);

/** The key view: owner, zone and profile names, and the Active version's number. */
const KEY_VIEW_FROM = '`kms_keys` as `k`'
  + ' inner join `account` as `a` on `a`.`id` = `k`.`account_id`'
  + ' inner join `domain` as `d` on `d`.`id` = `k`.`domain_id`'
  + ' left join `projects` as `pr` on `pr`.`project_account_id` = `a`.`id`'
  + ' inner join `data_center` as `z` on `z`.`id` = `k`.`zone_id`'
  + ' inner join `kms_hsm_profiles` as `p` on `p`.`id` = `k`.`hsm_profile_id`'
  + ' left join `kms_hsm_profiles` as `sp` on `sp`.`id` = `k`.`standby_hsm_profile_id`'
  + ' left join `kms_kek_versions` as `v` on `v`.`kms_key_id` = `k`.`id` and `v`.`status` = ? and `v`.`removed` is null';
const KEY_VIEW_COLUMNS = '`k`.*, `a`.`account_name`, `a`.`uuid` as `account_uuid`, `d`.`uuid` as `domain_uuid`, `d`.`name` as `domain_name`,'
  + ' `d`.`path` as `domain_path`, `z`.`uuid` as `zone_uuid`, `z`.`name` as `zone_name`, `p`.`uuid` as `profile_uuid`, `p`.`name` as `profile_name`,'
  + ' `sp`.`uuid` as `standby_profile_uuid`, `sp`.`name` as `standby_profile_name`,'
  + ' `v`.`version_number` as `version`, `pr`.`uuid` as `project_uuid`, `pr`.`name` as `project_name`';

/** `kms_keys`, and the views of keys that responses and guards need (owner, zone, profile names; usage). */
export class KmsKeyRepository {
  constructor(private readonly db: Knex | Knex.Transaction, private readonly read: Reader = knexReader) {}

  /** A live (not removed) key by uuid. */
  async byUuid(uuid: string): Promise<KmsKey | undefined> {
    const r = await this.db('kms_keys').where({ uuid }).whereNull('removed').first();
    return r && toKmsKey(r);
  }

  /** A removed key by uuid (a deletion being finished). */
  async removedByUuid(uuid: string): Promise<KmsKey | undefined> {
    const r = await this.db('kms_keys').where({ uuid }).whereNotNull('removed').first();
    return r && toKmsKey(r);
  }

  /** The owner of a key, removed or not. */
  async ownerOf(id: number): Promise<{ accountId: number; domainId: number } | undefined> {
    const r = await this.db('kms_keys').where({ id }).first('account_id', 'domain_id');
    return r && { accountId: Number(r.account_id), domainId: Number(r.domain_id) };
  }

  /** The response view of one live key. */
  async view(id: number): Promise<KmsKeyView | undefined> {
    const r = await this.viewQuery().where('k.id', id).first();
    return r && toView(r);
  }

  /** One page of the live keys in `scope` matching the filter, by id, and the total. */
  async list(scope: OwnerScope, f: KmsKeyListFilter, page: PageWindow): Promise<Page<KmsKeyView>> {
    const q = applyOwnerScope(this.viewQuery(), scope, { accountCol: 'k.account_id', domainCol: 'k.domain_id' })
      .where('k.purpose', f.purpose).orderBy('k.id');
    if (f.uuid) q.where('k.uuid', f.uuid);
    if (f.zoneUuid) q.where('z.uuid', f.zoneUuid);
    if (f.profileUuid) q.where('p.uuid', f.profileUuid);
    if (f.enabled !== undefined) q.where('k.enabled', f.enabled);
    if (f.keyword) q.where((b) => b.where('k.name', 'like', `%${f.keyword}%`).orWhere('k.description', 'like', `%${f.keyword}%`));
    const { rows, count: n } = await pagedRows<Record<string, any>>(q, page, this.read);
    return { rows: rows.map(toView), count: n };
  }

  /** Whether a live key of the account has this name. */
  async nameTaken(accountId: number, name: string): Promise<boolean> {
    return !!(await this.db('kms_keys').where({ account_id: accountId, name }).whereNull('removed').first('id'));
  }

  /** The id of a live zone by uuid (keys are zone-scoped). */
  async liveZoneId(uuid: string): Promise<number | undefined> {
    const zone = await this.db('data_center').where({ uuid }).whereNull('removed').first('id');
    return zone ? Number(zone.id) : undefined;
  }

  async insert(k: NewKmsKey): Promise<number> {
    const [id] = await this.db('kms_keys').insert({
      uuid: k.uuid, name: k.name, description: k.description, kek_label: k.kekLabel, purpose: k.purpose, account_id: k.accountId,
      domain_id: k.domainId, zone_id: k.zoneId, algorithm: k.algorithm, key_bits: k.keyBits, enabled: k.enabled,
      hsm_profile_id: k.hsmProfileId, standby_hsm_profile_id: k.standbyHsmProfileId ?? null, created: k.created.getTime(), removed: null,
    });
    return Number(id);
  }

  /** Renames, describes, enables or disables a key. */
  async update(id: number, patch: { name?: string; description?: string; enabled?: boolean }): Promise<void> {
    const row = {
      ...(patch.name !== undefined ? { name: patch.name } : {}),
      ...(patch.description !== undefined ? { description: patch.description } : {}),
      ...(patch.enabled !== undefined ? { enabled: patch.enabled } : {}),
    };
    if (Object.keys(row).length) await this.db('kms_keys').where({ id }).update(row);
  }

  /** Marks a live key removed; false when it was removed already. */
  async markRemoved(id: number, at: Date): Promise<boolean> {
    return (await this.db('kms_keys').where({ id }).whereNull('removed').update({ removed: at.getTime() })) === 1;
  }

  /** Points a live key at its new Active version's KEK; false when the key was removed meanwhile. */
  async moveToKek(id: number, kek: { kekLabel: string; hsmProfileId: number; keyBits: number }): Promise<boolean> {
    return (await this.db('kms_keys').where({ id }).whereNull('removed')
      .update({ kek_label: kek.kekLabel, hsm_profile_id: kek.hsmProfileId, key_bits: kek.keyBits })) === 1;
  }

  /** Names the key's standby HSM profile. */
  async setStandby(id: number, profileId: number): Promise<void> {
    await this.db('kms_keys').where({ id }).update({ standby_hsm_profile_id: profileId });
  }

  /** Live wrapped keys of each key that also have a standby blob (listKMSKeys `standbywrappedkeys`). */
  async standbyCoverage(keyIds: readonly number[]): Promise<Map<number, number>> {
    if (!keyIds.length) return new Map();
    const rows: Array<{ kms_key_id: number; n: number | string }> = await this.db('kms_wrapped_key').whereIn('kms_key_id', [...keyIds])
      .whereNull('removed').whereNotNull('standby_blob').groupBy('kms_key_id').select('kms_key_id', this.db.raw('count(*) as n'));
    return new Map(rows.map((r) => [Number(r.kms_key_id), Number(r.n)]));
  }

  /** What still uses a key: live wrapped keys and live volumes. */
  async usage(keyId: number): Promise<{ wrappedKeys: number; volumes: number }> {
    return {
      wrappedKeys: await count(this.db('kms_wrapped_key').where({ kms_key_id: keyId }).whereNull('removed')),
      volumes: await count(this.db('volumes').where({ kms_key_id: keyId }).whereNull('removed')),
    };
  }

  /**
   * Takes a named lease in `kms_lock` for `owner`: free when its lease expired, and the same owner
   * may take it again (a re-run of the same job). One rotation per key at a time.
   */
  async takeLease(name: string, owner: string, leaseMs: number): Promise<boolean> {
    await this.db('kms_lock').insert({ name, owner: '', expires: 0 }).onConflict('name').ignore();
    const now = Date.now();
    const n = await this.db('kms_lock').where({ name }).where((b) => b.where('expires', '<=', now).orWhere('owner', owner))
      .update({ owner, expires: now + leaseMs });
    return n === 1;
  }

  private viewQuery(): Knex.QueryBuilder {
    // Written out once: knex spends ~200 µs of CPU building these joins on every call (bench:api).
    // knex's typings give a fromRaw builder no record type.
    return this.db.queryBuilder().fromRaw(this.db.raw(KEY_VIEW_FROM, ['Active'])).whereNull('k.removed').columns(this.db.raw(KEY_VIEW_COLUMNS)) as unknown as Knex.QueryBuilder;
  }

}
