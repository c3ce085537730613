import { randomUUID } from 'node:crypto';
import type { KmsDeps } from './deps';
import type { Repositories } from '../db/repositories';
import type { Caller } from '../identity/caller';
import type { OwnerScope } from '../core/owner-scope';
import type { Page, PageWindow } from '../db/paging';
import type { KekVersion } from '../db/repositories/kek-versions';
import type { KmsKey, KmsKeyView } from '../db/repositories/kms-keys';
import type { KekBits, KekProvider, KekRef, ProviderKind } from '../providers/provider';
import { isKeyBits, KEY_BITS_TEXT, type KeyBits } from '../core/key-bits';
import { kekLabel } from './aad';
import { isKmsError, KmsError, paramError, permissionError } from '../core/errors';
import { keyNotFound, requireKey } from './guards';
import { HsmProfiles, profileConfigFor, type HsmProfileDeps } from './hsm-profiles';
import { NEW_VERSION_STATUS } from './kek-states';
import { KEK_DESTROY_DELAY_SETTING } from './kek-states';
import { kekVersionSummaries, type KekVersionSummary } from './rewrap-progress';
import { KEY_ALGORITHM, KEY_PURPOSE } from './types';

export type { KmsKey, KmsKeyView } from '../db/repositories/kms-keys';

/** What the key service uses. */
export type KmsKeyDeps = HsmProfileDeps & Pick<KmsDeps, 'logger' | 'settings'>;

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
  /** A second HSM profile that also wraps every DEK of the key (README "Standby HSM"). */
  standbyProfileUuid?: string;
}

/** listKMSKeys filters (the owner scope and page come separately). */
export interface KmsKeyFilter {
  uuid?: string;
  zoneUuid?: string;
  profileUuid?: string;
  enabled?: boolean;
  keyword?: string;
}

/** A key as responses show it: the view and its KEK versions, oldest first. */
export interface KmsKeyItem {
  key: KmsKeyView;
  versions: KekVersionSummary[];
  /** Live wrapped DEKs that also have a standby blob. */
  standbyWrappedKeys: number;
}

/** The label of a version's standby KEK: the primary label with a suffix, so both may share one token. */
export const standbyKekLabel = (primaryLabel: string): string => `${primaryLabel}-standby`;

/** 431 "Key bits must be 128, 192, or 256" unless `bits` is one of KEY_BITS. */
export function assertKeyBits(bits: number): asserts bits is KeyBits {
  if (!isKeyBits(bits)) throw paramError(`Key bits must be ${KEY_BITS_TEXT}`);
}

/**
 * A backend call of a key command (a KEK created or destroyed). A PIN the backend refuses here is
 * the backend's failure, not the API caller's credentials: the kind is set here, once, to
 * 'provider' (530 with the command's prefix), as CloudStack wraps every KMSException.
 */
