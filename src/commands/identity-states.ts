import { ACCOUNT_TYPES, type Caller } from '../identity/caller';
import type { Account, User } from '../identity/directory';
import { KmsError, paramError, permissionError } from '../core/errors';
import { asyncParams } from './async-jobs';
import type { Services } from './context';
import type { CommandContext } from './define';
import { defineCommand, param, type Role } from './define';
import { defineJob, instanceOf, submitJob } from './jobs';
import { accountFields, accountResponse, userFields, userResponse } from './responses/identity';

/**
 * disableUser, enableUser, lockUser, disableAccount and enableAccount, with CloudStack's answers
 * (AccountManagerImpl): states `enabled`, `disabled`, `locked`; the two disables are async. A
 * disabled or locked user, or a user of a disabled or locked account, is refused at its next
 * request (API key or session) with a 401.
 */

const ADMINS: readonly Role[] = ['Admin', 'DomainAdmin'];

/** An account the caller may act on, or the 531 CloudStack gives. */
const requireReachableAccount = (s: Services, caller: Caller, account: Account): Promise<Account> =>
  s.directory.accessibleAccount(caller, account, 'Caller does not have permission to operate with provided resource.');

/** A live user the caller may act on, with its account; `notFound` is CloudStack's text for the command. */
async function requireUserTarget(s: Services, caller: Caller, uuid: string, notFound: string): Promise<{ user: User; account: Account }> {
  const user = await s.repos.users.byUuid(uuid);
  const account = user && (await s.repos.accounts.byId(user.accountId));
  if (!user || !account) throw paramError(notFound);
  await requireReachableAccount(s, caller, account);
  return { user, account };
}

/** The account named by `id`, or by `account`+`domainid`, that the caller may act on. */
async function requireAccountTarget(ctx: CommandContext, p: { id?: string; account?: string; domainid?: string }): Promise<Account> {
  if (!p.id && !(p.account && p.domainid)) throw paramError('Either id or account with domainid must be specified');
  // By name, the domain is checked first, so names in domains out of reach cannot be probed.
  const account = p.id
    ? await ctx.repos.accounts.byUuid(p.id)
    : await ctx.repos.accounts.byName((await ctx.directory.accessibleDomain(ctx.caller, p.domainid!)).id, p.account!);
  if (!account) throw paramError(`Unable to find account by accountId: ${p.id ?? 'null'} OR by name: ${p.account ?? 'null'} in domain ${p.domainid ?? 'null'}`);
  return requireReachableAccount(ctx, ctx.caller, account);
}

/** The bootstrap `admin` user of ROOT's `admin` account: never disabled or locked, so the cloud keeps an administrator. */
async function isDefaultAdminUser(s: Services, user: User, account: Account): Promise<boolean> {
  return user.username === 'admin' && isDefaultAdmin(s, account);
}

/** The bootstrap `admin` account of ROOT: never disabled or locked, as CloudStack's default admin. */
async function isDefaultAdmin(s: Services, account: Account): Promise<boolean> {
  const root = await s.repos.domains.byPath('/');
  return !!root && account.domainId === root.id && account.name === 'admin' && account.type === ACCOUNT_TYPES.Admin;
}

const actorOf = (c: Caller) => ({ userId: c.userId, accountId: c.accountId, domainId: c.domainId });

async function userObject(s: Services, userId: number) {
  const view = await s.repos.users.view(userId);
  if (!view) throw new KmsError('internal', `user ${userId} was removed while its answer was written`);
  return userResponse(view);
}

async function accountObject(s: Services, accountId: number) {
  const view = await s.repos.accounts.view(accountId);
  if (!view) throw new KmsError('internal', `account ${accountId} was removed while its answer was written`);
  return accountResponse(view, await s.repos.users.viewsOfAccounts([accountId]));
}

export const IDENTITY_JOBS = { disableUser: 'user.disable', disableAccount: 'account.disable' } as const;

/**
 * The async halves of disableUser and disableAccount. A job may run long after it was submitted
 * (no worker, a stalled queue) and its submitter may have lost its rights meanwhile: the submitter
 * is re-loaded (still enabled) and must still reach the target.
 */
const disableUserJob = defineJob({
  kind: IDENTITY_JOBS.disableUser,
  args: {},
  async run(_args, job, ctx) {
    const uuid = instanceOf(job);
    const user = await ctx.repos.users.byUuid(uuid);
    const account = user && (await ctx.repos.accounts.byId(user.accountId));
    if (!user || !account) throw paramError(`Unable to find active user by id ${uuid}`);
    const caller = await ctx.submitter();
    await requireReachableAccount(ctx, caller, account);
    await ctx.directory.setUserState(user.id, 'disabled');
    await ctx.events.record({ type: 'USER.DISABLE', description: `Disabled user ${user.username}`, actor: actorOf(caller), resourceType: 'User', resourceId: user.uuid });
    return { type: 'object', name: 'user', value: await userObject(ctx, user.id) };
  },
});

