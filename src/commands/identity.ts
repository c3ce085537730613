import { ACCOUNT_TYPES, isRootAdmin, type Caller } from '../identity/caller';
import type { OwnerScope } from '../core/owner-scope';
import type { User } from '../identity/directory';
import { KmsError, paramError, permissionError } from '../core/errors';
import type { CommandContext } from './define';
import { ALL_ROLES, defineCommand, listParams, ownerListParams, param } from './define';
import { listOwned, listUnowned } from './list';
import { requireRole } from './roles';
import { accountFields, accountResponse, domainFields, domainResponse, userFields, userResponse } from './responses/identity';

const ADMINS = ['Admin', 'DomainAdmin'] as const;

/** The width of `domain.path` (migration 001): checked before the insert, so both databases answer 431. */
const DOMAIN_PATH_MAX_LENGTH = 512;
const actor = (c: Caller) => ({ userId: c.userId, accountId: c.accountId, domainId: c.domainId });

/** A user the caller may manage: one of an account the caller reaches (src/identity/access.ts). */
async function requireManagedUser(ctx: CommandContext, uuid: string): Promise<User> {
  const user = await ctx.repos.users.byUuid(uuid);
  if (!user) throw paramError(`Unable to find user by id ${uuid}`);
  const account = await ctx.repos.accounts.byId(user.accountId);
  if (!account) throw paramError(`Unable to find user by id ${uuid}`);
  await ctx.directory.accessibleAccount(ctx.caller, account, `Caller ${ctx.caller.username} does not have permission to manage user ${uuid}`);
  return user;
}

/** Admins without listall/domainid/account see the accounts (and users) of their own domain, as CloudStack does. */
async function ownDomainForAdmins(ctx: CommandContext, scope: OwnerScope, account: string | undefined): Promise<OwnerScope> {
  if (scope.kind === 'accounts' && ctx.caller.role !== 'User' && !account) return ctx.directory.access.domainScope(ctx.caller, ctx.caller.domainId, false);
  return scope;
}

/** An account as the API shows it, with its users. */
async function accountObject(ctx: CommandContext, accountId: number) {
  const view = await ctx.repos.accounts.view(accountId);
  if (!view) throw new KmsError('internal', `account ${accountId} was removed while its answer was written`);
  return accountResponse(view, await ctx.repos.users.viewsOfAccounts([accountId]));
}

