import { randomUUID } from 'node:crypto';
import type { KmsDeps } from './deps';
import { isRootAdmin, type Caller } from '../identity/caller';
import { idList, type DiskOffering, type DiskOfferingChanges } from '../db/repositories/disk-offerings';
import { paramError, permissionError } from '../core/errors';

export type { DiskOffering } from '../db/repositories/disk-offerings';

/** CloudStack's DiskOffering.State. */
export const DISK_OFFERING_STATES = ['Active', 'Inactive'] as const;
export type DiskOfferingState = (typeof DISK_OFFERING_STATES)[number];

/** storage.max.volume.size: the largest fixed size an offering may have, in GB. */
export const MAX_DISK_SIZE_GB = 2000;
/** listCapabilities customdiskofferingmin/maxsize: the range of a custom volume size, in GB. */
export const CUSTOM_DISK_SIZE_GB = { min: 1, max: 1024 } as const;

/** An offering with its domains and zones resolved for the answer. */
export interface DiskOfferingView extends DiskOffering {
  domains: Array<{ uuid: string; name: string; path: string }>;
  zones: Array<{ uuid: string; name: string }>;
}

export interface CreateDiskOfferingInput {
  name: string;
  displayText?: string;
  diskSizeGb?: number;
  customized: boolean;
  encrypt: boolean;
  storageType: string;
  provisioningType: string;
  cacheMode: string;
  diskSizeStrictness: boolean;
  tags?: string;
  qos: Record<string, number | boolean>;
  domainUuids?: string[];
  zoneUuids?: string[];
}

export interface UpdateDiskOfferingInput {
  name?: string;
  displayText?: string;
  tags?: string;
  state?: DiskOfferingState;
  /** undefined: unchanged; null: every domain (public); a list: those domains. */
  domainUuids?: string[] | null;
  /** undefined: unchanged; null: every zone; a list: those zones. */
  zoneUuids?: string[] | null;
}

export interface DiskOfferingFilter {
  uuid?: string;
  name?: string;
  keyword?: string;
  zoneUuid?: string;
  /** Offerings usable by accounts of this domain (public ones and those of the domain or an ancestor). */
  usableInDomainUuid?: string;
  state: DiskOfferingState | 'all';
  encrypt?: boolean;
}

/**
 * Disk offerings (createDiskOffering, listDiskOfferings, updateDiskOffering, deleteDiskOffering):
 * the size and the encryption of the volumes made from them. Deleting one marks it Inactive, as
 * CloudStack does: volumes keep it, new volumes cannot use it.
 */
export class DiskOfferings {
  constructor(private readonly deps: Pick<KmsDeps, 'repos' | 'events' | 'directory'>) {}

  async create(caller: Caller, input: CreateDiskOfferingInput): Promise<DiskOffering> {
    if (input.customized && input.diskSizeGb !== undefined) throw paramError('Disksize must not be given for a customized disk offering; leave it out or set customized=false');
    if (!input.customized && (input.diskSizeGb === undefined || input.diskSizeGb <= 0)) {
      throw paramError('Disksize is required for a non-customized disk offering: give disksize in GB (greater than 0), or customized=true');
    }
    if (input.diskSizeGb !== undefined && input.diskSizeGb > MAX_DISK_SIZE_GB) throw paramError(`The maximum size for a disk is ${MAX_DISK_SIZE_GB} Gb.`);
    const domainIds = await this.domainIdsFor(caller, input.domainUuids ?? null);
    if (!isRootAdmin(caller) && !domainIds) throw permissionError('A domain admin must give domainid: the domains of the disk offering, in its own domain tree');
    const zoneIds = await this.zoneIdsFor(input.zoneUuids ?? null);
    const row = await this.deps.repos.diskOfferings.insert({
      uuid: randomUUID(), name: input.name, displayText: input.displayText?.trim() || input.name, diskSizeGb: input.customized ? 0 : input.diskSizeGb!,
      customized: input.customized, encrypt: input.encrypt, state: 'Active', storageType: input.storageType, provisioningType: input.provisioningType,
      cacheMode: input.cacheMode, diskSizeStrictness: input.diskSizeStrictness, tags: input.tags?.trim() || null,
      qos: Object.keys(input.qos).length ? input.qos : null, domainIds: idList(domainIds), zoneIds: idList(zoneIds),
      created: new Date(),
    });
    await this.deps.events.record({
      type: 'DISK.OFFERING.CREATE', description: `Created disk offering ${row.name}${row.encrypt ? ' (encrypted)' : ''}`,
      actor: { userId: caller.userId, accountId: caller.accountId, domainId: caller.domainId }, resourceType: 'DiskOffering', resourceId: row.uuid,
    });
    return row;
  }

