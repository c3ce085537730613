import { listUnowned } from './list';
import type { ApiResult } from './result';
import type { CommandContext } from './define';
import { paramError } from '../core/errors';
import { DISK_OFFERING_STATES, MAX_DISK_SIZE_GB, type DiskOffering, type DiskOfferingState } from '../kms/disk-offerings';
import { defineCommand, isUuid, listParams, param, SUCCESS_FIELDS, type Role } from './define';
import { diskOfferingFields, diskOfferingResponse } from './responses/disk-offering';

const MANAGERS: readonly Role[] = ['Admin', 'DomainAdmin'];

async function offeringObject(ctx: CommandContext, row: DiskOffering): Promise<ApiResult> {
  const [view] = await ctx.kms.diskOfferings.views([row]);
  return { kind: 'object', name: 'diskoffering', value: diskOfferingResponse(view!) };
}

/** QoS settings CloudStack's disk offering form may send; kept and shown, not enforced (no hypervisor here). */
const qosParams = {
  customizediops: param.boolean({ description: 'whether disk offering iops is custom or not (kept and shown; this server runs no hypervisor)' }),
  miniops: param.long({ description: 'min iops of the disk offering (kept and shown)' }),
  maxiops: param.long({ description: 'max iops of the disk offering (kept and shown)' }),
  hypervisorsnapshotreserve: param.integer({ description: 'Hypervisor snapshot reserve space as a percent of a volume (kept and shown)' }),
  bytesreadrate: param.long({ description: 'bytes read rate of the disk offering (kept and shown)' }),
  bytesreadratemax: param.long({ description: 'burst bytes read rate of the disk offering (kept and shown)' }),
  byteswriterate: param.long({ description: 'bytes write rate of the disk offering (kept and shown)' }),
  byteswriteratemax: param.long({ description: 'burst bytes write rate of the disk offering (kept and shown)' }),
  iopsreadrate: param.long({ description: 'io requests read rate of the disk offering (kept and shown)' }),
  iopswriterate: param.long({ description: 'io requests write rate of the disk offering (kept and shown)' }),
};

/** `public` / `all` or a comma-separated uuid list (updateDiskOffering's access parameters). */
function accessList(value: string | undefined, name: string, everyone: string): string[] | null | undefined {
  if (value === undefined) return undefined;
  if (value.trim().toLowerCase() === everyone || value.trim() === '') return null;
  const items = value.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  if (!items.every(isUuid)) throw paramError(`Invalid value ${value} for parameter ${name}: give "${everyone}" or a comma-separated list of UUIDs`);
  return items;
}

const stateOf = (s: string | undefined): DiskOfferingState | 'all' | undefined => {
  if (s === undefined) return undefined;
  const found = [...DISK_OFFERING_STATES, 'all' as const].find((x) => x.toLowerCase() === s.trim().toLowerCase());
  if (!found) throw paramError(`Invalid value ${s} for parameter state; allowed values are Active, Inactive, all`);
  return found;
};

