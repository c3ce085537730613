import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { isMysql } from '../db/knex';
import type { KmsDeps } from './deps';
import { bool, pagedRows } from '../db/paging';
import type { Caller } from '../identity/caller';
import { applyOwnerScope } from '../db/owner-scope';
import type { ScopeRequest } from '../identity/directory';
import type { KekBits, KekProvider, KekRef, ProviderKind } from '../providers/provider';
import { kekLabel } from './aad';
import { isKmsError, KmsError, paramError, permissionError } from '../core/errors';
import { HsmProfiles, profileConfigFor, type HsmProfileDeps } from './hsm-profiles';
import { KEY_ALGORITHM, KEY_BITS, KEY_PURPOSE, type KekVersionRow, type KeyBits, type KmsKeyRow } from './types';

/** What the key service uses of the application. */
export type KmsKeyDeps = HsmProfileDeps & Pick<KmsDeps, 'logger'>;

/** A key row with the names and the Active version number that responses show. */
export interface KmsKeyView extends KmsKeyRow {
  account_name: string;
  account_uuid: string;
  domain_uuid: string;
  domain_name: string;
  domain_path: string;
  zone_uuid: string;
  zone_name: string;
  profile_uuid: string;
  profile_name: string;
  version: number | null;
}

/** createKMSKey input, in domain terms. */
export interface CreateKmsKeyInput {
  name: string;
  /** The project owning the key (its account); not with account. */
  projectUuid?: string;
  description?: string;
  zoneUuid: string;
  account?: string;
  domainUuid?: string;
  keyBits: number;
  profileUuid: string;
}

/** listKMSKeys filters plus CloudStack's owner-list parameters. */
export interface KmsKeyFilter extends ScopeRequest {
  uuid?: string;
  zoneUuid?: string;
  profileUuid?: string;
  enabled?: boolean;
  keyword?: string;
}

/** A live (not removed) key by uuid; undefined when absent. */
export async function getKeyByUuid(db: Knex, uuid: string): Promise<KmsKeyRow | undefined> {
  return db('kms_keys').where({ uuid }).whereNull('removed').first();
}

/** The key's Active KEK version (exactly one for a live key). */
export async function activeVersion(db: Knex, keyId: number): Promise<KekVersionRow | undefined> {
  return db('kms_kek_versions').where({ kms_key_id: keyId, status: 'Active' }).whereNull('removed').first();
}

/** Every live KEK version of a key, oldest first. */
export async function versionsOf(db: Knex, keyId: number): Promise<KekVersionRow[]> {
  return db('kms_kek_versions').where({ kms_key_id: keyId }).whereNull('removed').orderBy('version_number');
}

/** 431 "Key bits must be 128, 192, or 256" unless `bits` is one of KEY_BITS. */
export function assertKeyBits(bits: number): asserts bits is KeyBits {
  if (!(KEY_BITS as readonly number[]).includes(bits)) throw paramError(`Key bits must be ${KEY_BITS.slice(0, -1).join(', ')}, or ${KEY_BITS[KEY_BITS.length - 1]}`);
}

/**
 * Runs a backend call for a key command. A rejected PIN at this point is the backend's failure, not
 * the API caller's credentials: it becomes 'provider' (530 with the command's prefix), as CloudStack
 * wraps every KMSException.
 */
export async function backendCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (isKmsError(e) && e.kind === 'auth') throw new KmsError('provider', e.message, { retryable: false, cause: e });
    throw e;
  }
}

/** The query behind every key response (owner, zone and profile names, Active version). */
export function keyViewQuery(db: Knex): Knex.QueryBuilder {
  return db('kms_keys as k')
    .join('account as a', 'a.id', 'k.account_id')
    .join('domain as d', 'd.id', 'k.domain_id')
    .join('data_center as z', 'z.id', 'k.zone_id')
    .join('kms_hsm_profiles as p', 'p.id', 'k.hsm_profile_id')
    .leftJoin('kms_kek_versions as v', (j) => {
      j.on('v.kms_key_id', '=', 'k.id').andOn('v.status', '=', db.raw('?', ['Active'])).andOnNull('v.removed');
    })
    .whereNull('k.removed')
    .select('k.*', 'a.account_name', 'a.uuid as account_uuid', 'd.uuid as domain_uuid', 'd.name as domain_name', 'd.path as domain_path',
      'z.uuid as zone_uuid', 'z.name as zone_name', 'p.uuid as profile_uuid', 'p.name as profile_name', 'v.version_number as version');
}

/**
 * KMS keys: zone-scoped, owned by one account, each a chain of KEK versions in a backend. Services
 * hold no state; every guard runs before the first write, and a KEK made in a backend is destroyed
 * again when its database rows cannot be written.
 */
export class KmsKeys {
  readonly profiles: HsmProfiles;

  constructor(private readonly deps: KmsKeyDeps) {
    this.profiles = new HsmProfiles(deps);
  }

  /** The response view of one key. */
  async view(id: number): Promise<KmsKeyView> {
    return (await keyViewQuery(this.deps.db).where('k.id', id).first()) as KmsKeyView;
  }

