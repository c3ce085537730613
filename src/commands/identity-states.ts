import type { App } from '../app';
import { ACCOUNT_TYPES, type Caller } from '../identity/caller';
import type { AccountRow, UserRow } from '../identity/directory';
import type { JobHandler, RunningJob } from '../jobs/types';
import { KmsError, paramError, permissionError } from '../core/errors';
import { asyncParams, submitAsync } from './async-jobs';
import { defineCommand, param, type Role } from './define';
import { accountFields, accountQuery, accountResponse, userFields, userQuery, userResponse, type AccountView, type UserView } from './responses/identity';

/**
 * disableUser, enableUser, lockUser, disableAccount and enableAccount, with CloudStack's answers
 * (AccountManagerImpl): states `enabled`, `disabled`, `locked`; the two disables are async. A
 * disabled or locked user, or a user of a disabled or locked account, is refused at its next
 * request (API key or session) with a 401.
 */

const ADMINS: readonly Role[] = ['Admin', 'DomainAdmin'];

/** An account the caller may act on, or the 531 CloudStack gives. */
const requireReachableAccount = (app: App, caller: Caller, account: AccountRow): Promise<AccountRow> =>
  app.directory.requireAccountAccess(caller, account, 'Caller does not have permission to operate with provided resource.');

/** A live user the caller may act on, with its account; `notFound` is CloudStack's text for the command. */
async function requireUserTarget(app: App, caller: Caller, uuid: string, notFound: string): Promise<{ user: UserRow; account: AccountRow }> {
  const user = await app.directory.userByUuid(uuid);
  const account = user && (await app.directory.accountById(user.account_id));
  if (!user || !account) throw paramError(notFound);
  await requireReachableAccount(app, caller, account);
  return { user, account };
}

/** The account named by `id`, or by `account`+`domainid`, that the caller may act on. */
async function requireAccountTarget(app: App, caller: Caller, p: { id?: string; account?: string; domainid?: string }): Promise<AccountRow> {
  if (!p.id && !(p.account && p.domainid)) throw paramError('Either id or account with domainid must be specified');
  // By name, the domain is checked first, so names in domains out of reach cannot be probed.
  const account = p.id
    ? await app.directory.accountByUuid(p.id)
    : await app.directory.accountByName((await app.directory.requireDomain(caller, p.domainid!)).id, p.account!);
  if (!account) throw paramError(`Unable to find account by accountId: ${p.id ?? 'null'} OR by name: ${p.account ?? 'null'} in domain ${p.domainid ?? 'null'}`);
  return requireReachableAccount(app, caller, account);
}

/** The bootstrap `admin` user of ROOT's `admin` account: never disabled or locked, so the cloud keeps an administrator. */
async function isDefaultAdminUser(app: App, user: UserRow, account: AccountRow): Promise<boolean> {
  return user.username === 'admin' && isDefaultAdmin(app, account);
}

/** The bootstrap `admin` account of ROOT: never disabled or locked, as CloudStack's default admin. */
async function isDefaultAdmin(app: App, account: AccountRow): Promise<boolean> {
  const root = await app.directory.domainByPath('/');
  return !!root && account.domain_id === root.id && account.account_name === 'admin' && account.type === ACCOUNT_TYPES.Admin;
}

const actorOf = (c: Caller) => ({ userId: c.userId, accountId: c.accountId, domainId: c.domainId });

async function userObject(app: App, userId: number) {
  const [view] = await userQuery(app.db).where('u.id', userId);
  return userResponse(view as UserView);
}

async function accountObject(app: App, accountId: number) {
  const [view] = await accountQuery(app.db).where('a.id', accountId);
  const users: UserView[] = await userQuery(app.db).where('a.id', accountId);
  return accountResponse(view as AccountView, users);
}

export const IDENTITY_JOBS = { disableUser: 'user.disable', disableAccount: 'account.disable' } as const;

/**
 * The submitter of a job, still enabled and still reaching the target: a job may run long after it
 * was submitted (no worker, a stalled queue), and its submitter may have lost its rights meanwhile.
 */
async function jobCaller(app: App, job: RunningJob, target: AccountRow): Promise<Caller> {
  const caller = await app.directory.loadCaller(job.userId);
  if (!caller) throw permissionError('The user who submitted this job no longer exists or is disabled');
  await requireReachableAccount(app, caller, target);
  return caller;
}

