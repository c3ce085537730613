import type { Knex } from 'knex';
import { formatDate } from '../../core/dates';
import { roleOf, ROLE_NAMES } from '../../identity/caller';
import type { ResponseField } from '../define';

/** ROOT/sub/child as CloudStack shows a domain path. */
export const prettyPath = (path: string): string => (path === '/' ? 'ROOT' : `ROOT${path.replace(/\/$/, '')}`);

export interface DomainView { id: number; uuid: string; name: string; path: string; level: number; network_domain: string | null; created: number; parent_uuid: string | null; parent_name: string | null; children: number }

export const domainFields: readonly ResponseField[] = [
  { name: 'id', type: 'string', description: 'the ID of the domain' },
  { name: 'name', type: 'string', description: 'the name of the domain' },
  { name: 'level', type: 'integer', description: 'the level of the domain' },
  { name: 'parentdomainid', type: 'string', description: 'the domain ID of the parent domain' },
  { name: 'parentdomainname', type: 'string', description: 'the domain name of the parent domain' },
  { name: 'haschild', type: 'boolean', description: 'whether the domain has one or more sub-domains' },
  { name: 'path', type: 'string', description: 'the path of the domain' },
  { name: 'networkdomain', type: 'string', description: 'the network domain' },
  { name: 'state', type: 'string', description: 'the state of the domain' },
  { name: 'created', type: 'date', description: 'the date when this domain was created' },
];

export const domainQuery = (db: Knex) =>
  db('domain as d').leftJoin('domain as p', 'p.id', 'd.parent_id').whereNull('d.removed')
    .select('d.id', 'd.uuid', 'd.name', 'd.path', 'd.level', 'd.network_domain', 'd.created', 'p.uuid as parent_uuid', 'p.name as parent_name',
      db.raw('(select count(*) from domain c where c.parent_id = d.id and c.removed is null) as children'));

export const domainResponse = (d: DomainView) => ({
  id: d.uuid, name: d.name, level: Number(d.level), parentdomainid: d.parent_uuid ?? undefined, parentdomainname: d.parent_name ?? undefined,
  haschild: Number(d.children) > 0, path: prettyPath(d.path), networkdomain: d.network_domain ?? undefined, state: 'Active', created: formatDate(d.created),
});

export interface UserView {
  id: number; uuid: string; username: string; firstname: string; lastname: string; email: string | null; state: string; created: number;
  timezone: string | null; api_key: string | null; account_id: number; account_uuid: string; account_name: string; account_type: number;
  domain_id: number; domain_uuid: string; domain_name: string; domain_path: string;
}

export const userQuery = (db: Knex) =>
  db('user as u').join('account as a', 'a.id', 'u.account_id').join('domain as d', 'd.id', 'a.domain_id')
    .whereNull('u.removed').whereNull('a.removed')
    .select('u.id', 'u.uuid', 'u.username', 'u.firstname', 'u.lastname', 'u.email', 'u.state', 'u.created', 'u.timezone', 'u.api_key',
      'a.id as account_id', 'a.uuid as account_uuid', 'a.account_name', 'a.type as account_type',
      'd.id as domain_id', 'd.uuid as domain_uuid', 'd.name as domain_name', 'd.path as domain_path');

export const userFields: readonly ResponseField[] = [
  { name: 'id', type: 'string', description: 'the user ID' },
  { name: 'username', type: 'string', description: 'the user name' },
  { name: 'firstname', type: 'string', description: 'the user firstname' },
  { name: 'lastname', type: 'string', description: 'the user lastname' },
  { name: 'email', type: 'string', description: 'the user email address' },
  { name: 'created', type: 'date', description: 'the date and time the user account was created' },
  { name: 'state', type: 'string', description: 'the user state' },
  { name: 'account', type: 'string', description: 'the account name of the user' },
  { name: 'accountid', type: 'string', description: 'the account ID of the user' },
  { name: 'accounttype', type: 'integer', description: 'the account type of the user' },
  { name: 'roletype', type: 'string', description: 'the type of the role (Admin, DomainAdmin, User)' },
  { name: 'rolename', type: 'string', description: 'the name of the role' },
  { name: 'domain', type: 'string', description: 'the domain name of the user' },
  { name: 'domainid', type: 'string', description: 'the domain ID of the user' },
  { name: 'domainpath', type: 'string', description: 'path of the domain to which the user belongs' },
  { name: 'timezone', type: 'string', description: 'the timezone user was created in' },
  { name: 'apikey', type: 'string', description: 'the api key of the user' },
  { name: 'usersource', type: 'string', description: 'the source type of the user: native' },
];

export const userResponse = (u: UserView) => {
  const role = roleOf(Number(u.account_type));
  return {
    id: u.uuid, username: u.username, firstname: u.firstname, lastname: u.lastname, email: u.email ?? undefined, created: formatDate(u.created),
    state: u.state, account: u.account_name, accountid: u.account_uuid, accounttype: Number(u.account_type), roletype: role, rolename: ROLE_NAMES[role],
    domain: u.domain_name, domainid: u.domain_uuid, domainpath: prettyPath(u.domain_path), timezone: u.timezone ?? undefined,
    apikey: u.api_key ?? undefined, usersource: 'native', isdefault: u.username === 'admin' && u.domain_path === '/',
  };
};

export interface AccountView { id: number; uuid: string; account_name: string; type: number; state: string; created: number; domain_id: number; domain_uuid: string; domain_name: string; domain_path: string }

export const accountQuery = (db: Knex) =>
  db('account as a').join('domain as d', 'd.id', 'a.domain_id').whereNull('a.removed')
    .select('a.id', 'a.uuid', 'a.account_name', 'a.type', 'a.state', 'a.created', 'd.id as domain_id', 'd.uuid as domain_uuid', 'd.name as domain_name', 'd.path as domain_path');

export const accountFields: readonly ResponseField[] = [
  { name: 'id', type: 'string', description: 'the id of the account' },
  { name: 'name', type: 'string', description: 'the name of the account' },
  { name: 'accounttype', type: 'integer', description: 'account type (admin, domain-admin, user)' },
  { name: 'roletype', type: 'string', description: 'the type of the role (Admin, DomainAdmin, User)' },
  { name: 'rolename', type: 'string', description: 'the name of the role' },
  { name: 'domainid', type: 'string', description: 'id of the Domain the account belongs to' },
  { name: 'domain', type: 'string', description: 'name of the Domain the account belongs to' },
  { name: 'domainpath', type: 'string', description: 'path of the Domain the account belongs to' },
  { name: 'state', type: 'string', description: 'the state of the account' },
  { name: 'created', type: 'date', description: 'the date when this account was created' },
  { name: 'user', type: 'list', description: 'the list of users associated with account', response: userFields },
];

export const accountResponse = (a: AccountView, users: UserView[]) => {
  const role = roleOf(Number(a.type));
  return {
    id: a.uuid, name: a.account_name, accounttype: Number(a.type), roletype: role, rolename: ROLE_NAMES[role],
    domainid: a.domain_uuid, domain: a.domain_name, domainpath: prettyPath(a.domain_path), state: a.state, created: formatDate(a.created),
    user: users.filter((u) => u.account_id === a.id).map(userResponse),
  };
};
