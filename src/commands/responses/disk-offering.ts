import { formatDate } from '../../core/dates';
import type { DiskOfferingView } from '../../kms/disk-offerings';
import type { ResponseField } from '../define';

/** DiskOfferingResponse fields (what the UI's Disk Offerings pages and create-volume form read). */
export const diskOfferingFields: readonly ResponseField[] = [
  { name: 'id', type: 'string', description: 'unique ID of the disk offering' },
  { name: 'name', type: 'string', description: 'the name of the disk offering' },
  { name: 'displaytext', type: 'string', description: 'an alternate display text of the disk offering' },
  { name: 'disksize', type: 'long', description: 'the size of the disk offering in GB (0 for a customized offering)' },
  { name: 'iscustomized', type: 'boolean', description: 'true if disk offering uses custom size, false otherwise' },
  { name: 'encrypt', type: 'boolean', description: 'whether volumes of this offering are encrypted (LUKS; with a KMS key when createVolume names one)' },
  { name: 'state', type: 'string', description: 'state of the disk offering: Active or Inactive' },
  { name: 'storagetype', type: 'string', description: 'the storage type for this disk offering' },
  { name: 'provisioningtype', type: 'string', description: 'provisioning type used to create volumes. Valid values are thin, sparse, fat.' },
  { name: 'cacheMode', type: 'string', description: 'the cache mode to use for this disk offering. none, writeback or writethrough' },
  { name: 'disksizestrictness', type: 'boolean', description: 'To allow or disallow the resize operation on the disks created from this disk offering, if the flag is true then resize is not allowed' },
  { name: 'iscustomizediops', type: 'boolean', description: 'true if disk offering uses custom iops, false otherwise' },
  { name: 'miniops', type: 'long', description: 'the min iops of the disk offering' },
  { name: 'maxiops', type: 'long', description: 'the max iops of the disk offering' },
  { name: 'hypervisorsnapshotreserve', type: 'integer', description: 'Hypervisor snapshot reserve space as a percent of a volume' },
  { name: 'diskBytesReadRate', type: 'long', description: 'bytes read rate of the disk offering' },
  { name: 'diskBytesReadRateMax', type: 'long', description: 'burst bytes read rate of the disk offering' },
  { name: 'diskBytesWriteRate', type: 'long', description: 'bytes write rate of the disk offering' },
  { name: 'diskBytesWriteRateMax', type: 'long', description: 'burst bytes write rate of the disk offering' },
  { name: 'diskIopsReadRate', type: 'long', description: 'io requests read rate of the disk offering' },
  { name: 'diskIopsWriteRate', type: 'long', description: 'io requests write rate of the disk offering' },
  { name: 'tags', type: 'string', description: 'the tags for the disk offering' },
  { name: 'domainid', type: 'string', description: 'the domain ID(s) this disk offering belongs to (comma-separated); absent when public' },
  { name: 'domain', type: 'string', description: 'the domain name(s) this disk offering belongs to (comma-separated)' },
  { name: 'zoneid', type: 'string', description: 'the zone ID(s) this disk offering belongs to (comma-separated); absent for all zones' },
  { name: 'zone', type: 'string', description: 'the zone name(s) this disk offering belongs to (comma-separated)' },
  { name: 'displayoffering', type: 'boolean', description: 'whether to display the offering to the end user or not.' },
  { name: 'suitableforvirtualmachine', type: 'boolean', description: 'true if the disk offering can be attached to the virtual machine given in listDiskOfferings' },
  { name: 'created', type: 'date', description: 'the date this disk offering was created' },
];

/** QoS values as stored, under their DiskOfferingResponse names. */
const QOS_FIELDS: Record<string, string> = {
  customizediops: 'iscustomizediops', miniops: 'miniops', maxiops: 'maxiops', hypervisorsnapshotreserve: 'hypervisorsnapshotreserve',
  bytesreadrate: 'diskBytesReadRate', bytesreadratemax: 'diskBytesReadRateMax', byteswriterate: 'diskBytesWriteRate', byteswriteratemax: 'diskBytesWriteRateMax',
  iopsreadrate: 'diskIopsReadRate', iopswriterate: 'diskIopsWriteRate',
};

export function diskOfferingResponse(o: DiskOfferingView) {
  const qos = o.qos ?? {};
  const qosOut = Object.fromEntries(Object.entries(qos).filter(([k]) => k in QOS_FIELDS).map(([k, v]) => [QOS_FIELDS[k]!, v]));
  const joined = (xs: string[]) => (xs.length ? xs.join(',') : undefined);
  return {
    id: o.uuid, name: o.name, displaytext: o.displayText, disksize: o.diskSizeGb, iscustomized: o.customized, encrypt: o.encrypt,
    state: o.state, storagetype: o.storageType, provisioningtype: o.provisioningType, cacheMode: o.cacheMode, disksizestrictness: o.diskSizeStrictness,
    iscustomizediops: false, ...qosOut, tags: o.tags ?? undefined,
    domainid: joined(o.domains.map((d) => d.uuid)), domain: joined(o.domains.map((d) => d.name)),
    zoneid: joined(o.zones.map((z) => z.uuid)), zone: joined(o.zones.map((z) => z.name)),
    displayoffering: true, suitableforvirtualmachine: true, created: formatDate(o.created),
  };
}