  /** A live key the caller may act on: 431 "KMS key not found: <id>", or 531. */
  async requireAccessible(caller: Caller, uuid: string): Promise<KmsKeyRow> {
    const key = await getKeyByUuid(this.deps.db, uuid);
    if (!key) throw paramError(`KMS key not found: ${uuid}`);
    if (!(await this.deps.directory.canAccessOwner(caller, { accountId: key.account_id, domainId: key.domain_id }))) {
      throw permissionError(`Caller ${caller.accountName} does not have permission to operate on KMS key ${uuid}`);
    }
    return key;
  }

  /** The backend a profile row speaks. */
  providerOf(protocol: string): KekProvider {
    return this.deps.providers.get(protocol as ProviderKind);
  }

  /** A backend reference to one KEK of a key (loads and decrypts its profile). */
  async kekRef(profileId: number, label: string): Promise<KekRef> {
    return { profile: await profileConfigFor(this.deps, profileId), label };
  }

  /**
   * Creates a key: the version-1 KEK is made in the backend first (label kekLabel(..., 1)), then the
   * key and its Active version are inserted in one transaction; if that fails the KEK is destroyed.
   */
  async create(caller: Caller, input: CreateKmsKeyInput): Promise<KmsKeyRow> {
    const { db, directory } = this.deps;
    assertKeyBits(input.keyBits);
    const owner = await directory.resolveOwner(caller, { account: input.account, domainid: input.domainUuid, projectid: input.projectUuid });
    const zone = await db('data_center').where({ uuid: input.zoneUuid }).whereNull('removed').first('id');
    if (!zone) throw paramError(`Unable to find zone by id ${input.zoneUuid}`);
    const profile = await this.profiles.requireForKey(caller, input.profileUuid, { accountId: owner.id, domainId: owner.domain_id }, zone.id);
    await this.assertNameFree(owner.id, input.name);

    const uuid = randomUUID();
    const label = kekLabel({ domainId: owner.domain_id, accountId: owner.id, keyUuid: uuid }, 1);
    const provider = this.providerOf(profile.protocol);
    const kek = await this.kekRef(profile.id, label);
    await backendCall(() => provider.createKek(kek, input.keyBits as KekBits));
    const now = Date.now();
    const row = {
      uuid, name: input.name, description: input.description ?? null, kek_label: label, purpose: KEY_PURPOSE, account_id: owner.id,
      domain_id: owner.domain_id, zone_id: zone.id, algorithm: KEY_ALGORITHM, key_bits: input.keyBits, enabled: true,
      hsm_profile_id: profile.id, created: now, removed: null,
    };
    try {
      const id = await db.transaction(async (trx) => {
        const [keyId] = await trx('kms_keys').insert(row);
        await trx('kms_kek_versions').insert({
          uuid: randomUUID(), kms_key_id: Number(keyId), version_number: 1, kek_label: label, status: 'Active', key_bits: input.keyBits,
          hsm_profile_id: profile.id, created: now, archived: null, removed: null,
        });
        await this.deps.events.record({
          type: 'KMS.KEY.CREATE', description: `Created KMS key ${input.name} (${uuid}) with HSM profile ${profile.name}`,
          actor: { userId: caller.userId, accountId: owner.id, domainId: owner.domain_id }, resourceType: 'KmsKey', resourceId: uuid,
        }, trx);
        return Number(keyId);
      });
      return { ...row, id };
    } catch (e) {
      await this.destroyOrphan(provider, kek);
      throw e;
    }
  }

  /** The keys the caller may see (listKMSKeys; purpose is always volume), one page, by id. */
  async list(caller: Caller, f: KmsKeyFilter, window: { offset: number; limit: number | undefined }): Promise<{ rows: KmsKeyView[]; count: number }> {
    const scope = await this.deps.directory.listScope(caller, f);
    const q = applyOwnerScope(keyViewQuery(this.deps.db), scope, { accountCol: 'k.account_id', domainCol: 'k.domain_id' })
      .where('k.purpose', KEY_PURPOSE).orderBy('k.id');
    if (f.uuid) q.where('k.uuid', f.uuid);
    if (f.zoneUuid) q.where('z.uuid', f.zoneUuid);
    if (f.profileUuid) q.where('p.uuid', f.profileUuid);
    if (f.enabled !== undefined) q.where('k.enabled', f.enabled);
    if (f.keyword) q.where((b) => b.where('k.name', 'like', `%${f.keyword}%`).orWhere('k.description', 'like', `%${f.keyword}%`));
    return pagedRows<KmsKeyView>(q, window);
  }