/** A user as the API shows it. */
async function userObject(ctx: CommandContext, userId: number) {
  const view = await ctx.repos.users.view(userId);
  if (!view) throw new KmsError('internal', `user ${userId} was removed while its answer was written`);
  return userResponse(view);
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
      // Users see their own domain; admins theirs, or with listall/id every domain they reach (by id).
      const ids = ctx.caller.role === 'User' || (!p.listall && !p.id) ? [ctx.caller.domainId]
        : !isRootAdmin(ctx.caller) ? await ctx.directory.access.subtreeIds(ctx.caller.domainId) : undefined;
      return listUnowned(p, 'domain', (page) => ctx.repos.domains.list({ uuid: p.id, name: p.name, level: p.level, keyword: p.keyword, ids }, page), domainResponse);
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
      const parent = p.parentdomainid ? await ctx.directory.accessibleDomain(ctx.caller, p.parentdomainid) : await ctx.repos.domains.byId(ctx.caller.domainId);
      if (!parent) throw paramError('Unable to find the parent domain');
      const pathLength = `${parent.path}${p.name}/`.length;
      if (pathLength > DOMAIN_PATH_MAX_LENGTH) {
        throw paramError(`Domain path too long: the path of domain ${p.name.length > 40 ? `${p.name.slice(0, 40)}…` : p.name} under ${parent.name} would be ${pathLength} characters, more than the maximum of ${DOMAIN_PATH_MAX_LENGTH}; use a shorter name`);
      }
      const d = await ctx.directory.createDomain(parent, p.name, p.networkdomain);
      await ctx.events.record({ type: 'DOMAIN.CREATE', description: `Domain ${d.name} created`, actor: actor(ctx.caller), resourceType: 'Domain', resourceId: d.uuid });
      const view = await ctx.repos.domains.view(d.id);
      if (!view) throw paramError(`Unable to find domain by id ${d.uuid}`);
      return { kind: 'object', name: 'domain', value: domainResponse(view) };
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
      // A project's own account is no account of a person: CloudStack's listAccounts never shows it (the repository leaves it out).
      const filter = { uuid: p.id, name: p.name, type: p.accounttype, state: p.state?.toLowerCase(), keyword: p.keyword };
      return listOwned(ctx, p, 'account', async (scope, page) => {
        const { rows, count } = await ctx.repos.accounts.list(await ownDomainForAdmins(ctx, scope, p.account), filter, page);
        const users = await ctx.repos.users.viewsOfAccounts(rows.map((a) => a.id));
        return { rows: rows.map((account) => ({ account, users })), count };
      }, ({ account, users }) => accountResponse(account, users));
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
      accounttype: param.integer({ allowed: [0, 1, 2], description: 'Type of the account: 0 user, 1 root admin, 2 domain admin. Deprecated by roleid: with a roleid the role decides the type. Neither: a user account' }),
      roleid: param.uuid({ since: '4.9.0', description: 'Creates the account under the specified role (listRoles); the account type follows from the role type', related: 'listRoles' }),
      domainid: param.uuid({ description: 'Creates the user under the specified domain.', related: 'listDomains' }),
      timezone: param.string({ description: "Specifies a timezone for this command, e.g. 'UTC'" }),
      networkdomain: param.string({ description: "Network domain for the account's networks (the Add Account form sends it; this server has no networks, so it is not kept)" }),
    },
    response: accountFields,
    async handler(p, ctx) {
      const { directory } = ctx;
      const domain = p.domainid ? await directory.accessibleDomain(ctx.caller, p.domainid) : await ctx.repos.domains.byId(ctx.caller.domainId);
      if (!domain) throw paramError('Unable to find the domain');
      // As CloudStack's RoleType.getAccountTypeByRole: the role, when given, decides the type.
      const role = p.roleid ? requireRole(p.roleid) : undefined;
      if (role?.type === 'ResourceAdmin') throw paramError(`Role ${role.name} is not supported by this server (it manages no infrastructure); use Root Admin, Domain Admin or User`);
      const accountType = role ? role.accountType : (p.accounttype ?? ACCOUNT_TYPES.User);
      if (accountType === ACCOUNT_TYPES.Admin && !isRootAdmin(ctx.caller)) throw permissionError('Only root admins can create root admin accounts');
      // As CloudStack: a root-admin account lives in ROOT, where no domain admin below ROOT reaches it.
      if (accountType === ACCOUNT_TYPES.Admin && domain.parentId !== null) throw paramError('Unable to create user of admin role type in non-ROOT domain');
      const { account } = await directory.createAccountWithUser({
        domain, accountName: p.account ?? p.username, accountType, username: p.username, password: p.password,
        firstname: p.firstname, lastname: p.lastname, email: p.email, timezone: p.timezone,
      });
      await ctx.events.record({ type: 'ACCOUNT.CREATE', description: `Successfully created account ${account.name}`, actor: actor(ctx.caller), resourceType: 'Account', resourceId: account.uuid });
      return { kind: 'object', name: 'account', value: await accountObject(ctx, account.id) };
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
      const filter = { uuid: p.id, username: p.username, accountType: p.accounttype, state: p.state?.toLowerCase(), keyword: p.keyword };
      // By id: any user the caller reaches (the same rule as getUserKeys), whatever the owner parameters say.
      if (p.id) {
        const reach = await ctx.directory.access.reach(ctx.caller);
        return listUnowned(p, 'user', (page) => ctx.repos.users.list(reach, filter, page), userResponse);
      }
      return listOwned(ctx, p, 'user', async (scope, page) => ctx.repos.users.list(await ownDomainForAdmins(ctx, scope, p.account), filter, page), userResponse);
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
      const account = await ctx.directory.owningAccount(ctx.caller, { account: p.account, domainid: p.domainid ?? ctx.caller.domainUuid });
      const user = await ctx.directory.createUser(account, { username: p.username, password: p.password, firstname: p.firstname, lastname: p.lastname, email: p.email, timezone: p.timezone });
      await ctx.events.record({ type: 'USER.CREATE', description: `Successfully created user ${user.username}`, actor: actor(ctx.caller), resourceType: 'User', resourceId: user.uuid });
      return { kind: 'object', name: 'user', value: await userObject(ctx, user.id) };
    },
  }),
  defineCommand({
    name: 'registerUserKeys',
    description: 'This command allows a user to register for the developer API, returning a secret key and an API key. It replaces any keys the user had.',
    roles: ALL_ROLES,
    params: { id: param.uuid({ required: true, description: 'User id', related: 'listUsers' }) },
    response: userKeysFields,
    async handler(p, ctx) {
      const user = await requireManagedUser(ctx, p.id);
      const keys = await ctx.directory.registerUserKeys(user);
      await ctx.events.record({ type: 'REGISTER.USER.KEY', description: `Registered API keys for user ${user.username}`, actor: actor(ctx.caller), resourceType: 'User', resourceId: user.uuid });
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
      const user = await requireManagedUser(ctx, p.id);
      const keys = ctx.directory.userKeys(user);
      return { kind: 'object', name: 'userkeys', value: keys ? { apikey: keys.apiKey, secretkey: keys.secretKey } : {} };
    },
  }),
];