/** The async halves of disableUser and disableAccount. */
export const identityJobHandlers: Record<string, (app: App) => JobHandler> = {
  [IDENTITY_JOBS.disableUser]: (app) => async (job) => {
    const user = await app.directory.userByUuid(String(job.instanceId));
    const account = user && (await app.directory.accountById(user.account_id));
    if (!user || !account) throw paramError(`Unable to find active user by id ${String(job.instanceId)}`);
    const caller = await jobCaller(app, job, account);
    await app.directory.setUserState(user.id, 'disabled');
    await app.events.record({ type: 'USER.DISABLE', description: `Disabled user ${user.username}`, actor: actorOf(caller), resourceType: 'User', resourceId: user.uuid });
    return { type: 'object', name: 'user', value: await userObject(app, user.id) };
  },
  [IDENTITY_JOBS.disableAccount]: (app) => async (job) => {
    const account = await app.directory.accountByUuid(String(job.instanceId));
    if (!account) throw paramError(`Unable to find account by accountId: ${String(job.instanceId)} OR by name: null in domain null`);
    const caller = await jobCaller(app, job, account);
    const lock = job.args.lock === true;
    if (lock && account.state === 'disabled') {
      throw new KmsError('internal', `Unable to lock account ${account.account_name} by accountId: ${account.uuid} OR by name: ${account.account_name} in domain ${account.domain_id}`);
    }
    const target = lock ? 'locked' : 'disabled';
    if (account.state !== target) await app.directory.setAccountState(account.id, target);
    await app.events.record({
      type: 'ACCOUNT.DISABLE', description: `${lock ? 'Locked' : 'Disabled'} account ${account.account_name}`, actor: actorOf(caller), resourceType: 'Account', resourceId: account.uuid,
    });
    return { type: 'object', name: 'account', value: await accountObject(app, account.id) };
  },
};

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
    async handler(p, ctx) {
      const { user, account } = await requireUserTarget(ctx.app, ctx.caller, p.id, `Unable to find active user by id ${p.id}`);
      if (await isDefaultAdminUser(ctx.app, user, account)) {
        throw paramError(`User: ${user.username} is the default admin user, disabling is not allowed`);
      }
      return submitAsync(ctx, p, { kind: IDENTITY_JOBS.disableUser, args: {}, instanceType: 'User', instanceId: user.uuid });
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
      const { user, account } = await requireUserTarget(ctx.app, ctx.caller, p.id, `Unable to find active user by id ${p.id}`);
      await ctx.app.directory.setUserState(user.id, 'enabled');
      await ctx.app.directory.setAccountState(account.id, 'enabled');
      await ctx.app.events.record({ type: 'USER.ENABLE', description: `Enabled user ${user.username}`, actor: actorOf(ctx.caller), resourceType: 'User', resourceId: user.uuid });
      return { kind: 'object', name: 'user', value: await userObject(ctx.app, user.id) };
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
      const { user, account } = await requireUserTarget(ctx.app, ctx.caller, p.id, 'Unable to find user by id');
      if (await isDefaultAdminUser(ctx.app, user, account)) {
        throw permissionError(`user: ${user.username} is the default admin user, locking is not allowed`);
      }
      if (user.state === 'disabled') throw new KmsError('internal', `Unable to lock user ${user.uuid}`);
      if (user.state !== 'locked') {
        await ctx.app.directory.setUserState(user.id, 'locked');
        await ctx.app.directory.lockAccountWithoutEnabledUsers(account.id);
        await ctx.app.events.record({ type: 'USER.LOCK', description: `Locked user ${user.username}`, actor: actorOf(ctx.caller), resourceType: 'User', resourceId: user.uuid });
      }
      return { kind: 'object', name: 'user', value: await userObject(ctx.app, user.id) };
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
    async handler(p, ctx) {
      const account = await requireAccountTarget(ctx.app, ctx.caller, p);
      if (await isDefaultAdmin(ctx.app, account)) {
        throw new KmsError('internal', `Unable to update account ${account.account_name} by accountId: ${account.uuid} OR by name: ${account.account_name} in domain ${p.domainid ?? 'null'}`);
      }
      return submitAsync(ctx, p, { kind: IDENTITY_JOBS.disableAccount, args: { lock: p.lock }, instanceType: 'Account', instanceId: account.uuid });
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
      const account = await requireAccountTarget(ctx.app, ctx.caller, p);
      await ctx.app.directory.setAccountState(account.id, 'enabled');
      await ctx.app.events.record({ type: 'ACCOUNT.ENABLE', description: `Enabled account ${account.account_name}`, actor: actorOf(ctx.caller), resourceType: 'Account', resourceId: account.uuid });
      return { kind: 'object', name: 'account', value: await accountObject(ctx.app, account.id) };
    },
  }),
];
