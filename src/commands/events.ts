import { parseListDate } from './dates';
import { formatDate } from '../core/dates';
import type { EventView } from '../db/repositories/events';
import { ALL_ROLES, defineCommand, ownerListParams, param } from './define';
import { listOwned } from './list';
import { ownerOf, projectFields } from './responses/owner';

const eventResponse = (e: EventView) => ({
  id: e.uuid, type: e.type, level: e.level, description: e.description, username: e.username ?? undefined,
  ...ownerOf(e), domainid: e.domainUuid ?? undefined, domain: e.domainName ?? undefined,
  resourceid: e.resourceId ?? undefined, resourcetype: e.resourceType ?? undefined, state: e.state, created: formatDate(e.created),
});


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
      ...projectFields,
      { name: 'domainid', type: 'string', description: 'the id of the account\'s domain' },
      { name: 'domain', type: 'string', description: 'the name of the account\'s domain' },
      { name: 'resourceid', type: 'string', description: 'the id of the resource' },
      { name: 'resourcetype', type: 'string', description: 'the type of the resource' },
      { name: 'state', type: 'string', description: 'the state of the event' },
      { name: 'created', type: 'date', description: 'the date the event was created' },
    ],
    async handler(p, ctx) {
      return listOwned(ctx, p, 'event', (scope, page) => {
        const start = p.startdate === undefined ? undefined : parseListDate(p.startdate, 'startdate');
        const end = p.enddate === undefined ? undefined : parseListDate(p.enddate, 'enddate');
        return ctx.repos.events.list(scope, {
          uuid: p.id, type: p.type, level: p.level?.toUpperCase(), resourceId: p.resourceid, resourceType: p.resourcetype, keyword: p.keyword,
          from: start === undefined ? undefined : new Date(start), to: end === undefined ? undefined : new Date(end),
        }, page);
      }, eventResponse);
    },
  }),
];
