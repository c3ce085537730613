import { createHash, randomUUID } from 'node:crypto';
import type { KmsDeps } from './deps';
import { isRootAdmin, type Caller } from '../identity/caller';
import type { ScopeRequest } from '../identity/directory';
import type { OwnerScope } from '../core/owner-scope';
import type { Page, PageWindow } from '../db/paging';
import type { Repositories } from '../db/repositories';
import type { HsmProfile, HsmProfileDetail, HsmProfileView } from '../db/repositories/hsm-profiles';
import type { ProfileHealth } from '../providers/circuit';
import { PROVIDER_KINDS, type HsmProfileConfig, type ProviderKind } from '../providers/provider';
import { isKmsError, KmsError, paramError, permissionError } from '../core/errors';
import { requireEnabledProfile, requireProfile } from './guards';
import { loadProfileConfig, storedDetailValue } from './hsm-profile-details';

export type { HsmProfile, HsmProfileDetail, HsmProfileView } from '../db/repositories/hsm-profiles';

/** What the profile service uses. */
export type HsmProfileDeps = Pick<KmsDeps, 'repos' | 'masterKey' | 'providers' | 'events' | 'directory'>;

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

/** listHSMProfiles filters (the owner scope and page come separately). */
export interface HsmProfileFilter extends Pick<ScopeRequest, 'account' | 'domainid' | 'listall'> {
  uuid?: string;
  zoneUuid?: string;
  protocol?: string;
  enabled?: boolean;
  isPublic?: boolean;
  keyword?: string;
}

/** A profile as listHSMProfiles shows it to one caller: details only where the caller may see them. */
export interface HsmProfileListItem {
  profile: HsmProfileView;
  /** undefined in the limited view of a shared profile. */
  details: HsmProfileDetail[] | undefined;
  health: ProfileHealthState;
}

/** Healthy, or Degraded while the profile's circuit is open. */
export type ProfileHealthState = 'Healthy' | 'Degraded';

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
export async function ensureDefaultHsmProfile(repos: Pick<Repositories, 'hsmProfiles' | 'domains' | 'accounts'>): Promise<void> {
  const { hsmProfiles } = repos;
  const root = await repos.domains.byPath('/');
  const admin = root && (await repos.accounts.byName(root.id, 'admin'));
  if (!root || !admin) throw new KmsError('internal', 'The ROOT domain and admin account must exist before the default HSM profile');
  const uuid = defaultProfileUuid(root.uuid);
  if (await hsmProfiles.anyByUuid(uuid)) return;
  try {
    await hsmProfiles.insert({
      uuid, name: DEFAULT_PROFILE_NAME, protocol: 'database', accountId: admin.id, domainId: root.id, zoneId: null,
      vendorName: null, enabled: false, isPublic: true, created: new Date(),
    });
  } catch (e) {
    if (!(await hsmProfiles.anyByUuid(uuid))) throw e;
  }
}

/** A profile as a provider needs it (sensitive details decrypted): never log or return it. */
export async function profileConfigFor(deps: Pick<KmsDeps, 'repos' | 'masterKey'>, profileId: number): Promise<HsmProfileConfig> {
  const profile = requireProfile(await deps.repos.hsmProfiles.byId(profileId), profileId);
  return loadProfileConfig(deps.repos, deps.masterKey, profile);
}

/** Whether responses to this caller may carry the profile's details (reference §1.2 "limited" view). */
export function showsDetails(caller: Caller, p: Pick<HsmProfile, 'isPublic' | 'accountId'>): boolean {
  return isRootAdmin(caller) || !p.isPublic || p.accountId === caller.accountId;
}

/**
 * HSM profiles: the connection settings of a KEK backend, scoped to a zone, a domain, an account,
 * or public. Sensitive details are stored encrypted under the master key. Holds no state.
 */
export class HsmProfiles {
  constructor(private readonly deps: HsmProfileDeps) {}

  /** A live profile by uuid, or a 431. */
  async require(uuid: string): Promise<HsmProfile> {
    return requireProfile(await this.deps.repos.hsmProfiles.byUuid(uuid), uuid);
  }

  /** A profile as a provider needs it (sensitive details decrypted): never log or return it. */
  configFor(profileId: number): Promise<HsmProfileConfig> {
    return profileConfigFor(this.deps, profileId);
  }

  /** Every live enabled profile (readiness probes them). */
  enabled(): Promise<HsmProfile[]> {
    return this.deps.repos.hsmProfiles.enabled();
  }

  /** Healthy, or Degraded while the profile's circuit is open (as seen by this process). */
  healthOf(uuid: string): ProfileHealthState {
    return this.deps.providers.isDegraded(uuid) ? 'Degraded' : 'Healthy';
  }

  /** The response view of one live profile. */
  async view(id: number): Promise<HsmProfileView> {
    const view = await this.deps.repos.hsmProfiles.view(id);
    // The row was just written or read by this request: gone now is a race, not the caller's input.
    if (!view) throw new KmsError('internal', `HSM profile ${id} was removed while its answer was written`);
    return view;
  }