  /** Renames, describes, enables or disables a key. */
  async update(caller: Caller, uuid: string, change: { name?: string; description?: string; enabled?: boolean }): Promise<KmsKeyRow> {
    const key = await this.requireAccessible(caller, uuid);
    if (change.name !== undefined && change.name !== key.name) await this.assertNameFree(key.account_id, change.name);
    const patch = {
      ...(change.name !== undefined ? { name: change.name } : {}),
      ...(change.description !== undefined ? { description: change.description } : {}),
      ...(change.enabled !== undefined ? { enabled: change.enabled } : {}),
    };
    await this.deps.db.transaction(async (trx) => {
      if (Object.keys(patch).length) await trx('kms_keys').where({ id: key.id }).update(patch);
      await this.deps.events.record({
        type: 'KMS.KEY.UPDATE', description: `Updated KMS key ${change.name ?? key.name} (${key.uuid})`,
        actor: { userId: caller.userId, accountId: key.account_id, domainId: key.domain_id }, resourceType: 'KmsKey', resourceId: key.uuid,
      }, trx);
    });
    return { ...key, ...patch };
  }

  /** 431 while wrapped keys or volumes still use the key (texts of reference §1.8). */
  async assertDeletable(key: KmsKeyRow, trx: Knex = this.deps.db): Promise<void> {
    const count = async (q: Knex.QueryBuilder) => Number(((await q.count({ n: '*' }).first()) as { n: number | string } | undefined)?.n ?? 0);
    const wrapped = await count(trx('kms_wrapped_key').where({ kms_key_id: key.id }).whereNull('removed'));
    if (wrapped > 0) throw paramError(`Cannot delete KMS key: ${key.uuid}. ${wrapped} wrapped key(s) still reference this key`);
    const volumes = await count(trx('volumes').where({ kms_key_id: key.id }).whereNull('removed'));
    if (volumes > 0) throw paramError(`Cannot delete KMS key: ${key.uuid}. There are Volumes which still reference this key`);
  }

  /**
   * Deletes a key (the deleteKMSKey job): soft-removes it with its versions in one transaction that
   * re-checks the guards, then destroys every KEK version in its backend; a failed destroy is a WARN
   * event, not a failure. `resume` (a re-run job) finishes the destroys of an already removed key.
   */
  async delete(caller: Caller, uuid: string, opts: { resume?: boolean } = {}): Promise<void> {
    const { db } = this.deps;
    const removed: KmsKeyRow | undefined = opts.resume ? await db('kms_keys').where({ uuid }).whereNotNull('removed').first() : undefined;
    const key = removed ?? (await this.requireAccessible(caller, uuid));
    const versions: KekVersionRow[] = await db('kms_kek_versions').where({ kms_key_id: key.id }).orderBy('version_number');
    const actor = { userId: caller.userId, accountId: key.account_id, domainId: key.domain_id };
    if (!removed) {
      await db.transaction(async (trx) => {
        // Lock the key's version rows first: a volume or migration storing a DEK holds a shared lock
        // on its version row (WrappedKeys.assertVersionUsable), so the counts below see its row, or
        // it sees the key removed and stores nothing.
        const versionRows = trx('kms_kek_versions').where({ kms_key_id: key.id }).select('id');
        await (isMysql(db) ? versionRows.forUpdate() : versionRows);
        await this.assertDeletable(key, trx);
        const now = Date.now();
        const n = await trx('kms_keys').where({ id: key.id }).whereNull('removed').update({ removed: now });
        if (!n) throw paramError(`KMS key not found: ${uuid}`);
        await trx('kms_kek_versions').where({ kms_key_id: key.id }).whereNull('removed').update({ removed: now });
        await this.deps.events.record({ type: 'KMS.KEY.DELETE', description: `Deleted KMS key ${key.name} (${key.uuid})`, actor, resourceType: 'KmsKey', resourceId: key.uuid }, trx);
      });
    }
    for (const v of versions) {
      try {
        const kek = await this.kekRef(v.hsm_profile_id, v.kek_label);
        await backendCall(() => this.providerOf(kek.profile.protocol).destroyKek(kek));
      } catch (e) {
        const reason = e instanceof Error ? e.message : String(e);
        this.deps.logger.warn('could not destroy KEK of deleted KMS key', { key: key.uuid, label: v.kek_label, error: reason });
        await this.deps.events.record({
          type: 'KMS.KEY.DELETE', level: 'WARN', description: `Failed to delete KEK ${v.kek_label} of KMS key ${key.uuid} from its backend: ${reason}`,
          actor, resourceType: 'KmsKey', resourceId: key.uuid,
        });
      }
    }
  }

  /**
   * Destroys a KEK whose rows were never written, unless a version row names its label (another
   * writer won a race for the same label: its KEK must stay). Failures are logged, not thrown.
   */
  async destroyOrphan(provider: KekProvider, kek: KekRef): Promise<void> {
    try {
      if (await this.deps.db('kms_kek_versions').where({ kek_label: kek.label }).first()) return;
      await provider.destroyKek(kek);
    } catch (e) {
      this.deps.logger.warn('could not destroy orphan KEK', { label: kek.label, error: e instanceof Error ? e.message : String(e) });
    }
  }

  private async assertNameFree(accountId: number, name: string): Promise<void> {
    if (await this.deps.db('kms_keys').where({ account_id: accountId, name }).whereNull('removed').first()) {
      throw paramError(`A KMS key with name ${name} already exists in this account`);
    }
  }
}

/** Whether a key row is enabled (0/1 from the database). */
export const isKeyEnabled = (k: KmsKeyRow): boolean => bool(k.enabled);
