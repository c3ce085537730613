import { randomUUID } from 'node:crypto';
import type { KmsDeps } from './deps';
import type { Caller } from '../identity/caller';
import type { Volume } from '../db/repositories/volumes';
import type { KmsKey } from '../db/repositories/kms-keys';
import { requireKey, requireUsableKey } from './guards';
import { KmsError, paramError, permissionError } from '../core/errors';
import { CUSTOM_DISK_SIZE_GB, DiskOfferings, type DiskOffering } from './disk-offerings';
import { Passphrases } from './passphrases';
import { using } from '../core/secret-bytes';
import { VersionArchivedError, WrappedKeys, type KekVersionContext } from './wrapped-keys';

export type { Volume } from '../db/repositories/volumes';

export interface CreateVolumeInput {
  name: string;
  zoneUuid: string;
  /** The disk offering: its size (or `sizeGb` when customized) and whether the volume is encrypted. */
  diskOfferingUuid?: string;
  /** Without a disk offering: the documented shortcut for an encrypted volume (implied by kmsKeyUuid). */
  encrypt: boolean;
  kmsKeyUuid?: string;
  account?: string;
  domainUuid?: string;
  /** The project owning the volume (its account); not with account. */
  projectUuid?: string;
  sizeGb?: number;
}

const DEK_BYTES_SETTING = 'kms.dek.size.bits' as const;

/** The volume size in GB: the offering's, or for a customized offering the requested one. */
function sizeFromOffering(offering: DiskOffering, requestedGb: number | undefined): number {
  if (!offering.customized) {
    if (requestedGb !== undefined && requestedGb !== offering.diskSizeGb) {
      throw paramError(`Disk offering ${offering.name} has a fixed size of ${offering.diskSizeGb} GB; leave size out, or choose a customized disk offering`);
    }
    return offering.diskSizeGb;
  }
  if (requestedGb === undefined) throw paramError(`Disk offering ${offering.name} is customized: give size, in GB (${CUSTOM_DISK_SIZE_GB.min} to ${CUSTOM_DISK_SIZE_GB.max})`);
  if (requestedGb < CUSTOM_DISK_SIZE_GB.min || requestedGb > CUSTOM_DISK_SIZE_GB.max) {
    throw paramError(`Volume size: ${requestedGb}GB is out of allowed range. Max: ${CUSTOM_DISK_SIZE_GB.max} Min:${CUSTOM_DISK_SIZE_GB.min}`);
  }
  return requestedGb;
}

/**
 * Volumes and their secrets: a volume with a KMS key gets a fresh DEK wrapped by the key's Active
 * KEK version; an encrypted volume without one gets a legacy passphrase under the master key.
 */
export class Volumes {
  readonly wrappedKeys: WrappedKeys;
  readonly passphrases: Passphrases;

  constructor(private readonly deps: KmsDeps) {
    this.wrappedKeys = new WrappedKeys(deps);
    this.passphrases = new Passphrases(deps.masterKey);
  }

  /**
   * The KMS key checks of a volume (the shared guards of src/kms/guards.ts): the key exists, then
   * the caller's own checks (`then`), then it is enabled.
   */
  private async usableKey(keyUuid: string, then: (key: KmsKey) => Promise<void>): Promise<KmsKey> {
    const key = requireKey(await this.deps.repos.kmsKeys.byUuid(keyUuid), keyUuid);
    await then(key);
    return requireUsableKey(key, 'volume encryption');
  }

  /**
   * A KMS key the caller may use for a volume in zone `zoneId` (reference/cloudstack-kms-4.23.md §1.11
   * checkKmsKeyForVolumeEncryption): caller access, same zone, key and profile enabled.
   */
  async keyForVolume(caller: Caller, keyUuid: string, zone: { id: number; uuid: string }): Promise<KmsKey> {
    return this.usableKey(keyUuid, async (key) => {
      if (!(await this.deps.directory.canAccessOwner(caller, { accountId: key.accountId, domainId: key.domainId }))) {
        throw permissionError(`Account ${caller.accountName} does not have permission to use KMS key ${keyUuid}`);
      }
      if (key.zoneId !== zone.id) {
        const keyZone = await this.deps.repos.zones.uuidOf(key.zoneId);
        throw paramError(`KMS key belongs to zone ${keyZone ?? key.zoneId} but the target resource is in zone ${zone.uuid}`);
      }
    });
  }

