import { createHash, randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { KmsDeps } from './deps';
import { bool, pagedRows } from '../db/paging';
import type { Db } from '../db/knex';
import { isRootAdmin, type Caller } from '../identity/caller';
import { applyOwnerScope } from '../db/owner-scope';
import type { Directory, ScopeRequest } from '../identity/directory';
import type { ProfileHealth } from '../providers/circuit';
import { PROVIDER_KINDS, type HsmProfileConfig, type ProviderKind } from '../providers/provider';
import { isKmsError, KmsError, paramError, permissionError } from '../core/errors';
import { loadProfileConfig, storedDetailValue } from './hsm-profile-details';
import type { HsmProfileDetailRow, HsmProfileRow } from './types';

/** What the profile service uses of the application. */
export type HsmProfileDeps = Pick<KmsDeps, 'db' | 'masterKey' | 'providers' | 'events' | 'directory'>;

/** A profile row with the names responses show. */
export interface HsmProfileView extends HsmProfileRow {
  account_name: string | null;
  account_uuid: string | null;
  domain_uuid: string | null;
  domain_name: string | null;
  domain_path: string | null;
  zone_uuid: string | null;
  zone_name: string | null;
}

/** createHSMProfile input, in domain terms. */
export interface CreateHsmProfileInput {
  name: string;
  /** Lower-cased; blank means pkcs11, as CloudStack. */
  protocol?: string;
  zoneUuid?: string;
  domainUuid?: string;
  account?: string;
  /** The project owning the profile (its account); not with account. */
  projectUuid?: string;
  isPublic: boolean;
  vendorName?: string;
  details: Record<string, string>;
}

/** listHSMProfiles filters plus CloudStack's owner-list parameters. */
export interface HsmProfileFilter extends ScopeRequest {
  uuid?: string;
  zoneUuid?: string;
  protocol?: string;
  enabled?: boolean;
  isPublic?: boolean;
  keyword?: string;
}

/** The owner a KMS key will have, for the profile scope rule. */
export interface KeyOwner { accountId: number; domainId: number }

const DEFAULT_PROFILE_NAME = 'default';

/** The seeded profile's uuid: derived from the ROOT domain, so concurrent first starts insert it once. */
export function defaultProfileUuid(rootDomainUuid: string): string {
  const h = createHash('sha256').update(`kms-default-hsm-profile:${rootDomainUuid}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/**
 * Seeds CloudStack's default `database` profile (name `default`, public, disabled, owned by the root
 * admin account in ROOT) once; an admin enables it with updateHSMProfile. Idempotent and safe when
 * several servers start at once.
 */
export async function ensureDefaultHsmProfile(db: Db, directory: Directory): Promise<void> {
  const root = await directory.domainByPath('/');
  const admin = root && (await directory.accountByName(root.id, 'admin'));
  if (!root || !admin) throw new KmsError('internal', 'The ROOT domain and admin account must exist before the default HSM profile');
  const uuid = defaultProfileUuid(root.uuid);
  if (await db('kms_hsm_profiles').where({ uuid }).first()) return;
  try {
    await db('kms_hsm_profiles').insert({
      uuid, name: DEFAULT_PROFILE_NAME, protocol: 'database', account_id: admin.id, domain_id: root.id, zone_id: null,
      vendor_name: null, enabled: false, is_public: true, created: Date.now(), removed: null,
    });
  } catch (e) {
    if (!(await db('kms_hsm_profiles').where({ uuid }).first())) throw e;
  }
}

/** A profile as a provider needs it (sensitive details decrypted): never log or return it. */
export async function profileConfigFor(app: Pick<KmsDeps, 'db' | 'masterKey'>, profileId: number): Promise<HsmProfileConfig> {
  const row: HsmProfileRow | undefined = await app.db('kms_hsm_profiles').where({ id: profileId }).first();
  if (!row) throw paramError(`HSM profile not found: ${profileId}`);
  return loadProfileConfig(app.db, app.masterKey, row);
}

/** Whether responses to this caller may carry the profile's details (reference §1.2 "limited" view). */
export function showsDetails(caller: Caller, p: HsmProfileRow): boolean {
  return isRootAdmin(caller) || !bool(p.is_public) || p.account_id === caller.accountId;
}

const viewQuery = (db: Knex) =>
  db('kms_hsm_profiles as p')
    .leftJoin('account as a', 'a.id', 'p.account_id')
    .leftJoin('domain as d', 'd.id', 'p.domain_id')
    .leftJoin('data_center as z', 'z.id', 'p.zone_id')
    .whereNull('p.removed')
    .select('p.*', 'a.account_name', 'a.uuid as account_uuid', 'd.uuid as domain_uuid', 'd.name as domain_name', 'd.path as domain_path',
      'z.uuid as zone_uuid', 'z.name as zone_name');

/**
 * HSM profiles: the connection settings of a KEK backend, scoped to a zone, a domain, an account,
 * or public. Sensitive details are stored encrypted under the master key. Holds no state.
 */
export class HsmProfiles {
  constructor(private readonly deps: HsmProfileDeps) {}

  /** A live profile by uuid, or a 431. */
  async require(uuid: string): Promise<HsmProfileRow> {
    const row: HsmProfileRow | undefined = await this.deps.db('kms_hsm_profiles').where({ uuid }).whereNull('removed').first();
    if (!row) throw paramError(`HSM profile not found: ${uuid}`);
    return row;
  }

  /** The response view of one profile. */
  async view(id: number): Promise<HsmProfileView> {
    return (await viewQuery(this.deps.db).where('p.id', id).first()) as HsmProfileView;
  }

  /** Detail rows of the given profiles, by profile id (values as stored: mask before showing). */
  async detailsOf(profileIds: number[]): Promise<Map<number, HsmProfileDetailRow[]>> {
    const out = new Map<number, HsmProfileDetailRow[]>();
    if (!profileIds.length) return out;
    const rows: HsmProfileDetailRow[] = await this.deps.db('kms_hsm_profile_details').whereIn('profile_id', profileIds).orderBy('name');
    for (const r of rows) out.set(r.profile_id, [...(out.get(r.profile_id) ?? []), r]);
    return out;
  }

  /**
   * Validates the details, probes the backend with them (library loads, token found, PIN accepted)
   * and only then stores the profile. Bad details, a missing token or a rejected PIN are 431; a
   * backend that is down keeps its 530. Nothing is stored on failure.
   */
  async create(caller: Caller, input: CreateHsmProfileInput): Promise<HsmProfileRow> {
    const { db, directory } = this.deps;
    const protocol = (input.protocol?.trim() || 'pkcs11').toLowerCase();
    if (!(PROVIDER_KINDS as readonly string[]).includes(protocol)) throw paramError(`No provider found for protocol: ${input.protocol}`);
    if (input.isPublic && !isRootAdmin(caller)) throw permissionError('Only root admins can create system HSM profiles');
    const zone = input.zoneUuid ? await this.requireZone(input.zoneUuid) : undefined;
    let owner: { accountId: number | null; domainId: number };
    if (input.account || input.projectUuid) {
      const account = await directory.resolveOwner(caller, { account: input.account, domainid: input.domainUuid, projectid: input.projectUuid });
      owner = { accountId: account.id, domainId: account.domain_id };
    } else if (input.domainUuid) {
      owner = { accountId: null, domainId: (await directory.requireDomain(caller, input.domainUuid)).id };
    } else {
      owner = { accountId: caller.accountId, domainId: caller.domainId };
    }
    await this.assertNameFree(input.name, owner);
    const provider = this.deps.providers.get(protocol as ProviderKind);
    const problems = provider.validateProfile(input.details);
    if (problems.length) throw paramError(`Invalid details for HSM profile ${input.name}: ${problems.join('; ')}`);

    const uuid = randomUUID();
    const config: HsmProfileConfig = { id: uuid, name: input.name, protocol: protocol as ProviderKind, details: input.details };
    try {
      await provider.probe(config);
    } catch (e) {
      await provider.invalidateProfile(uuid).catch(() => undefined);
      throw probeFailure(input.name, e);
    }
    const row = {
      uuid, name: input.name, protocol, account_id: owner.accountId, domain_id: owner.domainId, zone_id: zone?.id ?? null,
      vendor_name: input.vendorName ?? null, enabled: true, is_public: input.isPublic, created: Date.now(), removed: null,
    };
    try {
      const id = await db.transaction(async (trx) => {
        const [newId] = await trx('kms_hsm_profiles').insert(row);
        const details = Object.entries(input.details).map(([name, value]) => ({
          profile_id: Number(newId), name, value: storedDetailValue(this.deps.masterKey, uuid, name, value),
        }));
        if (details.length) await trx('kms_hsm_profile_details').insert(details);
        await this.deps.events.record({
          type: 'HSM.PROFILE.CREATE', description: `Created HSM profile ${input.name} (${protocol})`, actor: actorOf(caller),
          resourceType: 'HsmProfile', resourceId: uuid,
        }, trx);
        return Number(newId);
      });
      return { ...row, id };
    } catch (e) {
      await provider.invalidateProfile(uuid).catch(() => undefined);
      throw e;
    }
  }

  /** The profiles the caller may see (reference §1.2), one page, sorted by id. */
  async list(caller: Caller, f: HsmProfileFilter, window: { offset: number; limit: number | undefined }): Promise<{ rows: HsmProfileView[]; count: number }> {
    const { db, directory } = this.deps;
    const scope = await directory.listScope(caller, f);
    const q = viewQuery(db).orderBy('p.id');
    if (scope.kind === 'all') applyOwnerScope(q, scope, { accountCol: 'p.account_id', domainCol: 'p.domain_id' });
    else {
      // With projectid the project's profiles replace the caller's own; the usable shared ones stay.
      const ownerFilter = !!(f.account || f.domainid);
      q.where((b) => {
        b.where((s) => { applyOwnerScope(s, scope, { accountCol: 'p.account_id', domainCol: 'p.domain_id' }); });
        if (!ownerFilter) {
          b.orWhere((s) => s.whereNull('p.account_id').where('p.domain_id', caller.domainId));
          if (f.listall || f.isPublic) b.orWhere('p.is_public', true);
        }
      });
    }
    if (f.uuid) q.where('p.uuid', f.uuid);
    if (f.zoneUuid) {
      const zone = await this.requireZone(f.zoneUuid);
      q.where((b) => b.where('p.zone_id', zone.id).orWhereNull('p.zone_id'));
    }
    if (f.protocol) q.where('p.protocol', f.protocol.toLowerCase());
    if (f.enabled !== undefined) q.where('p.enabled', f.enabled);
    if (f.isPublic !== undefined) q.where('p.is_public', f.isPublic);
    if (f.keyword) q.where('p.name', 'like', `%${f.keyword}%`);
    return pagedRows<HsmProfileView>(q, window);
  }

  /** Renames, enables or disables a profile (root admin). Disabling drops its backend sessions. */
  async update(caller: Caller, uuid: string, change: { name?: string; enabled?: boolean }): Promise<HsmProfileRow> {
    const p = await this.requireModifiable(caller, uuid);
    if (change.name !== undefined && change.name !== p.name) await this.assertNameFree(change.name, { accountId: p.account_id, domainId: p.domain_id });
    const patch = { ...(change.name !== undefined ? { name: change.name } : {}), ...(change.enabled !== undefined ? { enabled: change.enabled } : {}) };
    await this.deps.db.transaction(async (trx) => {
      if (Object.keys(patch).length) await trx('kms_hsm_profiles').where({ id: p.id }).update(patch);
      await this.deps.events.record({
        type: 'HSM.PROFILE.UPDATE', description: `Updated HSM profile ${change.name ?? p.name}${change.enabled === undefined ? '' : change.enabled ? ' (enabled)' : ' (disabled)'}`,
        actor: actorOf(caller), resourceType: 'HsmProfile', resourceId: p.uuid,
      }, trx);
    });
    if (change.enabled === false) await this.invalidate(p);
    return { ...p, ...patch };
  }

  /** Deletes a profile no key and no wrapped key uses (texts of reference §1.4); the default one stays. */
  async delete(caller: Caller, uuid: string): Promise<void> {
    const p = await this.requireModifiable(caller, uuid);
    const root = await this.deps.directory.domainByPath('/');
    if (p.protocol === 'database' && root && p.uuid === defaultProfileUuid(root.uuid)) throw paramError('Default database HSM profile cannot be deleted');
    await this.deps.db.transaction(async (trx) => {
      const keys = Number((await trx('kms_keys').where({ hsm_profile_id: p.id }).whereNull('removed').count({ n: '*' }).first())?.n ?? 0);
      if (keys > 0) throw paramError(`Cannot delete HSM profile '${p.name}': it is referenced by ${keys} KMS key(s). Please delete or reassign those keys first.`);
      const wrapped = Number((await trx('kms_wrapped_key as w').join('kms_kek_versions as v', 'v.id', 'w.kek_version_id')
        .where('v.hsm_profile_id', p.id).whereNull('w.removed').count({ n: '*' }).first())?.n ?? 0);
      if (wrapped > 0) {
        throw paramError(`Cannot delete HSM profile '${p.name}': it is referenced by ${wrapped} wrapped key(s) through KEK versions. Please wait for key rotation to complete or delete those volumes first.`);
      }
      await trx('kms_hsm_profile_details').where({ profile_id: p.id }).delete();
      await trx('kms_hsm_profiles').where({ id: p.id }).update({ removed: Date.now() });
      await this.deps.events.record({
        type: 'HSM.PROFILE.DELETE', description: `Deleted HSM profile ${p.name}`, actor: actorOf(caller), resourceType: 'HsmProfile', resourceId: p.uuid,
      }, trx);
    });
    await this.invalidate(p);
  }

  /**
   * The profile a key of `owner` in `zoneId` may use: visible to the caller (531), in scope for the
   * owner (validateProfileScopeForOwner, reference §1.5, applied even to root) and enabled (431).
   */
  async requireForKey(caller: Caller, uuid: string, owner: KeyOwner, zoneId: number): Promise<HsmProfileRow> {
    const p = await this.require(uuid);
    if (!(await this.canUse(caller, p))) throw permissionError(`Caller ${caller.accountName} does not have permission to use HSM profile ${uuid}`);
    if (!bool(p.is_public)) {
      if (p.account_id === null && p.domain_id !== owner.domainId) {
        throw paramError(`HSM profile '${p.name}' is domain-scoped and can only be used by accounts in its domain`);
      }
      if (p.account_id !== null && p.account_id !== owner.accountId) {
        throw paramError(`HSM profile '${p.name}' is owned by another account and cannot be used for this key's owner`);
      }
    }
    if (p.zone_id !== null && p.zone_id !== zoneId) throw paramError(`HSM profile '${p.name}' is scoped to another zone and cannot be used in this key's zone`);
    if (!bool(p.enabled)) throw paramError(`HSM profile is not enabled: ${p.name}`);
    return p;
  }

  /** Whether the caller may use (not modify) a profile: public, its domain's, or an owner it can access. */
  async canUse(caller: Caller, p: HsmProfileRow): Promise<boolean> {
    if (isRootAdmin(caller) || bool(p.is_public)) return true;
    if (p.account_id !== null) return this.deps.directory.canAccessOwner(caller, { accountId: p.account_id, domainId: p.domain_id });
    if (p.domain_id === caller.domainId) return true;
    return caller.role === 'DomainAdmin' && p.domain_id !== null && this.deps.directory.access.reachesDomain(caller, p.domain_id);
  }

  private async requireModifiable(caller: Caller, uuid: string): Promise<HsmProfileRow> {
    const p = await this.require(uuid);
    // Public and domain-scoped profiles need root admin (checkHSMProfileAccess with modify=true).
    const allowed = isRootAdmin(caller) ||
      (!bool(p.is_public) && p.account_id !== null && (await this.deps.directory.canAccessOwner(caller, { accountId: p.account_id, domainId: p.domain_id })));
    if (!allowed) throw permissionError(`Caller ${caller.accountName} does not have permission to modify HSM profile ${uuid}`);
    return p;
  }

  private async assertNameFree(name: string, owner: { accountId: number | null; domainId: number | null }): Promise<void> {
    const q = this.deps.db('kms_hsm_profiles').where({ name }).whereNull('removed');
    if (owner.accountId === null) q.whereNull('account_id').where('domain_id', owner.domainId ?? 0);
    else q.where('account_id', owner.accountId);
    if (await q.first()) throw paramError(`An HSM profile with name ${name} already exists for this owner`);
  }

  private async requireZone(uuid: string): Promise<{ id: number; uuid: string; name: string }> {
    const zone = await this.deps.db('data_center').where({ uuid }).whereNull('removed').first('id', 'uuid', 'name');
    if (!zone) throw paramError(`Unable to find zone by id ${uuid}`);
    return zone;
  }

  private async invalidate(p: HsmProfileRow): Promise<void> {
    if ((PROVIDER_KINDS as readonly string[]).includes(p.protocol)) {
      await this.deps.providers.get(p.protocol as ProviderKind).invalidateProfile(p.uuid).catch(() => undefined);
    }
  }
}

