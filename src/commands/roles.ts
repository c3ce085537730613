import { paramError } from '../core/errors';
import { isRootAdmin } from '../identity/caller';
import { DEFAULT_ROLES, type DefaultRole } from '../identity/roles';
import { defineCommand, listParams, param, type ResponseField } from './define';
import { listUnowned } from './list';

const roleFields: readonly ResponseField[] = [
  { name: 'id', type: 'string', description: 'the ID of the role' },
  { name: 'name', type: 'string', description: 'the name of the role' },
  { name: 'type', type: 'string', description: 'the type of the role' },
  { name: 'description', type: 'string', description: 'the description of the role' },
  { name: 'isdefault', type: 'boolean', description: 'true if role is default, false otherwise' },
  { name: 'ispublic', type: 'boolean', description: 'Indicates whether the role will be visible to all users (public) or only to root admins (private).' },
  { name: 'state', type: 'string', description: 'the state of the role' },
];

const roleResponse = (r: DefaultRole) => ({
  id: r.uuid, name: r.name, type: r.type, description: r.description, isdefault: true, ispublic: true, state: 'Enabled',
});

/** A role by uuid, or CloudStack's 431. */
export function requireRole(uuid: string): DefaultRole {
  const role = DEFAULT_ROLES.find((r) => r.uuid === uuid);
  if (!role) throw paramError(`Unable to find role by id ${uuid}; listRoles shows the roles of this server`);
  return role;
}

export const roleCommands = [
  defineCommand({
    name: 'listRoles',
    since: '4.9.0',
    description: "Lists dynamic roles in CloudStack: here CloudStack's four default roles (custom roles are not supported). A domain admin sees the Domain Admin and User roles.",
    roles: ['Admin', 'DomainAdmin'],
    related: 'createAccount',
    params: {
      ...listParams,
      id: param.uuid({ description: 'List role by role ID.', related: 'listRoles' }),
      name: param.string({ description: 'List role by role name.' }),
      type: param.string({ description: 'List role by role type, valid options are: Admin, ResourceAdmin, DomainAdmin, User.' }),
    },
    response: roleFields,
    async handler(p, ctx) {
      // CloudStack hides the roles above a non-root caller's own type.
      const visible = isRootAdmin(ctx.caller) ? DEFAULT_ROLES : DEFAULT_ROLES.filter((r) => r.type === 'DomainAdmin' || r.type === 'User');
      const rows = visible.filter((r) => (!p.id || r.uuid === p.id) && (!p.name || r.name.toLowerCase() === p.name.toLowerCase())
        // type: exact, as CloudStack's RoleType.fromString.
        && (!p.type || r.type === p.type) && (!p.keyword || r.name.toLowerCase().includes(p.keyword.toLowerCase())));
      return listUnowned(p, 'role', async ({ offset, limit }) => ({ rows: rows.slice(offset, limit === undefined ? undefined : offset + limit), count: rows.length }), roleResponse);
    },
  }),
];
