import { parseListDate } from './dates';
import { formatDate } from '../core/dates';
import { pageWindow } from './pagination';
import { pagedRows } from '../db/paging';
import { applyOwnerScope } from '../db/owner-scope';
import { ALL_ROLES, defineCommand, ownerListParams, param } from './define';

interface EventView { uuid: string; type: string; level: string; state: string; description: string; created: number; resource_type: string | null; resource_id: string | null; username: string | null; account_name: string | null; account_uuid: string | null; domain_uuid: string | null; domain_name: string | null }


export const eventCommands = [
  defineCommand({
    name: 'listEvents',
    description: 'A command to list events.',
    roles: ALL_ROLES,
    params: {
      ...ownerListParams,
      id: param.uuid({ description: 'the ID of the event' }),
      type: param.string({ description: 'the event type (see event types)' }),
      level: param.string({ description: 'the event level (INFO, WARN, ERROR)' }),
      startdate: param.date({ description: 'the start date range of the list you want to retrieve (use format "yyyy-MM-dd" or "yyyy-MM-dd HH:mm:ss")' }),
      enddate: param.date({ description: 'the end date range of the list you want to retrieve (use format "yyyy-MM-dd" or "yyyy-MM-dd HH:mm:ss")' }),
      resourceid: param.string({ description: 'the ID of the resource associated with the event' }),
      resourcetype: param.string({ description: 'the type of the resource associated with the event' }),
    },
    response: [
      { name: 'id', type: 'string', description: 'the ID of the event' },
      { name: 'type', type: 'string', description: 'the type of the event' },
      { name: 'level', type: 'string', description: 'the event level (INFO, WARN, ERROR)' },
      { name: 'description', type: 'string', description: 'a brief description of the event' },
      { name: 'username', type: 'string', description: 'the name of the user who performed the action' },
      { name: 'account', type: 'string', description: 'the account name for the account that owns the object being acted on in the event' },
      { name: 'domainid', type: 'string', description: 'the id of the account\'s domain' },
      { name: 'domain', type: 'string', description: 'the name of the account\'s domain' },
      { name: 'resourceid', type: 'string', description: 'the id of the resource' },
      { name: 'resourcetype', type: 'string', description: 'the type of the resource' },
      { name: 'state', type: 'string', description: 'the state of the event' },
      { name: 'created', type: 'date', description: 'the date the event was created' },
    ],
    async handler(p, ctx) {
      const db = ctx.app.db;
      const scope = await ctx.app.directory.listScope(ctx.caller, p);
      const q = db('event as e')
        .leftJoin('user as u', 'u.id', 'e.user_id').leftJoin('account as a', 'a.id', 'e.account_id').leftJoin('domain as d', 'd.id', 'e.domain_id')
        .select('e.uuid', 'e.type', 'e.level', 'e.state', 'e.description', 'e.created', 'e.resource_type', 'e.resource_id',
          'u.username', 'a.account_name', 'a.uuid as account_uuid', 'd.uuid as domain_uuid', 'd.name as domain_name')
        .orderBy('e.id', 'desc');
      applyOwnerScope(q, scope, { accountCol: 'e.account_id', domainCol: 'e.domain_id' });
      if (p.id) q.where('e.uuid', p.id);
      if (p.type) q.where('e.type', p.type);
      if (p.level) q.where('e.level', p.level.toUpperCase());
      if (p.resourceid) q.where('e.resource_id', p.resourceid);
      if (p.resourcetype) q.where('e.resource_type', p.resourcetype);
      if (p.keyword) q.where('e.description', 'like', `%${p.keyword}%`);
      const start = p.startdate === undefined ? undefined : parseListDate(p.startdate, 'startdate');
      const end = p.enddate === undefined ? undefined : parseListDate(p.enddate, 'enddate');
      if (start !== undefined) q.where('e.created', '>=', start);
      if (end !== undefined) q.where('e.created', '<=', end);
      const { rows, count } = await pagedRows<EventView>(q, pageWindow(p));
      return {
        kind: 'list', name: 'event', count,
        items: rows.map((e) => ({
          id: e.uuid, type: e.type, level: e.level, description: e.description, username: e.username ?? undefined,
          account: e.account_name ?? undefined, accountid: e.account_uuid ?? undefined, domainid: e.domain_uuid ?? undefined, domain: e.domain_name ?? undefined,
          resourceid: e.resource_id ?? undefined, resourcetype: e.resource_type ?? undefined, state: e.state, created: formatDate(e.created),
        })),
      };
    },
  }),
];