/** createDiskOffering, listDiskOfferings, updateDiskOffering, deleteDiskOffering. */
export const diskOfferingCommands = [
  defineCommand({
    name: 'createDiskOffering',
    description: 'Creates a disk offering. With encrypt=true its volumes are encrypted: with the KMS key createVolume names (kmskeyid), else with a legacy passphrase.',
    roles: MANAGERS,
    related: 'listDiskOfferings',
    params: {
      name: param.string({ required: true, description: 'name of the disk offering' }),
      displaytext: param.string({ length: 4096, description: 'An alternate display text of the disk offering; the name when absent' }),
      disksize: param.long({ description: `size of the disk offering in GB (1 GB = 1,073,741,824 bytes); required unless customized, at most ${MAX_DISK_SIZE_GB}` }),
      customized: param.boolean({ default: false, description: 'whether the volume size is chosen at createVolume (size parameter) instead of disksize' }),
      encrypt: param.boolean({ default: false, description: 'Volumes using this offering should be encrypted', since: '4.18' }),
      storagetype: param.string({ default: 'shared', allowed: ['shared', 'local'], description: 'the storage type of the disk offering. Values are local and shared.' }),
      provisioningtype: param.string({ default: 'thin', allowed: ['thin', 'sparse', 'fat'], description: 'provisioning type used to create volumes. Valid values are thin, sparse, fat.' }),
      cachemode: param.string({ default: 'none', allowed: ['none', 'writeback', 'writethrough', 'hypervisor_default'], description: 'the cache mode to use for this disk offering. none, writeback, writethrough or hypervisor_default' }),
      disksizestrictness: param.boolean({ default: false, description: 'To allow or disallow the resize operation on the disks created from this disk offering, if the flag is true then resize is not allowed' }),
      tags: param.string({ length: 4096, description: 'tags for the disk offering' }),
      domainid: param.uuidList({ description: 'the IDs of the domains that can use the offering (comma-separated); every domain when absent (root admin only)', related: 'listDomains' }),
      zoneid: param.uuidList({ description: 'the IDs of the zones the offering is for (comma-separated); every zone when absent', related: 'listZones' }),
      ...qosParams,
    },
    response: diskOfferingFields,
    async handler(p, ctx) {
      const qos = Object.fromEntries(Object.keys(qosParams).flatMap((k) => {
        const v = p[k as keyof typeof qosParams];
        if (typeof v === 'number' && v < 0) throw paramError(`Invalid value ${v} for parameter ${k}: it cannot be negative`);
        return v === undefined ? [] : [[k, v]];
      }));
      const row = await ctx.kms.diskOfferings.create(ctx.caller, {
        name: p.name, displayText: p.displaytext, diskSizeGb: p.disksize, customized: p.customized, encrypt: p.encrypt, storageType: p.storagetype,
        provisioningType: p.provisioningtype, cacheMode: p.cachemode, diskSizeStrictness: p.disksizestrictness, tags: p.tags, qos,
        domainUuids: p.domainid, zoneUuids: p.zoneid,
      });
      return offeringObject(ctx, row);
    },
  }),
  defineCommand({
    name: 'listDiskOfferings',
    description: 'Lists all available disk offerings (Active ones unless state says otherwise).',
    roles: ['Admin', 'DomainAdmin', 'User'],
    related: 'createDiskOffering',
    params: {
      ...listParams,
      id: param.uuid({ description: 'ID of the disk offering', related: 'listDiskOfferings' }),
      name: param.string({ description: 'name of the disk offering' }),
      zoneid: param.uuid({ description: 'list the disk offerings available in this zone', related: 'listZones' }),
      domainid: param.uuid({ description: 'list the disk offerings accounts of this domain may use (public ones and those of the domain or an ancestor)', related: 'listDomains' }),
      account: param.string({ description: 'the account the offerings are listed for (with domainid); offerings are scoped by domain, so the domain decides' }),
      projectid: param.string({ description: 'list offerings for a project (projects are not supported by this server; ignored)' }),
      isrecursive: param.boolean({ default: false, description: 'also list offerings of subdomains (admins see every offering of their domain tree)' }),
      listall: param.boolean({ default: false, description: 'list every offering the caller may see' }),
      state: param.string({ description: 'Filter by state of the disk offering: Active, Inactive or all. Defaults to Active.' }),
      encrypt: param.boolean({ description: 'list only encrypted (true) or unencrypted (false) disk offerings', since: '4.18' }),
    },
    response: diskOfferingFields,
    async handler(p, ctx) {
      const offerings = ctx.kms.diskOfferings;
      // Visibility is decided per offering (domains above and below the caller), so the page is cut after it.
      return listUnowned(p, 'diskoffering', async ({ offset, limit }) => {
        const rows = await offerings.list(ctx.caller, {
          uuid: p.id, name: p.name, keyword: p.keyword, zoneUuid: p.zoneid, usableInDomainUuid: p.domainid, state: stateOf(p.state) ?? 'Active', encrypt: p.encrypt,
        });
        return { rows: await offerings.views(rows.slice(offset, limit === undefined ? undefined : offset + limit)), count: rows.length };
      }, diskOfferingResponse);
    },
  }),
  defineCommand({
    name: 'updateDiskOffering',
    description: 'Updates a disk offering: its name, display text, tags, state (Active re-enables a deleted offering), domains or zones.',
    roles: MANAGERS,
    related: 'listDiskOfferings',
    params: {
      id: param.uuid({ required: true, description: 'ID of the disk offering', related: 'listDiskOfferings' }),
      name: param.string({ description: 'updates name of the disk offering with this value' }),
      displaytext: param.string({ length: 4096, description: 'updates alternate display text of the disk offering with this value' }),
      tags: param.string({ length: 4096, description: 'comma-separated list of tags for the disk offering' }),
      state: param.string({ description: 'state of the disk offering: Active or Inactive' }),
      domainid: param.string({ length: 4096, description: 'the IDs of the domains that can use the offering (comma-separated), or "public" for every domain' }),
      zoneid: param.string({ length: 4096, description: 'the IDs of the zones the offering is for (comma-separated), or "all" for every zone' }),
      sortkey: param.integer({ description: 'sort key of the disk offering (accepted; offerings are listed by creation)' }),
      displayoffering: param.boolean({ description: 'an optional field, whether to display the offering to the end user or not (every offering is shown here)' }),
    },
    response: diskOfferingFields,
    async handler(p, ctx) {
      const state = stateOf(p.state);
      if (state === 'all') throw paramError('Invalid value all for parameter state; allowed values are Active, Inactive');
      const row = await ctx.kms.diskOfferings.update(ctx.caller, p.id, {
        name: p.name, displayText: p.displaytext, tags: p.tags, state,
        domainUuids: accessList(p.domainid, 'domainid', 'public'), zoneUuids: accessList(p.zoneid, 'zoneid', 'all'),
      });
      return offeringObject(ctx, row);
    },
  }),
  defineCommand({
    name: 'deleteDiskOffering',
    description: 'Deletes a disk offering: as CloudStack, it becomes Inactive; volumes made from it keep it, new volumes cannot use it (updateDiskOffering state=Active brings it back).',
    roles: MANAGERS,
    params: { id: param.uuid({ required: true, description: 'ID of the disk offering', related: 'listDiskOfferings' }) },
    response: SUCCESS_FIELDS,
    async handler(p, ctx) {
      await ctx.kms.diskOfferings.delete(ctx.caller, p.id);
      return { kind: 'success' };
    },
  }),
];
