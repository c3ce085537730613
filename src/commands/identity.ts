import { pageWindow } from './pagination';
import { pagedRows } from '../db/paging';
import { ACCOUNT_TYPES, isRootAdmin, type Caller } from '../identity/caller';
import { applyOwnerScope } from '../db/owner-scope';
import type { UserRow } from '../identity/directory';
import { paramError, permissionError } from '../core/errors';
import type { App } from '../app';
import { ALL_ROLES, defineCommand, listParams, ownerListParams, param } from './define';
import {
  accountFields, accountQuery, accountResponse, domainFields, domainQuery, domainResponse, userFields, userQuery, userResponse,
  type AccountView, type DomainView, type UserView,
} from './responses/identity';

const ADMINS = ['Admin', 'DomainAdmin'] as const;

/** The width of `domain.path` (migration 001): checked before the insert, so both databases answer 431. */
const DOMAIN_PATH_MAX_LENGTH = 512;
const actor = (c: Caller) => ({ userId: c.userId, accountId: c.accountId, domainId: c.domainId });

/** A user the caller may manage: one of an account the caller reaches (src/identity/access.ts). */
async function requireManagedUser(app: App, caller: Caller, uuid: string): Promise<UserRow> {
  const user = await app.directory.userByUuid(uuid);
  if (!user) throw paramError(`Unable to find user by id ${uuid}`);
  const account = await app.directory.accountById(user.account_id);
  if (!account) throw paramError(`Unable to find user by id ${uuid}`);
  await app.directory.requireAccountAccess(caller, account, `Caller ${caller.username} does not have permission to manage user ${uuid}`);
  return user;
}

const userKeysFields = [
  { name: 'apikey', type: 'string', description: 'the api key of the registered user' },
  { name: 'secretkey', type: 'string', description: 'the secret key of the registered user' },
] as const;

