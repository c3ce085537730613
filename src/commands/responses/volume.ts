import type { Knex } from 'knex';
import { formatDate } from '../../core/dates';
import type { ResponseField } from '../define';
import { prettyPath } from './identity';

export interface VolumeView {
  id: number; uuid: string; name: string; size: number; state: string; encrypt_format: string | null; created: number; passphrase_id: number | null;
  account_id: number; domain_id: number; account_name: string; account_uuid: string; domain_uuid: string; domain_name: string; domain_path: string;
  zone_uuid: string; zone_name: string; key_uuid: string | null; key_name: string | null; key_version: number | null;
  offering_uuid: string | null; offering_name: string | null; offering_display_text: string | null; provisioning_type: string | null; storage_type: string | null;
}

/** Volumes with owner, zone, KMS key and the KEK version their DEK is wrapped with. */
export const volumeQuery = (db: Knex) =>
  db('volumes as v')
    .join('account as a', 'a.id', 'v.account_id').join('domain as d', 'd.id', 'v.domain_id').join('data_center as z', 'z.id', 'v.zone_id')
    .leftJoin('kms_keys as k', 'k.id', 'v.kms_key_id')
    .leftJoin('kms_wrapped_key as w', 'w.id', 'v.kms_wrapped_key_id')
    .leftJoin('kms_kek_versions as kv', 'kv.id', 'w.kek_version_id')
    .leftJoin('disk_offering as o', 'o.id', 'v.disk_offering_id')
    .whereNull('v.removed')
    .select('v.id', 'v.uuid', 'v.name', 'v.size', 'v.state', 'v.encrypt_format', 'v.created', 'v.passphrase_id', 'v.account_id', 'v.domain_id',
      'a.account_name', 'a.uuid as account_uuid', 'd.uuid as domain_uuid', 'd.name as domain_name', 'd.path as domain_path',
      'z.uuid as zone_uuid', 'z.name as zone_name', 'k.uuid as key_uuid', 'k.name as key_name', 'kv.version_number as key_version',
      'o.uuid as offering_uuid', 'o.name as offering_name', 'o.display_text as offering_display_text', 'o.provisioning_type', 'o.storage_type');

export const volumeFields: readonly ResponseField[] = [
  { name: 'id', type: 'string', description: 'ID of the disk volume' },
  { name: 'name', type: 'string', description: 'name of the disk volume' },
  { name: 'type', type: 'string', description: 'type of the disk volume (ROOT or DATADISK)' },
  { name: 'state', type: 'string', description: 'the state of the disk volume' },
  { name: 'size', type: 'long', description: 'size of the disk volume in bytes' },
  { name: 'diskofferingid', type: 'string', description: 'ID of the disk offering' },
  { name: 'diskofferingname', type: 'string', description: 'name of the disk offering' },
  { name: 'diskofferingdisplaytext', type: 'string', description: 'the display text of the disk offering' },
  { name: 'storagetype', type: 'string', description: 'shared or local storage' },
  { name: 'provisioningtype', type: 'string', description: 'provisioning type used to create volumes.' },
  { name: 'destroyed', type: 'boolean', description: 'the boolean state of whether the volume is destroyed or not' },
  { name: 'isextractable', type: 'boolean', description: 'true if the volume is extractable, false otherwise' },
  { name: 'deleteprotection', type: 'boolean', description: 'true if volume has delete protection.' },
  { name: 'tags', type: 'list', description: 'the list of resource tags associated (always empty here)' },
  { name: 'account', type: 'string', description: 'the account associated with the disk volume' },
  { name: 'domainid', type: 'string', description: 'the ID of the domain associated with the disk volume' },
  { name: 'domain', type: 'string', description: 'the domain associated with the disk volume' },
  { name: 'domainpath', type: 'string', description: 'path of the domain to which the disk volume belongs' },
  { name: 'zoneid', type: 'string', description: 'ID of the availability zone' },
  { name: 'zonename', type: 'string', description: 'name of the availability zone' },
  { name: 'encryptformat', type: 'string', description: 'the format of the disk encryption if applicable (LUKS)' },
  { name: 'kmskeyid', type: 'string', description: 'the ID of the KMS key whose KEK wraps the volume encryption key' },
  { name: 'kmskey', type: 'string', description: 'the name of the KMS key whose KEK wraps the volume encryption key' },
  { name: 'kmskeyversion', type: 'integer', description: 'the KEK version the volume encryption key is currently wrapped with' },
  { name: 'created', type: 'date', description: 'the date the disk volume was created' },
];

export const volumeResponse = (v: VolumeView) => ({
  id: v.uuid, name: v.name, type: 'DATADISK', state: v.state, size: Number(v.size),
  diskofferingid: v.offering_uuid ?? undefined, diskofferingname: v.offering_name ?? undefined, diskofferingdisplaytext: v.offering_display_text ?? undefined,
  storagetype: v.storage_type ?? 'shared', provisioningtype: v.provisioning_type ?? 'thin', destroyed: false, isextractable: false, deleteprotection: false, tags: [], account: v.account_name, domainid: v.domain_uuid, domain: v.domain_name,
  domainpath: prettyPath(v.domain_path), zoneid: v.zone_uuid, zonename: v.zone_name, encryptformat: v.encrypt_format ?? undefined,
  kmskeyid: v.key_uuid ?? undefined, kmskey: v.key_name ?? undefined, kmskeyversion: v.key_version === null ? undefined : Number(v.key_version),
  created: formatDate(v.created),
});

/** listVolumesMetrics adds the size in GiB as the UI shows it (VolumeMetricsResponse sizegb). */
export const volumeMetricsFields: readonly ResponseField[] = [
  ...volumeFields,
  { name: 'sizegb', type: 'string', description: 'Disk size in GiB' },
];

export const volumeMetricsResponse = (v: VolumeView) => ({
  ...volumeResponse(v),
  sizegb: `${(Number(v.size) / 1024 ** 3).toFixed(2)} GiB`,
});