  /** The offering by uuid, visible to the caller; 431 when absent or out of sight. */
  async require(caller: Caller, uuid: string): Promise<DiskOffering> {
    const row = await this.deps.repos.diskOfferings.findLive(uuid);
    if (!row || !visibleTo(caller, row, await this.sightOf(caller))) throw paramError(`Unable to find disk offering by id ${uuid}`);
    return row;
  }

  /** An offering a new volume may use: visible to the caller, usable in the owner's domain, Active and offered in the zone. */
  async forNewVolume(caller: Caller, uuid: string, zoneId: number, ownerDomainId: number): Promise<DiskOffering> {
    const row = await this.require(caller, uuid);
    if (!usableIn(row, new Set(await this.deps.directory.access.ancestorIds(ownerDomainId)))) {
      throw paramError(`Disk offering ${row.name} (${uuid}) is not available to accounts of the volume owner's domain`);
    }
    if (row.state !== 'Active') throw paramError(`Disk offering ${row.name} (${uuid}) is Inactive; choose an Active disk offering`);
    const zones = row.zoneIds;
    if (zones.length && !zones.includes(zoneId)) throw paramError(`Disk offering ${row.name} (${uuid}) is not available in the zone of the volume`);
    return row;
  }

  /** Admins and domain admins manage offerings of their domain tree; the root admin manages all. */
  async requireManageable(caller: Caller, uuid: string): Promise<DiskOffering> {
    const row = await this.require(caller, uuid);
    if (isRootAdmin(caller)) return row;
    const below = new Set(await this.deps.directory.access.subtreeIds(caller.domainId));
    const domains = row.domainIds;
    if (!domains.length || !domains.every((id) => below.has(id))) {
      throw permissionError(`Account ${caller.accountName} may not change disk offering ${uuid}: it is not limited to domains in the caller's domain tree`);
    }
    return row;
  }

  async update(caller: Caller, uuid: string, input: UpdateDiskOfferingInput): Promise<DiskOffering> {
    const row = await this.requireManageable(caller, uuid);
    const changes: DiskOfferingChanges = {};
    if (input.name !== undefined) {
      if (!input.name.trim()) throw paramError('The name of a disk offering cannot be empty');
      changes.name = input.name;
    }
    if (input.displayText !== undefined) changes.displayText = input.displayText.trim() || row.name;
    if (input.tags !== undefined) changes.tags = input.tags.trim() || null;
    if (input.state !== undefined) changes.state = input.state;
    if (input.domainUuids !== undefined) {
      const domainIds = await this.domainIdsFor(caller, input.domainUuids);
      if (!isRootAdmin(caller) && !domainIds) throw permissionError('Only the root admin can make a disk offering public');
      changes.domainIds = idList(domainIds);
    }
    if (input.zoneUuids !== undefined) changes.zoneIds = idList(await this.zoneIdsFor(input.zoneUuids));
    if (Object.keys(changes).length) await this.deps.repos.diskOfferings.update(row.id, changes);
    await this.deps.events.record({
      type: 'DISK.OFFERING.EDIT', description: `Updated disk offering ${changes.name ?? row.name}`,
      actor: { userId: caller.userId, accountId: caller.accountId, domainId: caller.domainId }, resourceType: 'DiskOffering', resourceId: row.uuid,
    });
    return { ...row, ...changes };
  }