const disableAccountJob = defineJob({
  kind: IDENTITY_JOBS.disableAccount,
  args: { lock: 'boolean' },
  async run({ lock }, job, ctx) {
    const uuid = instanceOf(job);
    const account = await ctx.repos.accounts.byUuid(uuid);
    if (!account) throw paramError(`Unable to find account by accountId: ${uuid} OR by name: null in domain null`);
    const caller = await ctx.submitter();
    await requireReachableAccount(ctx, caller, account);
    if (lock && account.state === 'disabled') {
      throw new KmsError('internal', `Unable to lock account ${account.name} by accountId: ${account.uuid} OR by name: ${account.name} in domain ${account.domainId}`);
    }
    const target = lock ? 'locked' : 'disabled';
    if (account.state !== target) await ctx.directory.setAccountState(account.id, target);
    await ctx.events.record({
      type: 'ACCOUNT.DISABLE', description: `${lock ? 'Locked' : 'Disabled'} account ${account.name}`, actor: actorOf(caller), resourceType: 'Account', resourceId: account.uuid,
    });
    return { type: 'object', name: 'account', value: await accountObject(ctx, account.id) };
  },
});

const userId = param.uuid({ required: true, description: 'User ID.', related: 'listUsers' });
const accountTarget = {
  id: param.uuid({ description: 'Account ID', related: 'listAccounts' }),
  account: param.string({ description: 'Account name; use it with domainid' }),
  domainid: param.uuid({ description: 'The domain ID of the account; use it with account', related: 'listDomains' }),
};

export const identityStateCommands = [
  defineCommand({
    name: 'disableUser',
    description: 'Disables a user account',
    isAsync: true,
    roles: ADMINS,
    related: 'listUsers',
    params: { ...asyncParams, id: userId },
    response: userFields,
    job: disableUserJob,
    async handler(p, ctx) {
      const { user, account } = await requireUserTarget(ctx, ctx.caller, p.id, `Unable to find active user by id ${p.id}`);
      if (await isDefaultAdminUser(ctx, user, account)) {
        throw paramError(`User: ${user.username} is the default admin user, disabling is not allowed`);
      }
      return submitJob(ctx, p, disableUserJob, {}, { instanceType: 'User', instanceId: user.uuid });
    },
  }),
  defineCommand({
    name: 'enableUser',
    description: 'Enables a user account; it also enables the account and resets the count of failed logins',
    roles: ADMINS,
    related: 'listUsers',
    params: { id: userId },
    response: userFields,
    async handler(p, ctx) {
      const { user, account } = await requireUserTarget(ctx, ctx.caller, p.id, `Unable to find active user by id ${p.id}`);
      await ctx.directory.setUserState(user.id, 'enabled');
      await ctx.directory.setAccountState(account.id, 'enabled');
      await ctx.events.record({ type: 'USER.ENABLE', description: `Enabled user ${user.username}`, actor: actorOf(ctx.caller), resourceType: 'User', resourceId: user.uuid });
      return { kind: 'object', name: 'user', value: await userObject(ctx, user.id) };
    },
  }),
  defineCommand({
    name: 'lockUser',
    description: 'Locks a user account; the account is locked too when no other user of it is enabled',
    roles: ADMINS,
    related: 'listUsers',
    params: { id: userId },
    response: userFields,
    async handler(p, ctx) {
      const { user, account } = await requireUserTarget(ctx, ctx.caller, p.id, 'Unable to find user by id');
      if (await isDefaultAdminUser(ctx, user, account)) {
        throw permissionError(`user: ${user.username} is the default admin user, locking is not allowed`);
      }
      if (user.state === 'disabled') throw new KmsError('internal', `Unable to lock user ${user.uuid}`);
      if (user.state !== 'locked') {
        await ctx.directory.setUserState(user.id, 'locked');
        await ctx.directory.lockAccountWithoutEnabledUsers(account.id);
        await ctx.events.record({ type: 'USER.LOCK', description: `Locked user ${user.username}`, actor: actorOf(ctx.caller), resourceType: 'User', resourceId: user.uuid });
      }
      return { kind: 'object', name: 'user', value: await userObject(ctx, user.id) };
    },
  }),
  defineCommand({
    name: 'disableAccount',
    description: 'Disables an account; with lock=true only locks it',
    isAsync: true,
    roles: ADMINS,
    related: 'listAccounts',
    params: {
      ...asyncParams,
      ...accountTarget,
      lock: param.boolean({ required: true, description: 'If true, only lock the account; else disable the account' }),
    },
    response: accountFields,
    job: disableAccountJob,
    async handler(p, ctx) {
      const account = await requireAccountTarget(ctx, p);
      if (await isDefaultAdmin(ctx, account)) {
        throw new KmsError('internal', `Unable to update account ${account.name} by accountId: ${account.uuid} OR by name: ${account.name} in domain ${p.domainid ?? 'null'}`);
      }
      return submitJob(ctx, p, disableAccountJob, { lock: p.lock }, { instanceType: 'Account', instanceId: account.uuid });
    },
  }),
  defineCommand({
    name: 'enableAccount',
    description: 'Enables an account',
    roles: ADMINS,
    related: 'listAccounts',
    params: accountTarget,
    response: accountFields,
    async handler(p, ctx) {
      const account = await requireAccountTarget(ctx, p);
      await ctx.directory.setAccountState(account.id, 'enabled');
      await ctx.events.record({ type: 'ACCOUNT.ENABLE', description: `Enabled account ${account.name}`, actor: actorOf(ctx.caller), resourceType: 'Account', resourceId: account.uuid });
      return { kind: 'object', name: 'account', value: await accountObject(ctx, account.id) };
    },
  }),
];
