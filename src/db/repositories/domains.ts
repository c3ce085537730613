import type { Knex } from 'knex';
import { isMysql } from '../knex';
import { type Page, type PageWindow } from '../paging';
import { pagedRows } from '../reader';

/** A live domain: `path` is `/` for ROOT, `/a/b/` below it; `level` counts from ROOT (0). */
export interface Domain {
  readonly id: number;
  readonly uuid: string;
  readonly name: string;
  readonly path: string;
  readonly parentId: number | null;
  readonly level: number;
  readonly networkDomain: string | null;
  readonly created: Date;
}

/** A domain as a list shows it: with its parent's id and name and whether it has children. */
export interface DomainView extends Domain {
  readonly parentUuid: string | null;
  readonly parentName: string | null;
  readonly hasChildren: boolean;
}

/** What listDomains and listDomainChildren filter by (all optional, combined with AND). */
export interface DomainFilter {
  readonly uuid?: string;
  readonly name?: string;
  readonly level?: number;
  /** `name` contains it (SQL LIKE, as the UI's search box). */
  readonly keyword?: string;
  /** Only these domain ids. */
  readonly ids?: readonly number[];
  /** Only the children of this domain. */
  readonly parentId?: number;
}

interface DomainDbRow {
  id: number; uuid: string; name: string; path: string; parent_id: number | null; level: number; network_domain: string | null; created: number | string;
}

const toDomain = (r: DomainDbRow): Domain => ({
  id: Number(r.id), uuid: r.uuid, name: r.name, path: r.path, parentId: r.parent_id === null ? null : Number(r.parent_id),
  level: Number(r.level), networkDomain: r.network_domain, created: new Date(Number(r.created)),
});

const toView = (r: DomainDbRow & { parent_uuid: string | null; parent_name: string | null; children: number | string }): DomainView => ({
  ...toDomain(r), parentUuid: r.parent_uuid, parentName: r.parent_name, hasChildren: Number(r.children) > 0,
});

/** The `domain` table: the tree of domains, followed by parent ids (never by path patterns). */
export class DomainRepository {
  constructor(private readonly db: Knex | Knex.Transaction) {}

  /**
   * Inside a transaction: holds the domain's row until it ends, so that names checked and inserted
   * in it (usernames, account names: unique within a domain whatever their case) cannot race
   * another creator. MariaDB locks the row; SQLite's one connection already runs transactions one
   * at a time.
   */
  async lockForNames(id: number): Promise<void> {
    const q = this.db('domain').where({ id }).select('id');
    await (isMysql(this.db) ? q.forUpdate() : q);
  }

  async byId(id: number): Promise<Domain | undefined> {
    const r: DomainDbRow | undefined = await this.db('domain').where({ id }).whereNull('removed').first();
    return r && toDomain(r);
  }

  async byUuid(uuid: string): Promise<Domain | undefined> {
    const r: DomainDbRow | undefined = await this.db('domain').where({ uuid }).whereNull('removed').first();
    return r && toDomain(r);
  }

  async byPath(path: string): Promise<Domain | undefined> {
    const r: DomainDbRow | undefined = await this.db('domain').where({ path }).whereNull('removed').first();
    return r && toDomain(r);
  }

  /** Adds a domain (ROOT has no parent). */
  async insert(d: { uuid: string; name: string; path: string; parentId: number | null; level: number; networkDomain: string | null; created: Date }): Promise<Domain> {
    const [id] = await this.db('domain').insert({
      uuid: d.uuid, name: d.name, path: d.path, parent_id: d.parentId, level: d.level, network_domain: d.networkDomain, created: d.created.getTime(),
    });
    return { ...d, id: Number(id) };
  }

  /** The ids of the live domains whose parent is one of `parentIds` (one level of the tree). */
  async childIds(parentIds: readonly number[]): Promise<number[]> {
    if (!parentIds.length) return [];
    const rows: Array<{ id: number }> = await this.db('domain').whereIn('parent_id', [...parentIds]).whereNull('removed').select('id');
    return rows.map((r) => Number(r.id));
  }

  /** A live domain's parent id (null for ROOT); undefined when the domain is gone. */
  async parentOf(id: number): Promise<{ parentId: number | null } | undefined> {
    const r: { parent_id: number | null } | undefined = await this.db('domain').where({ id }).whereNull('removed').first('parent_id');
    return r && { parentId: r.parent_id === null ? null : Number(r.parent_id) };
  }

  /** One domain with its parent and children count, as lists show it. */
  async view(id: number): Promise<DomainView | undefined> {
    const r = await this.viewQuery().where('d.id', id).first();
    return r && toView(r);
  }

  /** A page of domains, ordered by path. */
  async list(f: DomainFilter, page: PageWindow): Promise<Page<DomainView>> {
    const q = this.viewQuery().orderBy('d.path');
    if (f.uuid) q.where('d.uuid', f.uuid);
    if (f.name) q.where('d.name', f.name);
    if (f.level !== undefined) q.where('d.level', f.level);
    if (f.keyword) q.where('d.name', 'like', `%${f.keyword}%`);
    if (f.ids) q.whereIn('d.id', [...f.ids]);
    if (f.parentId !== undefined) q.where('d.parent_id', f.parentId);
    const { rows, count } = await pagedRows<DomainDbRow & { parent_uuid: string | null; parent_name: string | null; children: number }>(q, page);
    return { rows: rows.map(toView), count };
  }

  private viewQuery() {
    return this.db('domain as d').leftJoin('domain as p', 'p.id', 'd.parent_id').whereNull('d.removed')
      .select('d.id', 'd.uuid', 'd.name', 'd.path', 'd.parent_id', 'd.level', 'd.network_domain', 'd.created', 'p.uuid as parent_uuid', 'p.name as parent_name',
        this.db.raw('(select count(*) from domain c where c.parent_id = d.id and c.removed is null) as children'));
  }
}