export const identityCommands = [
  defineCommand({
    name: 'listDomains',
    description: 'Lists domains and provides detailed information for listed domains',
    roles: ALL_ROLES,
    related: 'createDomain',
    params: {
      ...listParams,
      id: param.uuid({ description: 'List domain by domain ID.', related: 'listDomains' }),
      name: param.string({ description: 'List domain by domain name.' }),
      level: param.integer({ description: 'List domains by domain level.' }),
      listall: param.boolean({ default: false, description: "If set to false, list only resources belonging to the command's caller; if set to true - list resources that the caller is authorized to see. Default value is false" }),
      details: param.string({ description: 'comma separated list of domain details requested (ignored)' }),
      showicon: param.boolean({ description: 'flag to display the resource icon for domains' }),
    },
    response: domainFields,
    async handler(p, ctx) {
      const q = domainQuery(ctx.app.db).orderBy('d.path');
      if (p.id) q.where('d.uuid', p.id);
      if (p.name) q.where('d.name', p.name);
      if (p.level !== undefined) q.where('d.level', p.level);
      if (p.keyword) q.where('d.name', 'like', `%${p.keyword}%`);
      // Users see their own domain; admins theirs, or with listall/id every domain they reach (by id).
      if (ctx.caller.role === 'User' || (!p.listall && !p.id)) q.where('d.id', ctx.caller.domainId);
      else if (!isRootAdmin(ctx.caller)) q.whereIn('d.id', await ctx.app.directory.access.subtreeIds(ctx.caller.domainId));
      const { rows, count } = await pagedRows<DomainView>(q, pageWindow(p));
      return { kind: 'list', name: 'domain', items: rows.map(domainResponse), count };
    },
  }),
  defineCommand({
    name: 'createDomain',
    description: 'Creates a domain',
    roles: ADMINS,
    related: 'listDomains',
    params: {
      name: param.string({ required: true, description: 'creates domain with this name' }),
      parentdomainid: param.uuid({ description: 'assigns new domain a parent domain by domain ID of the parent. If no parent domain is specified, the ROOT domain is assumed.', related: 'listDomains' }),
      networkdomain: param.string({ description: 'Network domain for networks in the domain' }),
    },
    response: domainFields,
    async handler(p, ctx) {
      const parent = p.parentdomainid ? await ctx.app.directory.requireDomain(ctx.caller, p.parentdomainid) : await ctx.app.directory.domainById(ctx.caller.domainId);
      if (!parent) throw paramError('Unable to find the parent domain');
      const pathLength = `${parent.path}${p.name}/`.length;
      if (pathLength > DOMAIN_PATH_MAX_LENGTH) {
        throw paramError(`Domain path too long: the path of domain ${p.name.length > 40 ? `${p.name.slice(0, 40)}…` : p.name} under ${parent.name} would be ${pathLength} characters, more than the maximum of ${DOMAIN_PATH_MAX_LENGTH}; use a shorter name`);
      }
      const d = await ctx.app.directory.createDomain(parent, p.name, p.networkdomain);
      await ctx.app.events.record({ type: 'DOMAIN.CREATE', description: `Domain ${d.name} created`, actor: actor(ctx.caller), resourceType: 'Domain', resourceId: d.uuid });
      const [view] = await domainQuery(ctx.app.db).where('d.id', d.id);
      return { kind: 'object', name: 'domain', value: domainResponse(view as DomainView) };
    },
  }),
  defineCommand({
    name: 'listAccounts',
    description: 'Lists accounts and provides detailed account information for listed accounts',
    roles: ALL_ROLES,
    related: 'createAccount',
    params: {
      ...ownerListParams,
      id: param.uuid({ description: 'list account by account ID', related: 'listAccounts' }),
      name: param.string({ description: 'list account by account name' }),
      accounttype: param.integer({ description: 'list accounts by account type: 0 user, 1 root admin, 2 domain admin' }),
      state: param.string({ description: 'list accounts by state' }),
      showicon: param.boolean({ description: 'flag to display the resource icon for accounts' }),
    },
    response: accountFields,
    async handler(p, ctx) {
      const { directory, db } = ctx.app;
      let scope = await directory.listScope(ctx.caller, p);
      // Admins without listall/domainid see the accounts of their own domain, as CloudStack does.
      if (scope.kind === 'accounts' && ctx.caller.role !== 'User' && !p.account) scope = await directory.access.domainScope(ctx.caller, ctx.caller.domainId, false);
      // A project's own account is no account of a person: CloudStack's listAccounts never shows it.
      const q = applyOwnerScope(accountQuery(db), scope, { accountCol: 'a.id', domainCol: 'a.domain_id' }).whereNot('a.type', ACCOUNT_TYPES.Project).orderBy('a.id');
      if (p.id) q.where('a.uuid', p.id);
      if (p.name) q.where('a.account_name', p.name);
      if (p.accounttype !== undefined) q.where('a.type', p.accounttype);
      if (p.state) q.where('a.state', p.state.toLowerCase());
      if (p.keyword) q.where('a.account_name', 'like', `%${p.keyword}%`);
      const { rows, count } = await pagedRows<AccountView>(q, pageWindow(p));
      const users: UserView[] = rows.length ? await userQuery(db).whereIn('a.id', rows.map((a) => a.id)) : [];
      return { kind: 'list', name: 'account', items: rows.map((a) => accountResponse(a, users)), count };
    },
  }),
  defineCommand({
    name: 'createAccount',
    description: 'Creates an account with its first user',
    roles: ADMINS,
    related: 'listAccounts',
    params: {
      username: param.string({ required: true, description: 'Unique username' }),
      password: param.string({ required: true, description: 'Clear text password (send it by POST over TLS)' }),
      firstname: param.string({ required: true, description: 'firstname' }),
      lastname: param.string({ required: true, description: 'lastname' }),
      email: param.string({ description: 'email' }),
      account: param.string({ description: 'Name of the account to be created. The user will be added to this newly created account. If no account is specified, the username will be used as the account name.' }),
      accounttype: param.integer({ default: 0, allowed: [0, 1, 2], description: 'Type of the account: 0 user, 1 root admin, 2 domain admin' }),
      domainid: param.uuid({ description: 'Creates the user under the specified domain.', related: 'listDomains' }),
      timezone: param.string({ description: "Specifies a timezone for this command, e.g. 'UTC'" }),
    },
    response: accountFields,
    async handler(p, ctx) {
      const { directory, db } = ctx.app;
      const domain = p.domainid ? await directory.requireDomain(ctx.caller, p.domainid) : await directory.domainById(ctx.caller.domainId);
      if (!domain) throw paramError('Unable to find the domain');
      if (p.accounttype === ACCOUNT_TYPES.Admin && !isRootAdmin(ctx.caller)) throw permissionError('Only root admins can create root admin accounts');
      // As CloudStack: a root-admin account lives in ROOT, where no domain admin below ROOT reaches it.
      if (p.accounttype === ACCOUNT_TYPES.Admin && domain.parent_id !== null) throw paramError('Unable to create user of admin role type in non-ROOT domain');
      const { account } = await directory.createAccountWithUser({
        domain, accountName: p.account ?? p.username, accountType: p.accounttype, username: p.username, password: p.password,
        firstname: p.firstname, lastname: p.lastname, email: p.email, timezone: p.timezone,
      });
      await ctx.app.events.record({ type: 'ACCOUNT.CREATE', description: `Successfully created account ${account.account_name}`, actor: actor(ctx.caller), resourceType: 'Account', resourceId: account.uuid });
      const [view] = await accountQuery(db).where('a.id', account.id);
      const users: UserView[] = await userQuery(db).where('a.id', account.id);
      return { kind: 'object', name: 'account', value: accountResponse(view as AccountView, users) };
    },
  }),
  defineCommand({
    name: 'listUsers',
    description: 'Lists user accounts',
    roles: ALL_ROLES,
    related: 'createUser',
    params: {
      ...ownerListParams,
      id: param.uuid({ description: 'List user by ID.', related: 'listUsers' }),
      username: param.string({ description: 'List user by the username' }),
      accounttype: param.integer({ description: 'List users by account type: 0 user, 1 root admin, 2 domain admin' }),
      state: param.string({ description: 'List users by state of the user account.' }),
      showicon: param.boolean({ description: 'flag to display the resource icon for users' }),
    },
    response: userFields,
    async handler(p, ctx) {
      const { directory, db } = ctx.app;
      const q = userQuery(db).orderBy('u.id');
      // By id: any user the caller reaches (the same rule as getUserKeys); otherwise the list scope.
      let scope = p.id ? await directory.access.reach(ctx.caller) : await directory.listScope(ctx.caller, p);
      if (!p.id && scope.kind === 'accounts' && ctx.caller.role !== 'User' && !p.account) scope = await directory.access.domainScope(ctx.caller, ctx.caller.domainId, false);
      applyOwnerScope(q, scope, { accountCol: 'a.id', domainCol: 'a.domain_id' });
      if (p.id) q.where('u.uuid', p.id);
      if (p.username) q.where('u.username', p.username);
      if (p.accounttype !== undefined) q.where('a.type', p.accounttype);
      if (p.state) q.where('u.state', p.state.toLowerCase());
      if (p.keyword) q.where('u.username', 'like', `%${p.keyword}%`);
      const { rows, count } = await pagedRows<UserView>(q, pageWindow(p));
      return { kind: 'list', name: 'user', items: rows.map(userResponse), count };
    },
  }),
  defineCommand({
    name: 'createUser',
    description: 'Creates a user for an account that already exists',
    roles: ADMINS,
    related: 'listUsers',
    params: {
      username: param.string({ required: true, description: 'Unique username.' }),
      password: param.string({ required: true, description: 'Clear text password (send it by POST over TLS)' }),
      firstname: param.string({ required: true, description: 'firstname' }),
      lastname: param.string({ required: true, description: 'lastname' }),
      email: param.string({ description: 'email' }),
      account: param.string({ required: true, description: 'Creates the user under the specified account. If no account is specified, the username will be used as the account name.' }),
      domainid: param.uuid({ description: 'Creates the user under the specified domain. Has to be accompanied with the account parameter', related: 'listDomains' }),
      timezone: param.string({ description: "Specifies a timezone for this command, e.g. 'UTC'" }),
    },
    response: userFields,
    async handler(p, ctx) {
      const account = await ctx.app.directory.resolveOwner(ctx.caller, { account: p.account, domainid: p.domainid ?? ctx.caller.domainUuid });
      const user = await ctx.app.directory.createUser(account, { username: p.username, password: p.password, firstname: p.firstname, lastname: p.lastname, email: p.email, timezone: p.timezone });
      await ctx.app.events.record({ type: 'USER.CREATE', description: `Successfully created user ${user.username}`, actor: actor(ctx.caller), resourceType: 'User', resourceId: user.uuid });
      const [view] = await userQuery(ctx.app.db).where('u.id', user.id);
      return { kind: 'object', name: 'user', value: userResponse(view as UserView) };
    },
  }),
  defineCommand({
    name: 'registerUserKeys',
    description: 'This command allows a user to register for the developer API, returning a secret key and an API key. It replaces any keys the user had.',
    roles: ALL_ROLES,
    params: { id: param.uuid({ required: true, description: 'User id', related: 'listUsers' }) },
    response: userKeysFields,
    async handler(p, ctx) {
      const user = await requireManagedUser(ctx.app, ctx.caller, p.id);
      const keys = await ctx.app.directory.registerUserKeys(user);
      await ctx.app.events.record({ type: 'REGISTER.USER.KEY', description: `Registered API keys for user ${user.username}`, actor: actor(ctx.caller), resourceType: 'User', resourceId: user.uuid });
      return { kind: 'object', name: 'userkeys', value: { apikey: keys.apiKey, secretkey: keys.secretKey } };
    },
  }),
  defineCommand({
    name: 'getUserKeys',
    description: "This command allows the user to query the secret and API keys for the account",
    roles: ALL_ROLES,
    params: { id: param.uuid({ required: true, description: 'ID of the user whose keys are required', related: 'listUsers' }) },
    response: userKeysFields,
    async handler(p, ctx) {
      const user = await requireManagedUser(ctx.app, ctx.caller, p.id);
      const keys = ctx.app.directory.getUserKeys(user);
      return { kind: 'object', name: 'userkeys', value: keys ? { apikey: keys.apiKey, secretkey: keys.secretKey } : {} };
    },
  }),
];