  async create(caller: Caller, input: CreateVolumeInput): Promise<Volume> {
    const { repos, directory, settings } = this.deps;
    const owner = await directory.owningAccount(caller, { account: input.account, domainid: input.domainUuid, projectid: input.projectUuid });
    const zone = await repos.zones.findLive(input.zoneUuid);
    if (!zone) throw paramError(`Unable to find zone by id ${input.zoneUuid}`);
    const offering = input.diskOfferingUuid ? await new DiskOfferings(this.deps).forNewVolume(caller, input.diskOfferingUuid, zone.id, owner.domainId) : undefined;
    const sizeGb = offering ? sizeFromOffering(offering, input.sizeGb) : input.sizeGb ?? 0;
    if (offering && !offering.encrypt && (input.kmsKeyUuid || input.encrypt)) {
      throw paramError(`Disk offering ${offering.name} (${offering.uuid}) does not encrypt volumes; choose a disk offering with encrypt=true to use ${input.kmsKeyUuid ? 'a KMS key' : 'encrypt=true'}`);
    }
    const key = input.kmsKeyUuid ? await this.keyForVolume(caller, input.kmsKeyUuid, zone) : undefined;
    // The volume's owner must own the key: otherwise another account could disable, rotate or
    // delete the key that protects this volume (migrateVolumesToKMS has the same rule).
    if (key && key.accountId !== owner.id) {
      throw paramError(`KMS key ${key.uuid} belongs to another account than the volume's owner ${owner.name}`);
    }
    const uuid = randomUUID();
    const encrypted = offering ? offering.encrypt : input.encrypt || key !== undefined;

    // The backend call happens before the transaction; a failed insert leaves only an unused blob
    // behind. If the version was archived in between (rotated and drained), start again on the new one.
    let wrapped: { version: KekVersionContext; blob: Buffer; standbyBlob: Buffer | null } | undefined;
    let volume: Volume | undefined;
    for (let attempt = 1; !volume; attempt++) {
      try {
        if (key) {
          const version = await this.wrappedKeys.activeVersion(key.id);
          const bits = await settings.getNumber(DEK_BYTES_SETTING, { zoneId: zone.id, domainId: owner.domainId, accountId: owner.id });
          const blob = await this.wrappedKeys.generate(version, uuid, bits / 8);
          wrapped = { version, blob, standbyBlob: await this.standbyBlob(version, uuid, blob, { userId: caller.userId, accountId: owner.id, domainId: owner.domainId }) };
        }
        volume = await repos.transaction(async (tx) => {
          const wrappedKeyId = wrapped ? await this.wrappedKeys.insert(tx, wrapped.version, { zoneId: zone.id, ownerUuid: uuid, blob: wrapped.blob, standbyBlob: wrapped.standbyBlob }) : null;
          const passphraseId = encrypted && !key ? await this.passphrases.create(tx) : null;
          const row = {
            uuid, name: input.name, accountId: owner.id, domainId: owner.domainId, zoneId: zone.id, size: sizeGb * 1024 ** 3,
            state: 'Allocated', encryptFormat: encrypted ? 'LUKS' : null, passphraseId, kmsKeyId: key?.id ?? null,
            wrappedKeyId, diskOfferingId: offering?.id ?? null, created: new Date(),
          };
          const id = await tx.volumes.insert(row);
          return { ...row, id, removed: null } satisfies Volume;
        });
      } catch (err) {
        if (attempt >= 3 || !(err instanceof VersionArchivedError)) throw err;
      }
    }
    const actor = { userId: caller.userId, accountId: owner.id, domainId: owner.domainId };
    await this.deps.events.record({ type: 'VOLUME.CREATE', description: `Created volume ${input.name}${key ? ` encrypted with KMS key ${key.uuid}` : encrypted ? ' encrypted with a passphrase' : ''}`, actor, resourceType: 'Volume', resourceId: uuid });
    if (key && wrapped) {
      await this.deps.events.record({ type: 'KMS.KEY.WRAP', description: `Generated a DEK for volume ${uuid} wrapped by KMS key ${key.uuid} (v${wrapped.version.versionNumber})`, actor, resourceType: 'KmsKey', resourceId: key.uuid });
    }
    return volume;
  }