async function keyCommandBackend<T>(call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (e) {
    if (isKmsError(e) && e.kind === 'auth') throw new KmsError('provider', e.message, { retryable: false, cause: e });
    throw e;
  }
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

  /** A live key by uuid; undefined when absent. */
  byUuid(uuid: string): Promise<KmsKey | undefined> {
    return this.deps.repos.kmsKeys.byUuid(uuid);
  }

  /** A live key by uuid, or 431 "KMS key not found: <uuid>". */
  async require(uuid: string): Promise<KmsKey> {
    return requireKey(await this.byUuid(uuid), uuid);
  }

  /** Every live KEK version of a key, oldest first. */
  versionsOf(keyId: number): Promise<KekVersion[]> {
    return this.deps.repos.kekVersions.liveOf(keyId);
  }

  /** The retention of Archived KEKs (kms.kek.destroy.delay.days), in ms. */
  private async destroyDelayMs(): Promise<number> {
    return (await this.deps.settings.getNumber(KEK_DESTROY_DELAY_SETTING)) * 86_400_000;
  }

  /** The response view of one key with its versions. */
  async item(id: number): Promise<KmsKeyItem> {
    const key = await this.deps.repos.kmsKeys.view(id);
    // The row was just written or read by this request: gone now is a race, not the caller's input.
    if (!key) throw new KmsError('internal', `KMS key ${id} was removed while its answer was written`);
    return {
      key, versions: (await kekVersionSummaries(this.deps.repos.kekVersions, [id], await this.destroyDelayMs())).get(id) ?? [],
      standbyWrappedKeys: (await this.deps.repos.kmsKeys.standbyCoverage([id])).get(id) ?? 0,
    };
  }

  /** A live key the caller may act on: 431 "KMS key not found: <id>", or 531. */
  async requireAccessible(caller: Caller, uuid: string): Promise<KmsKey> {
    const key = await this.require(uuid);
    if (!(await this.deps.directory.canAccessOwner(caller, { accountId: key.accountId, domainId: key.domainId }))) {
      throw permissionError(`Caller ${caller.accountName} does not have permission to operate on KMS key ${uuid}`);
    }
    return key;
  }

  /** The backend a profile speaks. */
  providerOf(protocol: string): KekProvider {
    return this.deps.providers.get(protocol as ProviderKind);
  }

  /** A backend reference to one KEK of a key (loads and decrypts its profile). */
  async kekRef(profileId: number, label: string): Promise<KekRef> {
    return { profile: await profileConfigFor(this.deps, profileId), label };
  }

  /** Makes a KEK in its backend for a key command (createKMSKey, rotateKMSKey). */
  createKek(kek: KekRef, bits: KekBits): Promise<void> {
    return keyCommandBackend(this.providerOf(kek.profile.protocol).createKek(kek, bits));
  }

  /** Destroys a KEK in its backend for a key command (deleteKMSKey). */
  destroyKek(kek: KekRef): Promise<void> {
    return keyCommandBackend(this.providerOf(kek.profile.protocol).destroyKek(kek));
  }

  /**
   * Creates a key: the version-1 KEK is made in the backend first (label kekLabel(..., 1)), then the
   * key and its Active version are inserted in one transaction; if that fails the KEK is destroyed.
   */
  async create(caller: Caller, input: CreateKmsKeyInput): Promise<KmsKey> {
    const { repos, directory } = this.deps;
    assertKeyBits(input.keyBits);
    const owner = await directory.owningAccount(caller, { account: input.account, domainid: input.domainUuid, projectid: input.projectUuid });
    const zoneId = await repos.kmsKeys.liveZoneId(input.zoneUuid);
    if (zoneId === undefined) throw paramError(`Unable to find zone by id ${input.zoneUuid}`);
    const profile = await this.profiles.requireForKey(caller, input.profileUuid, { accountId: owner.id, domainId: owner.domainId }, zoneId);
    const standbyProfile = input.standbyProfileUuid
      ? await this.standbyProfileFor(caller, input.standbyProfileUuid, { accountId: owner.id, domainId: owner.domainId }, zoneId, profile.id)
      : undefined;
    await this.assertNameFree(owner.id, input.name);

    const uuid = randomUUID();
    const label = kekLabel({ domainId: owner.domainId, accountId: owner.id, keyUuid: uuid }, 1);
    const kek = await this.kekRef(profile.id, label);
    await this.createKek(kek, input.keyBits);
    const standbyKek = standbyProfile ? await this.kekRef(standbyProfile.id, standbyKekLabel(label)) : undefined;
    if (standbyKek) {
      try {
        await this.createKek(standbyKek, input.keyBits);
      } catch (e) {
        await this.destroyOrphan(kek);
        throw e;
      }
    }
    const now = new Date();
    const key = {
      uuid, name: input.name, description: input.description ?? null, kekLabel: label, purpose: KEY_PURPOSE, accountId: owner.id,
      domainId: owner.domainId, zoneId, algorithm: KEY_ALGORITHM, keyBits: input.keyBits, enabled: true,
      hsmProfileId: profile.id, standbyHsmProfileId: standbyProfile?.id ?? null, created: now,
    };
    try {
      const id = await repos.transaction(async (tx) => {
        const keyId = await tx.kmsKeys.insert(key);
        await tx.kekVersions.insert({
          uuid: randomUUID(), kmsKeyId: keyId, versionNumber: 1, kekLabel: label, status: NEW_VERSION_STATUS, keyBits: input.keyBits,
          hsmProfileId: profile.id, standbyHsmProfileId: standbyProfile?.id ?? null, standbyKekLabel: standbyKek?.label ?? null, created: now,
        });
        await this.deps.events.record({
          type: 'KMS.KEY.CREATE', description: `Created KMS key ${input.name} (${uuid}) with HSM profile ${profile.name}${standbyProfile ? ` and standby HSM profile ${standbyProfile.name}` : ''}`,
          actor: { userId: caller.userId, accountId: owner.id, domainId: owner.domainId }, resourceType: 'KmsKey', resourceId: uuid,
        }, tx);
        return keyId;
      });
      return { ...key, id, removed: null };
    } catch (e) {
      await this.destroyOrphan(kek);
      if (standbyKek) await this.destroyOrphan(standbyKek);
      throw e;
    }
  }

  /**
   * A standby profile for a key: the same access, scope and enabled checks as its primary profile
   * (createKMSKey's hsmprofileid), and not the primary profile itself.
   */
  async standbyProfileFor(caller: Caller, uuid: string, owner: { accountId: number; domainId: number }, zoneId: number, primaryProfileId: number) {
    const standby = await this.profiles.requireForKey(caller, uuid, owner, zoneId);
    if (standby.id === primaryProfileId) throw paramError(`The standby HSM profile ${standby.name} must differ from the key's HSM profile: choose a profile of another HSM or backend`);
    return standby;
  }

  /**
   * Adds a standby profile to an existing key (updateKMSKey standbyhsmprofileid): a standby KEK is
   * made for the Active version, then the key and the version name it in one transaction. The
   * DEKs already stored get their standby blobs from the rewrap worker's background fill.
   */
  private async addStandby(caller: Caller, key: KmsKey, standbyUuid: string): Promise<{ name: string } | undefined> {
    const { repos } = this.deps;
    const current = key.standbyHsmProfileId ? await repos.hsmProfiles.byId(key.standbyHsmProfileId) : undefined;
    if (current && current.uuid === standbyUuid) return undefined;
    if (current) throw paramError(`KMS key ${key.uuid} already has the standby HSM profile ${current.name}; a key's standby cannot be replaced`);
    const standby = await this.standbyProfileFor(caller, standbyUuid, { accountId: key.accountId, domainId: key.domainId }, key.zoneId, key.hsmProfileId);
    const active = (await repos.kekVersions.liveOf(key.id)).find((v) => v.status === 'Active');
    if (!active) throw paramError(`KMS key ${key.uuid} has no Active KEK version; try again`);
    const kek = await this.kekRef(standby.id, standbyKekLabel(active.kekLabel));
    const bits = active.keyBits;
    assertKeyBits(bits);
    await this.createKek(kek, bits);
    try {
      await repos.transaction(async (tx) => {
        await tx.kmsKeys.setStandby(key.id, standby.id);
        await tx.kekVersions.setStandby(active.id, { hsmProfileId: standby.id, kekLabel: kek.label });
      });
    } catch (e) {
      await this.destroyOrphan(kek);
      throw e;
    }
    return { name: standby.name };
  }

  /** One page of the keys in `scope` (listKMSKeys; purpose is always volume), by id, with their versions. */
  async list(scope: OwnerScope, f: KmsKeyFilter, page: PageWindow): Promise<Page<KmsKeyItem>> {
    const { rows, count } = await this.deps.repos.kmsKeys.list(scope, { ...f, purpose: KEY_PURPOSE }, page);
    const versions = await kekVersionSummaries(this.deps.repos.kekVersions, rows.map((r) => r.id), await this.destroyDelayMs());
    const covered = await this.deps.repos.kmsKeys.standbyCoverage(rows.filter((r) => r.standbyHsmProfileId).map((r) => r.id));
    return { rows: rows.map((key) => ({ key, versions: versions.get(key.id) ?? [], standbyWrappedKeys: covered.get(key.id) ?? 0 })), count };
  }

  /** Renames, describes, enables or disables a key. */
  async update(caller: Caller, uuid: string, change: { name?: string; description?: string; enabled?: boolean; standbyProfileUuid?: string }): Promise<KmsKey> {
    const key = await this.requireAccessible(caller, uuid);
    if (change.name !== undefined && change.name !== key.name) await this.assertNameFree(key.accountId, change.name);
    const standby = change.standbyProfileUuid !== undefined ? await this.addStandby(caller, key, change.standbyProfileUuid) : undefined;
    const patch = {
      ...(change.name !== undefined ? { name: change.name } : {}),
      ...(change.description !== undefined ? { description: change.description } : {}),
      ...(change.enabled !== undefined ? { enabled: change.enabled } : {}),
    };
    await this.deps.repos.transaction(async (tx) => {
      await tx.kmsKeys.update(key.id, patch);
      await this.deps.events.record({
        type: 'KMS.KEY.UPDATE', description: `Updated KMS key ${change.name ?? key.name} (${key.uuid})${standby ? `: added the standby HSM profile ${standby.name}` : ''}`,
        actor: { userId: caller.userId, accountId: key.accountId, domainId: key.domainId }, resourceType: 'KmsKey', resourceId: key.uuid,
      }, tx);
    });
    return { ...key, ...patch, ...(standby ? { standbyHsmProfileId: (await this.require(uuid)).standbyHsmProfileId } : {}) };
  }

  /** 431 while wrapped keys or volumes still use the key (texts of reference §1.8). */
  async assertDeletable(key: Pick<KmsKey, 'id' | 'uuid'>, tx: Pick<Repositories, 'kmsKeys'> = this.deps.repos): Promise<void> {
    const { wrappedKeys, volumes } = await tx.kmsKeys.usage(key.id);
    if (wrappedKeys > 0) throw paramError(`Cannot delete KMS key: ${key.uuid}. ${wrappedKeys} wrapped key(s) still reference this key`);
    if (volumes > 0) throw paramError(`Cannot delete KMS key: ${key.uuid}. There are Volumes which still reference this key`);
  }

  /**
   * Deletes a key (the deleteKMSKey job): soft-removes it with its versions in one transaction that
   * re-checks the guards, then destroys every KEK version in its backend; a failed destroy is a WARN
   * event, not a failure. `resume` (a re-run job) finishes the destroys of an already removed key.
   */
  async delete(caller: Caller, uuid: string, opts: { resume?: boolean } = {}): Promise<void> {
    const { repos } = this.deps;
    const removed = opts.resume ? await repos.kmsKeys.removedByUuid(uuid) : undefined;
    const key = removed ?? (await this.requireAccessible(caller, uuid));
    const versions = await repos.kekVersions.allOf(key.id);
    const actor = { userId: caller.userId, accountId: key.accountId, domainId: key.domainId };
    if (!removed) {
      await repos.transaction(async (tx) => {
        // Lock the key's version rows first: a volume or migration storing a DEK holds the same lock
        // on its version row (WrappedKeys.assertVersionUsable), so the counts below see its row, or
        // it sees the key removed and stores nothing.
        await tx.kekVersions.lockAllOf(key.id);
        await this.assertDeletable(key, tx);
        const now = new Date();
        if (!(await tx.kmsKeys.markRemoved(key.id, now))) throw keyNotFound(uuid);
        await tx.kekVersions.removeAllOf(key.id, now);
        await this.deps.events.record({ type: 'KMS.KEY.DELETE', description: `Deleted KMS key ${key.name} (${key.uuid})`, actor, resourceType: 'KmsKey', resourceId: key.uuid }, tx);
      });
    }
    const keks = versions.flatMap((v) => [
      { profileId: v.hsmProfileId, label: v.kekLabel },
      ...(v.standbyHsmProfileId && v.standbyKekLabel ? [{ profileId: v.standbyHsmProfileId, label: v.standbyKekLabel }] : []),
    ]);
    for (const v of keks) {
      try {
        await this.destroyKek(await this.kekRef(v.profileId, v.label));
      } catch (e) {
        const reason = e instanceof Error ? e.message : String(e);
        this.deps.logger.warn('could not destroy KEK of deleted KMS key', { key: key.uuid, label: v.label, error: reason });
        await this.deps.events.record({
          type: 'KMS.KEY.DELETE', level: 'WARN', description: `Failed to delete KEK ${v.label} of KMS key ${key.uuid} from its backend: ${reason}`,
          actor, resourceType: 'KmsKey', resourceId: key.uuid,
        });
      }
    }
  }

  /**
   * Destroys a KEK whose rows were never written, unless a version row names its label (another
   * writer won a race for the same label: its KEK must stay). Failures are logged, not thrown.
   */
  async destroyOrphan(kek: KekRef): Promise<void> {
    try {
      if (await this.deps.repos.kekVersions.labelTaken(kek.label)) return;
      await this.providerOf(kek.profile.protocol).destroyKek(kek);
    } catch (e) {
      this.deps.logger.warn('could not destroy orphan KEK', { label: kek.label, error: e instanceof Error ? e.message : String(e) });
    }
  }

  private async assertNameFree(accountId: number, name: string): Promise<void> {
    if (await this.deps.repos.kmsKeys.nameTaken(accountId, name)) {
      throw paramError(`A KMS key with name ${name} already exists in this account`);
    }
  }
}
