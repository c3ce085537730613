import { formatDate } from '../../core/dates';
import { roleOf, ROLE_NAMES } from '../../identity/caller';
import { roleOfAccountType } from '../../identity/roles';
import type { AccountView, DomainView, UserView } from '../../identity/directory';
import type { ResponseField } from '../define';

/** ROOT/sub/child as CloudStack shows a domain path. */
export const prettyPath = (path: string): string => (path === '/' ? 'ROOT' : `ROOT${path.replace(/\/$/, '')}`);

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

export const domainResponse = (d: DomainView) => ({
  id: d.uuid, name: d.name, level: d.level, parentdomainid: d.parentUuid ?? undefined, parentdomainname: d.parentName ?? undefined,
  haschild: d.hasChildren, path: prettyPath(d.path), networkdomain: d.networkDomain ?? undefined, state: 'Active', created: formatDate(d.created),
});

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
  { name: 'roleid', type: 'string', description: 'the ID of the role' },
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
  const role = roleOf(u.accountType);
  return {
    id: u.uuid, username: u.username, firstname: u.firstname, lastname: u.lastname, email: u.email ?? undefined, created: formatDate(u.created),
    state: u.state, account: u.accountName, accountid: u.accountUuid, accounttype: u.accountType, roleid: roleOfAccountType(u.accountType).uuid, roletype: role, rolename: ROLE_NAMES[role],
    domain: u.domainName, domainid: u.domainUuid, domainpath: prettyPath(u.domainPath), timezone: u.timezone ?? undefined,
    apikey: u.apiKey ?? undefined, usersource: 'native', isdefault: u.username === 'admin' && u.domainPath === '/',
  };
};

export const accountFields: readonly ResponseField[] = [
  { name: 'id', type: 'string', description: 'the id of the account' },
  { name: 'name', type: 'string', description: 'the name of the account' },
  { name: 'accounttype', type: 'integer', description: 'account type (admin, domain-admin, user)' },
  { name: 'roleid', type: 'string', description: 'the ID of the role' },
  { name: 'roletype', type: 'string', description: 'the type of the role (Admin, DomainAdmin, User)' },
  { name: 'rolename', type: 'string', description: 'the name of the role' },
  { name: 'domainid', type: 'string', description: 'id of the Domain the account belongs to' },
  { name: 'domain', type: 'string', description: 'name of the Domain the account belongs to' },
  { name: 'domainpath', type: 'string', description: 'path of the Domain the account belongs to' },
  { name: 'state', type: 'string', description: 'the state of the account' },
  { name: 'created', type: 'date', description: 'the date when this account was created' },
  { name: 'user', type: 'list', description: 'the list of users associated with account', response: userFields },
];

export const accountResponse = (a: AccountView, users: readonly UserView[]) => {
  const role = roleOf(a.type);
  return {
    id: a.uuid, name: a.name, accounttype: a.type, roleid: roleOfAccountType(a.type).uuid, roletype: role, rolename: ROLE_NAMES[role],
    domainid: a.domainUuid, domain: a.domainName, domainpath: prettyPath(a.domainPath), state: a.state, created: formatDate(a.created),
    user: users.filter((u) => u.accountId === a.id).map(userResponse),
  };
};