/** Probe failures: bad details, a missing token, a rejected PIN or an unloadable library are the operator's to fix (431). */
function probeFailure(name: string, e: unknown): unknown {
  if (!isKmsError(e) || e.kind === 'internal' || e.retryable) return e;
  return paramError(e.message.startsWith('HSM profile') ? e.message : `HSM profile ${name}: ${e.message}`);
}

const actorOf = (c: Caller) => ({ userId: c.userId, accountId: c.accountId, domainId: c.domainId });

/**
 * Records a change of a profile's health (the circuit opened or closed) as an HSM.PROFILE.HEALTH
 * event owned by the profile's account and domain. The reason names the failing call and code only.
 */
export async function recordHealthChange(db: Db, events: KmsDeps['events'], h: ProfileHealth): Promise<void> {
  const row: Pick<HsmProfileRow, 'account_id' | 'domain_id'> | undefined = await db('kms_hsm_profiles').where({ uuid: h.profileId }).first('account_id', 'domain_id');
  const description = h.health === 'Degraded'
    ? `HSM profile ${h.name} is degraded: requests using it fail fast until it answers again (${h.reason ?? 'not answering'})`
    : `HSM profile ${h.name} answers again and is healthy`;
  await events.record({
    type: 'HSM.PROFILE.HEALTH', level: h.health === 'Degraded' ? 'WARN' : 'INFO', description,
    actor: { accountId: row?.account_id ?? null, domainId: row?.domain_id ?? null }, resourceType: 'HsmProfile', resourceId: h.profileId,
  });
}
