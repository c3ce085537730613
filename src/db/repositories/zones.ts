import type { Knex } from 'knex';
import { knexReader, pagedRows, type Reader } from '../reader';
import { type Page, type PageWindow } from '../paging';

/** A zone (`data_center`): zones scope KMS keys and volumes. */
export interface Zone {
  id: number;
  uuid: string;
  name: string;
  description: string | null;
  networkType: string;
  allocationState: string;
  dns1: string | null;
  internalDns1: string | null;
  created: Date;
}

export type NewZone = Omit<Zone, 'id'>;

/** listZones filters. */
export interface ZoneFilter {
  uuid?: string;
  name?: string;
  keyword?: string;
  /** Only zones whose allocation state is Enabled. */
  enabledOnly?: boolean;
}

function toZone(r: Record<string, any>): Zone {
  return {
    id: Number(r.id), uuid: r.uuid, name: r.name, description: r.description ?? null, networkType: r.networktype, allocationState: r.allocation_state,
    dns1: r.dns1 ?? null, internalDns1: r.internal_dns1 ?? null, created: new Date(Number(r.created)),
  };
}

/** The `data_center` table. */
export class ZoneRepository {
  constructor(private readonly db: Knex, private readonly read: Reader = knexReader) {}

  /** A live (not removed) zone by uuid. */
  async findLive(uuid: string): Promise<Zone | undefined> {
    const r = await this.db('data_center').where({ uuid }).whereNull('removed').first();
    return r ? toZone(r) : undefined;
  }

  async findLiveByName(name: string): Promise<Zone | undefined> {
    const r = await this.db('data_center').where({ name }).whereNull('removed').first();
    return r ? toZone(r) : undefined;
  }

  /** A zone's uuid by id (removed or not). */
  async uuidOf(id: number): Promise<string | undefined> {
    const r = await this.db('data_center').where({ id }).first('uuid');
    return r?.uuid;
  }

  /** Live zones by uuid (those found). */
  async liveByUuids(uuids: readonly string[]): Promise<Zone[]> {
    return (await this.db('data_center').whereIn('uuid', [...uuids]).whereNull('removed').select()).map(toZone);
  }

  async insert(z: NewZone): Promise<Zone> {
    const row = {
      uuid: z.uuid, name: z.name, description: z.description, networktype: z.networkType, allocation_state: z.allocationState,
      dns1: z.dns1, internal_dns1: z.internalDns1, created: z.created.getTime(),
    };
    const [id] = await this.db('data_center').insert(row);
    return toZone({ ...row, id });
  }

  /** Live zones matching `f`, by id: one page and the total. */
  async list(f: ZoneFilter, page: PageWindow): Promise<Page<Zone>> {
    const q = this.db('data_center').whereNull('removed').orderBy('id');
    if (f.uuid) q.where('uuid', f.uuid);
    if (f.name) q.where('name', f.name);
    if (f.keyword) q.where('name', 'like', `%${f.keyword}%`);
    if (f.enabledOnly) q.where('allocation_state', 'Enabled');
    const { rows, count } = await pagedRows<Record<string, any>>(q, page, this.read);
    return { rows: rows.map(toZone), count };
  }
}
