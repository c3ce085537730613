import { randomUUID } from 'node:crypto';
import type { KmsDeps } from './deps';
import type { Caller } from '../identity/caller';
import { isMysql } from '../db/knex';
import { bool } from '../db/paging';
import { KmsError, paramError, permissionError } from '../core/errors';
import { CUSTOM_DISK_SIZE_GB, DiskOfferings, isCustomized, isEncrypting, type DiskOfferingRow } from './disk-offerings';
import { Passphrases } from './passphrases';
import { getKeyByUuid } from './kms-keys';
import { using } from '../core/secret-bytes';
import type { KmsKeyRow } from './types';
import { VersionArchivedError, WrappedKeys, type KekVersionContext } from './wrapped-keys';

export interface VolumeRow {
  id: number; uuid: string; name: string; account_id: number; domain_id: number; zone_id: number; size: number; state: string;
  encrypt_format: string | null; passphrase_id: number | null; kms_key_id: number | null; kms_wrapped_key_id: number | null;
  disk_offering_id: number | null; created: number; removed: number | null;
}


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
function sizeFromOffering(offering: DiskOfferingRow, requestedGb: number | undefined): number {
  if (!isCustomized(offering)) {
    if (requestedGb !== undefined && requestedGb !== Number(offering.disk_size_gb)) {
      throw paramError(`Disk offering ${offering.name} has a fixed size of ${offering.disk_size_gb} GB; leave size out, or choose a customized disk offering`);
    }
    return Number(offering.disk_size_gb);
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

  constructor(private readonly app: KmsDeps) {
    this.wrappedKeys = new WrappedKeys(app);
    this.passphrases = new Passphrases(app.masterKey);
  }

  /**
   * A KMS key the caller may use for a volume in zone `zoneId` (reference/cloudstack-kms-4.23.md §1.11
   * checkKmsKeyForVolumeEncryption): caller access, same zone, key and profile enabled.
   */
  async keyForVolume(caller: Caller, keyUuid: string, zone: { id: number; uuid: string }): Promise<KmsKeyRow> {
    const key = await getKeyByUuid(this.app.db, keyUuid);
    if (!key) throw paramError(`KMS key not found: ${keyUuid}`);
    if (!(await this.app.directory.canAccessOwner(caller, { accountId: key.account_id, domainId: key.domain_id }))) {
      throw permissionError(`Account ${caller.accountName} does not have permission to use KMS key ${keyUuid}`);
    }
    if (key.zone_id !== zone.id) {
      const keyZone = await this.app.db('data_center').where({ id: key.zone_id }).first('uuid');
      throw paramError(`KMS key belongs to zone ${keyZone?.uuid ?? key.zone_id} but the target resource is in zone ${zone.uuid}`);
    }
    if (!bool(key.enabled)) throw paramError(`KMS key is not enabled and cannot be used for volume encryption: ${keyUuid}`);
    return key;
  }

  async create(caller: Caller, input: CreateVolumeInput): Promise<VolumeRow> {
    const { db, directory, settings } = this.app;
    const owner = await directory.resolveOwner(caller, { account: input.account, domainid: input.domainUuid, projectid: input.projectUuid });
    const zone = await db('data_center').where({ uuid: input.zoneUuid }).whereNull('removed').first('id', 'uuid');
    if (!zone) throw paramError(`Unable to find zone by id ${input.zoneUuid}`);
    const offering = input.diskOfferingUuid ? await new DiskOfferings(this.app).forNewVolume(caller, input.diskOfferingUuid, zone.id, owner.domain_id) : undefined;
    const sizeGb = offering ? sizeFromOffering(offering, input.sizeGb) : input.sizeGb ?? 0;
    if (offering && !isEncrypting(offering) && (input.kmsKeyUuid || input.encrypt)) {
      throw paramError(`Disk offering ${offering.name} (${offering.uuid}) does not encrypt volumes; choose a disk offering with encrypt=true to use ${input.kmsKeyUuid ? 'a KMS key' : 'encrypt=true'}`);
    }
    const key = input.kmsKeyUuid ? await this.keyForVolume(caller, input.kmsKeyUuid, zone) : undefined;
    // The volume's owner must own the key: otherwise another account could disable, rotate or
    // delete the key that protects this volume (migrateVolumesToKMS has the same rule).
    if (key && key.account_id !== owner.id) {
      throw paramError(`KMS key ${key.uuid} belongs to another account than the volume's owner ${owner.account_name}`);
    }
    const uuid = randomUUID();
    const encrypted = offering ? isEncrypting(offering) : input.encrypt || key !== undefined;

    // The backend call happens before the transaction; a failed insert leaves only an unused blob
    // behind. If the version was archived in between (rotated and drained), start again on the new one.
    let wrapped: { version: KekVersionContext; blob: Buffer } | undefined;
    let volume: VolumeRow | undefined;
    for (let attempt = 1; !volume; attempt++) {
      try {
        if (key) {
          const version = await this.wrappedKeys.activeVersion(key.id);
          const bits = await settings.getNumber(DEK_BYTES_SETTING);
          wrapped = { version, blob: await this.wrappedKeys.generate(version, uuid, bits / 8) };
        }
        volume = await db.transaction(async (trx) => {
          const wrappedKeyId = wrapped ? await this.wrappedKeys.insert(trx, wrapped.version, { zoneId: zone.id, ownerUuid: uuid, blob: wrapped.blob }) : null;
          const passphraseId = encrypted && !key ? await this.passphrases.create(trx) : null;
          const row = {
            uuid, name: input.name, account_id: owner.id, domain_id: owner.domain_id, zone_id: zone.id, size: sizeGb * 1024 ** 3,
            state: 'Allocated', encrypt_format: encrypted ? 'LUKS' : null, passphrase_id: passphraseId, kms_key_id: key?.id ?? null,
            kms_wrapped_key_id: wrappedKeyId, disk_offering_id: offering?.id ?? null, created: Date.now(), removed: null,
          };
          const [id] = await trx('volumes').insert(row);
          return { ...row, id: Number(id) } satisfies VolumeRow;
        });
      } catch (err) {
        if (attempt >= 3 || !(err instanceof VersionArchivedError)) throw err;
      }
    }
    const actor = { userId: caller.userId, accountId: owner.id, domainId: owner.domain_id };
    await this.app.events.record({ type: 'VOLUME.CREATE', description: `Created volume ${input.name}${key ? ` encrypted with KMS key ${key.uuid}` : encrypted ? ' encrypted with a passphrase' : ''}`, actor, resourceType: 'Volume', resourceId: uuid });
    if (key && wrapped) {
      await this.app.events.record({ type: 'KMS.KEY.WRAP', description: `Generated a DEK for volume ${uuid} wrapped by KMS key ${key.uuid} (v${wrapped.version.versionNumber})`, actor, resourceType: 'KmsKey', resourceId: key.uuid });
    }
    return volume;
  }

  /** A live volume the caller may act on; 431 when absent, 531 when out of reach. */
  async require(caller: Caller, uuid: string): Promise<VolumeRow> {
    const v: VolumeRow | undefined = await this.app.db('volumes').where({ uuid }).whereNull('removed').first();
    if (!v) throw paramError(`Unable to find volume by id ${uuid}`);
    if (!(await this.app.directory.canAccessOwner(caller, { accountId: v.account_id, domainId: v.domain_id }))) {
      throw permissionError(`Account ${caller.accountName} does not have permission to access volume ${uuid}`);
    }
    return v;
  }

  /** Deletes a volume and destroys its secret: the wrapped DEK is shredded, the passphrase removed. */
  async delete(caller: Caller, uuid: string): Promise<void> {
    const v = await this.require(caller, uuid);
    await this.app.db.transaction(async (trx) => {
      // The secret to destroy is read again under a row lock: a migration that committed since
      // `require` may have swapped the passphrase for a wrapped key, which must be shredded too.
      const q = trx('volumes').where({ id: v.id }).whereNull('removed').first('kms_wrapped_key_id', 'passphrase_id');
      const now: Pick<VolumeRow, 'kms_wrapped_key_id' | 'passphrase_id'> | undefined = await (isMysql(this.app.db) ? q.forUpdate() : q);
      if (!now) return;
      await trx('volumes').where({ id: v.id }).update({ state: 'Expunged', removed: Date.now(), kms_wrapped_key_id: null, passphrase_id: null });
      if (now.kms_wrapped_key_id) await this.wrappedKeys.destroy(trx, now.kms_wrapped_key_id);
      if (now.passphrase_id) await this.passphrases.delete(trx, now.passphrase_id);
    });
    await this.app.events.record({ type: 'VOLUME.DELETE', description: `Deleted volume ${v.name} and destroyed its encryption secret`, actor: { userId: caller.userId, accountId: v.account_id, domainId: v.domain_id }, resourceType: 'Volume', resourceId: v.uuid });
  }

  /**
   * The volume's LUKS secret, base64 (hypervisor side, root admin): the KMS DEK unwrapped in
   * memory, or the legacy passphrase bytes. Audited with a KMS.KEY.UNWRAP event.
   */
  async secretOf(caller: Caller, uuid: string): Promise<{ volume: VolumeRow; secretBase64: string; keyUuid?: string; keyVersion?: number }> {
    const v = await this.require(caller, uuid);
    const actor = { userId: caller.userId, accountId: v.account_id, domainId: v.domain_id };
    if (v.kms_wrapped_key_id) {
      const wk = await this.app.db('kms_wrapped_key as w').join('kms_kek_versions as kv', 'kv.id', 'w.kek_version_id').join('kms_keys as k', 'k.id', 'w.kms_key_id')
        .where('w.id', v.kms_wrapped_key_id).first('k.uuid as keyUuid', 'kv.version_number as version');
      const secretBase64 = await using(await this.wrappedKeys.unwrap(v.kms_wrapped_key_id, v.uuid), (dek) => dek.reveal().toString('base64'));
      await this.app.events.record({ type: 'KMS.KEY.UNWRAP', description: `Unwrapped the DEK of volume ${v.uuid} with KMS key ${wk?.keyUuid} (v${wk?.version})`, actor, resourceType: 'Volume', resourceId: v.uuid });
      return { volume: v, secretBase64, keyUuid: wk?.keyUuid, keyVersion: wk ? Number(wk.version) : undefined };
    }
    if (v.passphrase_id) {
      const secretBase64 = await using(await this.passphrases.read(this.app.db, v.passphrase_id), (p) => p.reveal().toString('base64'));
      await this.app.events.record({ type: 'KMS.KEY.UNWRAP', description: `Read the legacy passphrase of volume ${v.uuid}`, actor, resourceType: 'Volume', resourceId: v.uuid });
      return { volume: v, secretBase64 };
    }
    throw new KmsError('param', `Volume ${uuid} is not encrypted`);
  }
}
