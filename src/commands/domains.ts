import { pageWindow } from './pagination';
import { pagedRows } from '../db/paging';
import { defineCommand, listParams, param } from './define';
import { domainFields, domainQuery, domainResponse, type DomainView } from './responses/identity';

/**
 * listDomainChildren: the second permission of the UI's Domains section (`#/domain`, a tree that
 * expands a node by asking for its children). Admins and domain admins, within their own subtree.
 */
export const domainCommands = [
  defineCommand({
    name: 'listDomainChildren',
    description: 'Lists all children domains belonging to a specified domain',
    roles: ['Admin', 'DomainAdmin'],
    related: 'listDomains',
    params: {
      ...listParams,
      id: param.uuid({ description: "list children domain by parent domain ID; the caller's domain when absent", related: 'listDomains' }),
      name: param.string({ description: 'list children domains by name' }),
      isrecursive: param.boolean({ default: false, description: 'to return the entire tree, use the value "true". To return the first level children, use the value "false".' }),
      listall: param.boolean({ default: false, description: "If set to false, list only resources belonging to the command's caller; if set to true - list resources that the caller is authorized to see. Default value is false" }),
      showicon: param.boolean({ description: 'flag to display the resource icon for domains' }),
    },
    response: domainFields,
    async handler(p, ctx) {
      const { directory } = ctx.app;
      const parent = p.id ? await directory.requireDomain(ctx.caller, p.id) : await directory.domainById(ctx.caller.domainId);
      const q = domainQuery(ctx.app.db).orderBy('d.path');
      if (parent) {
        // Descendants by parent ids (src/identity/access.ts), never by a path pattern.
        if (p.isrecursive) q.whereIn('d.id', (await directory.access.subtreeIds(parent.id)).filter((id) => id !== parent.id));
        else q.where('d.parent_id', parent.id);
      } else q.whereRaw('1 = 0');
      if (p.name) q.where('d.name', p.name);
      if (p.keyword) q.where('d.name', 'like', `%${p.keyword}%`);
      const { rows, count } = await pagedRows<DomainView>(q, pageWindow(p));
      return { kind: 'list', name: 'domain', items: rows.map(domainResponse), count };
    },
  }),
];