  /** CloudStack's deleteDiskOffering: the offering becomes Inactive (existing volumes keep it). */
  async delete(caller: Caller, uuid: string): Promise<void> {
    const row = await this.requireManageable(caller, uuid);
    await this.deps.repos.diskOfferings.update(row.id, { state: 'Inactive' });
    await this.deps.events.record({
      type: 'DISK.OFFERING.DELETE', description: `Deleted (disabled) disk offering ${row.name}`,
      actor: { userId: caller.userId, accountId: caller.accountId, domainId: caller.domainId }, resourceType: 'DiskOffering', resourceId: row.uuid,
    });
  }

  /** The offerings the caller may see that match the filter, by id. */
  async list(caller: Caller, f: DiskOfferingFilter): Promise<DiskOffering[]> {
    let rows = await this.deps.repos.diskOfferings.list({
      uuid: f.uuid, name: f.name, keyword: f.keyword, state: f.state === 'all' ? undefined : f.state, encrypt: f.encrypt,
    });
    if (f.zoneUuid) {
      const zone = await this.deps.repos.zones.findLive(f.zoneUuid);
      if (!zone) throw paramError(`Unable to find zone by id ${f.zoneUuid}`);
      rows = rows.filter((r) => !r.zoneIds.length || r.zoneIds.includes(zone.id));
    }
    if (f.usableInDomainUuid) {
      const domain = await this.deps.directory.accessibleDomain(caller, f.usableInDomainUuid);
      const above = new Set(await this.deps.directory.access.ancestorIds(domain.id));
      rows = rows.filter((r) => usableIn(r, above));
    }
    const sight = await this.sightOf(caller);
    return rows.filter((r) => visibleTo(caller, r, sight));
  }

  /** Rows with their domains and zones, for answers. */
  async views(rows: readonly DiskOffering[]): Promise<DiskOfferingView[]> {
    const domainIds = [...new Set(rows.flatMap((r) => r.domainIds))];
    const zoneIds = [...new Set(rows.flatMap((r) => r.zoneIds))];
    const { domains, zones } = await this.deps.repos.diskOfferings.namesOf(domainIds, zoneIds);
    return rows.map((r) => ({
      ...r,
      domains: r.domainIds.map((id) => domains.find((d) => d.id === id)).filter((d) => d !== undefined),
      zones: r.zoneIds.map((id) => zones.find((z) => z.id === id)).filter((z) => z !== undefined),
    }));
  }

  /** The domains whose offerings the caller sees: its own and those above it; a domain admin's also those below. */
  private async sightOf(caller: Caller): Promise<Sight> {
    const { access } = this.deps.directory;
    return {
      above: new Set(await access.ancestorIds(caller.domainId)),
      below: new Set(caller.role === 'DomainAdmin' ? await access.subtreeIds(caller.domainId) : []),
    };
  }

  /** Domain ids for uuids the caller may scope an offering to; null for none (public). */
  private async domainIdsFor(caller: Caller, uuids: readonly string[] | null): Promise<number[] | null> {
    if (!uuids || !uuids.length) return null;
    const out: number[] = [];
    for (const uuid of uuids) out.push((await this.deps.directory.accessibleDomain(caller, uuid)).id);
    return out;
  }

  private async zoneIdsFor(uuids: readonly string[] | null): Promise<number[] | null> {
    if (!uuids || !uuids.length) return null;
    const rows = await this.deps.repos.zones.liveByUuids(uuids);
    const missing = uuids.filter((u) => !rows.some((r) => r.uuid === u));
    if (missing.length) throw paramError(`Unable to find zone by id ${missing.join(', ')}`);
    return rows.map((r) => r.id);
  }
}

/** Domain ids (by parent ids, never by path) an offering is checked against. */
interface Sight { above: ReadonlySet<number>; below: ReadonlySet<number> }

/** Accounts of a domain may use the offering: it is public, or of that domain or one above it (`above`). */
function usableIn(row: DiskOffering, above: ReadonlySet<number>): boolean {
  return !row.domainIds.length || row.domainIds.some((id) => above.has(id));
}

/** Public offerings, and those of the caller's domain or an ancestor; domain admins also those below them; root all. */
function visibleTo(caller: Caller, row: DiskOffering, sight: Sight): boolean {
  if (isRootAdmin(caller) || !row.domainIds.length) return true;
  return row.domainIds.some((id) => sight.above.has(id) || sight.below.has(id));
}