  /** One profile as this caller sees it (details masked by the response, or left out in the limited view). */
  async item(caller: Caller, id: number): Promise<HsmProfileListItem> {
    const profile = await this.view(id);
    const details = showsDetails(caller, profile) ? (await this.detailsOf([profile.id])).get(profile.id) ?? [] : undefined;
    return { profile, details, health: this.healthOf(profile.uuid) };
  }

  /** Details of the given profiles, by profile id (values as stored: mask before showing). */
  detailsOf(profileIds: number[]): Promise<Map<number, HsmProfileDetail[]>> {
    return this.deps.repos.hsmProfiles.detailsOf(profileIds);
  }

  /**
   * Validates the details, probes the backend with them (library loads, token found, PIN accepted)
   * and only then stores the profile. Bad details, a missing token or a rejected PIN are 431; a
   * backend that is down keeps its 530. Nothing is stored on failure.
   */
  async create(caller: Caller, input: CreateHsmProfileInput): Promise<HsmProfile> {
    const { repos, directory } = this.deps;
    const protocol = (input.protocol?.trim() || 'pkcs11').toLowerCase();
    if (!(PROVIDER_KINDS as readonly string[]).includes(protocol)) throw paramError(`No provider found for protocol: ${input.protocol}`);
    if (input.isPublic && !isRootAdmin(caller)) throw permissionError('Only root admins can create system HSM profiles');
    const zoneId = input.zoneUuid ? await this.requireZone(input.zoneUuid) : undefined;
    let owner: { accountId: number | null; domainId: number };
    if (input.account || input.projectUuid) {
      const account = await directory.owningAccount(caller, { account: input.account, domainid: input.domainUuid, projectid: input.projectUuid });
      owner = { accountId: account.id, domainId: account.domainId };
    } else if (input.domainUuid) {
      owner = { accountId: null, domainId: (await directory.accessibleDomain(caller, input.domainUuid)).id };
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
    const profile = {
      uuid, name: input.name, protocol, accountId: owner.accountId, domainId: owner.domainId, zoneId: zoneId ?? null,
      vendorName: input.vendorName ?? null, enabled: true, isPublic: input.isPublic, created: new Date(),
    };
    try {
      const id = await repos.transaction(async (tx) => {
        const details = Object.entries(input.details).map(([name, value]) => ({ name, value: storedDetailValue(this.deps.masterKey, uuid, name, value) }));
        const newId = await tx.hsmProfiles.insert(profile, details);
        await this.deps.events.record({
          type: 'HSM.PROFILE.CREATE', description: `Created HSM profile ${input.name} (${protocol})`, actor: actorOf(caller),
          resourceType: 'HsmProfile', resourceId: uuid,
        }, tx);
        return newId;
      });
      return { ...profile, id, removed: null };
    } catch (e) {
      await provider.invalidateProfile(uuid).catch(() => undefined);
      throw e;
    }
  }

  /**
   * The profiles the caller may see (reference §1.2) in `scope`, one page, sorted by id, each as the
   * caller sees it. Without an owner filter the caller's domain's shared profiles are listed too,
   * and with listall or ispublic the public ones.
   */
  async list(caller: Caller, scope: OwnerScope, f: HsmProfileFilter, page: PageWindow): Promise<Page<HsmProfileListItem>> {
    const ownerFilter = !!(f.account || f.domainid);
    const zoneId = f.zoneUuid ? await this.requireZone(f.zoneUuid) : undefined;
    const { rows, count } = await this.deps.repos.hsmProfiles.list(scope, {
      uuid: f.uuid, zoneId, protocol: f.protocol?.toLowerCase(), enabled: f.enabled, isPublic: f.isPublic, keyword: f.keyword,
      // With projectid the project's profiles replace the caller's own; the usable shared ones stay.
      shared: ownerFilter ? undefined : { domainId: caller.domainId, withPublic: !!(f.listall || f.isPublic) },
    }, page);
    const details = await this.detailsOf(rows.filter((r) => showsDetails(caller, r)).map((r) => r.id));
    return {
      rows: rows.map((r) => ({ profile: r, details: showsDetails(caller, r) ? details.get(r.id) ?? [] : undefined, health: this.healthOf(r.uuid) })),
      count,
    };
  }

  /** Renames, enables or disables a profile (root admin). Disabling drops its backend sessions. */
  async update(caller: Caller, uuid: string, change: { name?: string; enabled?: boolean }): Promise<HsmProfile> {
    const p = await this.requireModifiable(caller, uuid);
    if (change.name !== undefined && change.name !== p.name) await this.assertNameFree(change.name, { accountId: p.accountId, domainId: p.domainId });
    const patch = { ...(change.name !== undefined ? { name: change.name } : {}), ...(change.enabled !== undefined ? { enabled: change.enabled } : {}) };
    await this.deps.repos.transaction(async (tx) => {
      await tx.hsmProfiles.update(p.id, patch);
      await this.deps.events.record({
        type: 'HSM.PROFILE.UPDATE', description: `Updated HSM profile ${change.name ?? p.name}${change.enabled === undefined ? '' : change.enabled ? ' (enabled)' : ' (disabled)'}`,
        actor: actorOf(caller), resourceType: 'HsmProfile', resourceId: p.uuid,
      }, tx);
    });
    if (change.enabled === false) await this.invalidate(p);
    return { ...p, ...patch };
  }

  /** Deletes a profile no key and no wrapped key uses (texts of reference §1.4); the default one stays. */
  async delete(caller: Caller, uuid: string): Promise<void> {
    const p = await this.requireModifiable(caller, uuid);
    const root = await this.deps.repos.domains.byPath('/');
    if (p.protocol === 'database' && root && p.uuid === defaultProfileUuid(root.uuid)) throw paramError('Default database HSM profile cannot be deleted');
    await this.deps.repos.transaction(async (tx) => {
      const { keys, wrappedKeys } = await tx.hsmProfiles.usage(p.id);
      if (keys > 0) throw paramError(`Cannot delete HSM profile '${p.name}': it is referenced by ${keys} KMS key(s). Please delete or reassign those keys first.`);
      if (wrappedKeys > 0) {
        throw paramError(`Cannot delete HSM profile '${p.name}': it is referenced by ${wrappedKeys} wrapped key(s) through KEK versions. Please wait for key rotation to complete or delete those volumes first.`);
      }
      await tx.hsmProfiles.remove(p.id, new Date());
      await this.deps.events.record({
        type: 'HSM.PROFILE.DELETE', description: `Deleted HSM profile ${p.name}`, actor: actorOf(caller), resourceType: 'HsmProfile', resourceId: p.uuid,
      }, tx);
    });
    await this.invalidate(p);
  }

  /**
   * The profile a key of `owner` in `zoneId` may use: visible to the caller (531), in scope for the
   * owner (validateProfileScopeForOwner, reference §1.5, applied even to root) and enabled (431).
   */
  async requireForKey(caller: Caller, uuid: string, owner: KeyOwner, zoneId: number): Promise<HsmProfile> {
    const p = await this.require(uuid);
    if (!(await this.canUse(caller, p))) throw permissionError(`Caller ${caller.accountName} does not have permission to use HSM profile ${uuid}`);
    if (!p.isPublic) {
      if (p.accountId === null && p.domainId !== owner.domainId) {
        throw paramError(`HSM profile '${p.name}' is domain-scoped and can only be used by accounts in its domain`);
      }
      if (p.accountId !== null && p.accountId !== owner.accountId) {
        throw paramError(`HSM profile '${p.name}' is owned by another account and cannot be used for this key's owner`);
      }
    }
    if (p.zoneId !== null && p.zoneId !== zoneId) throw paramError(`HSM profile '${p.name}' is scoped to another zone and cannot be used in this key's zone`);
    return requireEnabledProfile(p);
  }

  /** Whether the caller may use (not modify) a profile: public, its domain's, or an owner it can access. */
  async canUse(caller: Caller, p: HsmProfile): Promise<boolean> {
    if (isRootAdmin(caller) || p.isPublic) return true;
    if (p.accountId !== null) return this.deps.directory.canAccessOwner(caller, { accountId: p.accountId, domainId: p.domainId });
    if (p.domainId === caller.domainId) return true;
    return caller.role === 'DomainAdmin' && p.domainId !== null && this.deps.directory.access.reachesDomain(caller, p.domainId);
  }

  private async requireModifiable(caller: Caller, uuid: string): Promise<HsmProfile> {
    const p = await this.require(uuid);
    // Public and domain-scoped profiles need root admin (checkHSMProfileAccess with modify=true).
    const allowed = isRootAdmin(caller) ||
      (!p.isPublic && p.accountId !== null && (await this.deps.directory.canAccessOwner(caller, { accountId: p.accountId, domainId: p.domainId })));
    if (!allowed) throw permissionError(`Caller ${caller.accountName} does not have permission to modify HSM profile ${uuid}`);
    return p;
  }

  private async assertNameFree(name: string, owner: { accountId: number | null; domainId: number | null }): Promise<void> {
    if (await this.deps.repos.hsmProfiles.nameTaken(name, owner)) throw paramError(`An HSM profile with name ${name} already exists for this owner`);
  }

  private async requireZone(uuid: string): Promise<number> {
    const id = await this.deps.repos.kmsKeys.liveZoneId(uuid);
    if (id === undefined) throw paramError(`Unable to find zone by id ${uuid}`);
    return id;
  }

  private async invalidate(p: HsmProfile): Promise<void> {
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
export async function recordHealthChange(deps: Pick<KmsDeps, 'repos' | 'events'>, h: ProfileHealth): Promise<void> {
  const row = await deps.repos.hsmProfiles.anyByUuid(h.profileId);
  const description = h.health === 'Degraded'
    ? `HSM profile ${h.name} is degraded: requests using it fail fast until it answers again (${h.reason ?? 'not answering'})`
    : `HSM profile ${h.name} answers again and is healthy`;
  await deps.events.record({
    type: 'HSM.PROFILE.HEALTH', level: h.health === 'Degraded' ? 'WARN' : 'INFO', description,
    actor: { accountId: row?.accountId ?? null, domainId: row?.domainId ?? null }, resourceType: 'HsmProfile', resourceId: h.profileId,
  });
}
