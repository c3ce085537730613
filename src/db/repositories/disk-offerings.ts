import type { Knex } from 'knex';
import { bool, dateOrNull } from '../columns';

/** A disk offering (the `disk_offering` table): the size and the encryption of the volumes made from it. */
export interface DiskOffering {
  id: number;
  uuid: string;
  name: string;
  displayText: string;
  /** 0 for a customized offering. */
  diskSizeGb: number;
  customized: boolean;
  encrypt: boolean;
  state: string;
  storageType: string;
  provisioningType: string;
  cacheMode: string;
  diskSizeStrictness: boolean;
  tags: string | null;
  /** QoS values as given (kept and shown, not enforced); null when none. */
  qos: Record<string, number | boolean> | null;
  /** The domains that may use it, ascending; empty: public. */
  domainIds: number[];
  /** The zones it is offered in, ascending; empty: every zone. */
  zoneIds: number[];
  created: Date;
  removed: Date | null;
}

export type NewDiskOffering = Omit<DiskOffering, 'id' | 'removed'>;

/** What updateDiskOffering may change. */
export type DiskOfferingChanges = Partial<Pick<DiskOffering, 'name' | 'displayText' | 'tags' | 'state' | 'domainIds' | 'zoneIds'>>;

/** listDiskOfferings filters that are SQL. */
export interface DiskOfferingQuery {
  uuid?: string;
  name?: string;
  keyword?: string;
  /** undefined: every state. */
  state?: string;
  encrypt?: boolean;
}

/** An id list as stored: unique and ascending (empty for none). */
export const idList = (list: readonly number[] | null | undefined): number[] => [...new Set(list ?? [])].sort((a, b) => a - b);
const csvOf = (list: readonly number[]): string | null => (list.length ? idList(list).join(',') : null);
const ids = (csv: string | null): number[] => (csv ? csv.split(',').filter(Boolean).map(Number) : []);

function toOffering(r: Record<string, any>): DiskOffering {
  return {
    id: Number(r.id), uuid: r.uuid, name: r.name, displayText: r.display_text, diskSizeGb: Number(r.disk_size_gb), customized: bool(r.customized),
    encrypt: bool(r.encrypt), state: r.state, storageType: r.storage_type, provisioningType: r.provisioning_type, cacheMode: r.cache_mode,
    diskSizeStrictness: bool(r.disk_size_strictness), tags: r.tags ?? null, qos: r.qos ? (JSON.parse(r.qos) as Record<string, number | boolean>) : null,
    domainIds: ids(r.domain_ids ?? null), zoneIds: ids(r.zone_ids ?? null), created: new Date(Number(r.created)),
    removed: dateOrNull(r.removed),
  };
}

/** The `disk_offering` table and the names its answers show. */
export class DiskOfferingRepository {
  constructor(private readonly db: Knex) {}

  /** Stores a new offering; returns it as stored. */
  async insert(o: NewDiskOffering): Promise<DiskOffering> {
    const row = {
      uuid: o.uuid, name: o.name, display_text: o.displayText, disk_size_gb: o.diskSizeGb, customized: o.customized, encrypt: o.encrypt, state: o.state,
      storage_type: o.storageType, provisioning_type: o.provisioningType, cache_mode: o.cacheMode, disk_size_strictness: o.diskSizeStrictness,
      tags: o.tags, qos: o.qos && Object.keys(o.qos).length ? JSON.stringify(o.qos) : null, domain_ids: csvOf(o.domainIds), zone_ids: csvOf(o.zoneIds),
      created: o.created.getTime(), removed: null,
    };
    const [id] = await this.db('disk_offering').insert(row);
    return toOffering({ ...row, id });
  }

  /** A live (not removed) offering by uuid. */
  async findLive(uuid: string): Promise<DiskOffering | undefined> {
    const r = await this.db('disk_offering').where({ uuid }).whereNull('removed').first();
    return r ? toOffering(r) : undefined;
  }

  async update(id: number, c: DiskOfferingChanges): Promise<void> {
    const row: Record<string, unknown> = {};
    if (c.name !== undefined) row.name = c.name;
    if (c.displayText !== undefined) row.display_text = c.displayText;
    if (c.tags !== undefined) row.tags = c.tags;
    if (c.state !== undefined) row.state = c.state;
    if (c.domainIds !== undefined) row.domain_ids = csvOf(c.domainIds);
    if (c.zoneIds !== undefined) row.zone_ids = csvOf(c.zoneIds);
    if (Object.keys(row).length) await this.db('disk_offering').where({ id }).update(row);
  }

  /** Live offerings matching the filter, by id. */
  async list(f: DiskOfferingQuery): Promise<DiskOffering[]> {
    const q = this.db('disk_offering').whereNull('removed').orderBy('id');
    if (f.uuid) q.where({ uuid: f.uuid });
    if (f.name) q.where({ name: f.name });
    if (f.keyword) q.where((w) => w.where('name', 'like', `%${f.keyword}%`).orWhere('display_text', 'like', `%${f.keyword}%`));
    if (f.state !== undefined) q.where({ state: f.state });
    if (f.encrypt !== undefined) q.where({ encrypt: f.encrypt });
    return (await q).map(toOffering);
  }

  /** The uuids and names of domains (with path) and zones by id, for answers. */
  async namesOf(domainIds: readonly number[], zoneIds: readonly number[]): Promise<{
    domains: Array<{ id: number; uuid: string; name: string; path: string }>; zones: Array<{ id: number; uuid: string; name: string }>;
  }> {
    const domains = domainIds.length ? await this.db('domain').whereIn('id', [...domainIds]).select('id', 'uuid', 'name', 'path') : [];
    const zones = zoneIds.length ? await this.db('data_center').whereIn('id', [...zoneIds]).select('id', 'uuid', 'name') : [];
    return {
      domains: domains.map((d: Record<string, any>) => ({ id: Number(d.id), uuid: d.uuid, name: d.name, path: d.path })),
      zones: zones.map((z: Record<string, any>) => ({ id: Number(z.id), uuid: z.uuid, name: z.name })),
    };
  }
}
