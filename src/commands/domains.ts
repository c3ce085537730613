import { defineCommand, listParams, param } from './define';
import { listUnowned } from './list';
import { domainFields, domainResponse } from './responses/identity';

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
      const { directory } = ctx;
      const parent = p.id ? await directory.accessibleDomain(ctx.caller, p.id) : await ctx.repos.domains.byId(ctx.caller.domainId);
      // Descendants by parent ids (src/identity/access.ts), never by a path pattern; none without a parent.
      const below = !parent ? { ids: [] }
        : p.isrecursive ? { ids: (await directory.access.subtreeIds(parent.id)).filter((id) => id !== parent.id) }
          : { parentId: parent.id };
      return listUnowned(p, 'domain', (page) => ctx.repos.domains.list({ ...below, name: p.name, keyword: p.keyword }, page), domainResponse);
    },
  }),
];
