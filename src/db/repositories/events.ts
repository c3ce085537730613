import type { Knex } from 'knex';
import type { OwnerScope } from '../../core/owner-scope';
import { applyOwnerScope } from '../owner-scope';
import { type Page, type PageWindow } from '../paging';
import { pagedRows } from '../reader';

/** One event as written (the `event` table). */
export interface NewEvent {
  uuid: string;
  type: string;
  state: string;
  level: string;
  description: string;
  userId: number | null;
  accountId: number | null;
  domainId: number | null;
  resourceType: string | null;
  resourceId: string | null;
  created: Date;
}

/** An event with the names listEvents shows. */
export interface EventView {
  uuid: string; type: string; level: string; state: string; description: string; created: Date; resourceType: string | null; resourceId: string | null;
  username: string | null; accountName: string | null; accountUuid: string | null; domainUuid: string | null; domainName: string | null;
  /** The project owning the event through its account, or null. */
  projectUuid: string | null; projectName: string | null;
}

/** listEvents filters. */
export interface EventFilter {
  uuid?: string; type?: string; level?: string; resourceId?: string; resourceType?: string; keyword?: string;
  /** Inclusive bounds on the creation time. */
  from?: Date; to?: Date;
}

const toRow = (e: NewEvent) => ({
  uuid: e.uuid, type: e.type, state: e.state, level: e.level, description: e.description, user_id: e.userId, account_id: e.accountId,
  domain_id: e.domainId, resource_type: e.resourceType, resource_id: e.resourceId, created: e.created.getTime(),
});

/** The event log's table: appended to, listed newest first. */
export class EventRepository {
  constructor(private readonly db: Knex) {}

  async insert(e: NewEvent): Promise<void> {
    await this.db('event').insert(toRow(e));
  }

  /** Several events, in statements of at most 500 rows. */
  async insertMany(events: readonly NewEvent[]): Promise<void> {
    if (events.length) await this.db.batchInsert('event', events.map(toRow), 500);
  }

  /** The events in `scope` matching `f`, newest first: one page and the total. */
  async list(scope: OwnerScope, f: EventFilter, page: PageWindow): Promise<Page<EventView>> {
    const q = this.db('event as e')
      .leftJoin('user as u', 'u.id', 'e.user_id').leftJoin('account as a', 'a.id', 'e.account_id').leftJoin('domain as d', 'd.id', 'e.domain_id')
      .leftJoin('projects as pr', 'pr.project_account_id', 'e.account_id')
      .select('e.uuid', 'e.type', 'e.level', 'e.state', 'e.description', 'e.created', 'e.resource_type', 'e.resource_id',
        'u.username', 'a.account_name', 'a.uuid as account_uuid', 'd.uuid as domain_uuid', 'd.name as domain_name',
        'pr.uuid as project_uuid', 'pr.name as project_name')
      .orderBy('e.id', 'desc');
    applyOwnerScope(q, scope, { accountCol: 'e.account_id', domainCol: 'e.domain_id' });
    if (f.uuid) q.where('e.uuid', f.uuid);
    if (f.type) q.where('e.type', f.type);
    if (f.level) q.where('e.level', f.level);
    if (f.resourceId) q.where('e.resource_id', f.resourceId);
    if (f.resourceType) q.where('e.resource_type', f.resourceType);
    if (f.keyword) q.where('e.description', 'like', `%${f.keyword}%`);
    if (f.from !== undefined) q.where('e.created', '>=', f.from.getTime());
    if (f.to !== undefined) q.where('e.created', '<=', f.to.getTime());
    const { rows, count } = await pagedRows<Record<string, any>>(q, page);
    return {
      count,
      rows: rows.map((r) => ({
        uuid: r.uuid, type: r.type, level: r.level, state: r.state, description: r.description, created: new Date(Number(r.created)),
        resourceType: r.resource_type ?? null, resourceId: r.resource_id ?? null, username: r.username ?? null, accountName: r.account_name ?? null,
        accountUuid: r.account_uuid ?? null, domainUuid: r.domain_uuid ?? null, domainName: r.domain_name ?? null,
        projectUuid: r.project_uuid ?? null, projectName: r.project_name ?? null,
      })),
    };
  }
}
