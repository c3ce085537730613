import { formatDate } from '../../core/dates';
import type { VolumeView } from '../../db/repositories/volumes';
import type { ResponseField } from '../define';
import { prettyPath } from './identity';
import { ownerOf, projectFields } from './owner';

export type { VolumeView } from '../../db/repositories/volumes';

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
  ...projectFields,
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
  id: v.uuid, name: v.name, type: 'DATADISK', state: v.state, size: v.size,
  diskofferingid: v.offeringUuid ?? undefined, diskofferingname: v.offeringName ?? undefined, diskofferingdisplaytext: v.offeringDisplayText ?? undefined,
  storagetype: v.storageType ?? 'shared', provisioningtype: v.provisioningType ?? 'thin', destroyed: false, isextractable: false, deleteprotection: false, tags: [], ...ownerOf(v, { accountId: false }), domainid: v.domainUuid, domain: v.domainName,
  domainpath: prettyPath(v.domainPath), zoneid: v.zoneUuid, zonename: v.zoneName, encryptformat: v.encryptFormat ?? undefined,
  kmskeyid: v.keyUuid ?? undefined, kmskey: v.keyName ?? undefined, kmskeyversion: v.keyVersion ?? undefined,
  created: formatDate(v.created),
});

/** listVolumesMetrics adds the size in GiB as the UI shows it (VolumeMetricsResponse sizegb). */
export const volumeMetricsFields: readonly ResponseField[] = [
  ...volumeFields,
  { name: 'sizegb', type: 'string', description: 'Disk size in GiB' },
];

export const volumeMetricsResponse = (v: VolumeView) => ({
  ...volumeResponse(v),
  sizegb: `${(v.size / 1024 ** 3).toFixed(2)} GiB`,
});