  /**
   * The standby wrap of a new DEK (README "Standby HSM"), made before the transaction that stores
   * both. A standby that cannot wrap now does not fail the volume: the row is stored without a
   * standby blob, a WARN event says so, and the rewrap worker's standby fill wraps it later.
   */
  private async standbyBlob(version: KekVersionContext, ownerUuid: string, blob: Buffer, actor: { userId?: number; accountId?: number; domainId?: number }): Promise<Buffer | null> {
    if (!version.standby) return null;
    try {
      return (await this.wrappedKeys.standbyFromPrimary(version, ownerUuid, blob)) ?? null;
    } catch (err) {
      await this.deps.events.record({
        type: 'KMS.KEY.WRAP', level: 'WARN', actor, resourceType: 'KmsKey', resourceId: version.keyUuid,
        description: `Could not wrap the DEK of volume ${ownerUuid} with the standby HSM profile ${version.standby.profile.name} of KMS key ${version.keyUuid} yet: ${err instanceof KmsError ? err.message : 'internal error'}; the background fill will retry`,
      });
      return null;
    }
  }

  /** A live volume the caller may act on; 431 when absent, 531 when out of reach. */
  async require(caller: Caller, uuid: string): Promise<Volume> {
    const v = await this.deps.repos.volumes.findLive(uuid);
    if (!v) throw paramError(`Unable to find volume by id ${uuid}`);
    if (!(await this.deps.directory.canAccessOwner(caller, { accountId: v.accountId, domainId: v.domainId }))) {
      throw permissionError(`Account ${caller.accountName} does not have permission to access volume ${uuid}`);
    }
    return v;
  }

  /** Deletes a volume and destroys its secret: the wrapped DEK is shredded, the passphrase removed. */
  async delete(caller: Caller, uuid: string): Promise<void> {
    const v = await this.require(caller, uuid);
    await this.deps.repos.transaction(async (tx) => {
      // The secret to destroy is read again under a row lock: a migration that committed since
      // `require` may have swapped the passphrase for a wrapped key, which must be shredded too.
      const now = await tx.volumes.lockSecrets(v.id);
      if (!now) return;
      await tx.volumes.expunge(v.id, new Date());
      if (now.wrappedKeyId) await this.wrappedKeys.destroy(tx, now.wrappedKeyId);
      if (now.passphraseId) await this.passphrases.delete(tx, now.passphraseId);
    });
    await this.deps.events.record({ type: 'VOLUME.DELETE', description: `Deleted volume ${v.name} and destroyed its encryption secret`, actor: { userId: caller.userId, accountId: v.accountId, domainId: v.domainId }, resourceType: 'Volume', resourceId: v.uuid });
  }

  /**
   * The volume's LUKS secret, base64 (hypervisor side, root admin): the KMS DEK unwrapped in
   * memory, or the legacy passphrase bytes. Audited with a KMS.KEY.UNWRAP event.
   */
  async secretOf(caller: Caller, uuid: string): Promise<{ volume: Volume; secretBase64: string; keyUuid?: string; keyVersion?: number }> {
    const v = await this.require(caller, uuid);
    const actor = { userId: caller.userId, accountId: v.accountId, domainId: v.domainId };
    if (v.wrappedKeyId) {
      const wk = await this.deps.repos.volumes.wrappedKeyOrigin(v.wrappedKeyId);
      const { dek, via, primaryError } = await this.wrappedKeys.unwrapWithSource(v.wrappedKeyId, v.uuid);
      const secretBase64 = await using(dek, (d) => d.reveal().toString('base64'));
      await this.deps.events.record(via === 'standby'
        ? {
          type: 'KMS.KEY.UNWRAP', level: 'WARN', actor, resourceType: 'Volume', resourceId: v.uuid,
          description: `Unwrapped the DEK of volume ${v.uuid} with KMS key ${wk?.keyUuid} (v${wk?.version}) through its standby HSM profile: the primary failed (${primaryError})`,
        }
        : { type: 'KMS.KEY.UNWRAP', description: `Unwrapped the DEK of volume ${v.uuid} with KMS key ${wk?.keyUuid} (v${wk?.version})`, actor, resourceType: 'Volume', resourceId: v.uuid });
      return { volume: v, secretBase64, keyUuid: wk?.keyUuid, keyVersion: wk?.version };
    }
    if (v.passphraseId) {
      const secretBase64 = await using(await this.passphrases.read(this.deps.repos, v.passphraseId), (p) => p.reveal().toString('base64'));
      await this.deps.events.record({ type: 'KMS.KEY.UNWRAP', description: `Read the legacy passphrase of volume ${v.uuid}`, actor, resourceType: 'Volume', resourceId: v.uuid });
      return { volume: v, secretBase64 };
    }
    throw new KmsError('param', `Volume ${uuid} is not encrypted`);
  }
}
