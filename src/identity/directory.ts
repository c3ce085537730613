import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { Db } from '../db/knex';
import type { MasterKey } from '../config/master-key';
import { paramError, permissionError } from '../core/errors';
import { Access, scopeContains, type OwnerScope } from './access';
import { isUuid } from '../core/ids';
import { ACCOUNT_TYPES, roleOf, type Caller } from './caller';
import { generateKey, hashPassword } from './password';

export interface DomainRow { id: number; uuid: string; name: string; path: string; parent_id: number | null; level: number; network_domain: string | null; created: number }
/** CloudStack's Account.State, shared by accounts and users; the wire shows it lower-case. */
export type IdentityState = 'enabled' | 'disabled' | 'locked';

export interface AccountRow { id: number; uuid: string; account_name: string; type: number; domain_id: number; state: string; created: number }
export interface UserRow {
  id: number; uuid: string; username: string; password: string; account_id: number; firstname: string; lastname: string;
  email: string | null; state: string; api_key: string | null; secret_key: string | null; timezone: string | null; created: number;
  login_attempts: number;
}

export interface ScopeRequest { listall?: boolean; domainid?: string; account?: string; isrecursive?: boolean; projectid?: string }

export interface ProjectRow { id: number; uuid: string; name: string; display_text: string | null; domain_id: number; project_account_id: number; state: string; created: number }

/** The authenticated place of a user's secret key under the master key. */
export const secretAad = (userUuid: string) => `user-secret:${userUuid}`;

/** Domains, accounts and users, and the access rules between them. */
export class Directory {
  /** The authorization rule (src/identity/access.ts); the access methods below only apply it. */
  readonly access: Access;

  /** Credentials of recent requests, so a signed request costs no lookup; see `forRequest`. */
  readonly #callers = new Map<number, { caller: Caller | undefined; at: number }>();
  readonly #apiKeys = new Map<string, { holder: { userId: number; secretKey: string }; at: number }>();
  #generation = 0;

  /**
   * @param credentialTtlMs how long a request may rely on a credential read from the database. A
   *   change made through this process is seen at once (the caches are dropped); one made through
   *   another node is seen within this time.
   */
  constructor(private readonly db: Db, private readonly masterKey: MasterKey, private readonly credentialTtlMs = 1000) {
    this.access = new Access(db);
  }

  /** The caller of an API request: `loadCaller`, cached for `credentialTtlMs`. */
  async callerForRequest(userId: number): Promise<Caller | undefined> {
    const hit = this.#callers.get(userId);
    if (hit && Date.now() - hit.at < this.credentialTtlMs) return hit.caller;
    const generation = this.#generation;
    const caller = await this.loadCaller(userId);
    // A read that raced a change (forgetCredentials ran meanwhile) is used once, never cached.
    if (generation === this.#generation) this.remember(this.#callers, userId, { caller, at: Date.now() });
    return caller;
  }

  /** `findByApiKey`, cached for `credentialTtlMs` (unknown keys are not cached). */
  async holderOfApiKey(apiKey: string): Promise<{ userId: number; secretKey: string } | undefined> {
    const hit = this.#apiKeys.get(apiKey);
    if (hit && Date.now() - hit.at < this.credentialTtlMs) return hit.holder;
    const generation = this.#generation;
    const holder = await this.findByApiKey(apiKey);
    if (holder && generation === this.#generation) this.remember(this.#apiKeys, apiKey, { holder, at: Date.now() });
    return holder;
  }

  /** Drops every cached credential: called by each change of a state or of keys. */
  forgetCredentials(): void {
    this.#generation++;
    this.#callers.clear();
    this.#apiKeys.clear();
  }

  private remember<K, V>(map: Map<K, V>, key: K, value: V): void {
    if (map.size >= 10_000) map.delete(map.keys().next().value as K);
    map.set(key, value);
  }

  // ---- callers -------------------------------------------------------------------------------

  /** The caller for a user id; undefined when the user, its account or domain is gone or disabled. */
  async loadCaller(userId: number): Promise<Caller | undefined> {
    const row = await this.db('user as u')
      .join('account as a', 'a.id', 'u.account_id')
      .join('domain as d', 'd.id', 'a.domain_id')
      .where('u.id', userId)
      .whereNull('u.removed').whereNull('a.removed').whereNull('d.removed')
      .first('u.id as userId', 'u.uuid as userUuid', 'u.username', 'u.state as userState', 'a.state as accountState',
        'a.id as accountId', 'a.uuid as accountUuid', 'a.account_name as accountName', 'a.type as accountType',
        'd.id as domainId', 'd.uuid as domainUuid', 'd.name as domainName', 'd.path as domainPath');
    if (!row || row.userState !== 'enabled' || row.accountState !== 'enabled') return undefined;
    const { userState: _u, accountState: _a, ...c } = row;
    return { ...c, accountType: Number(c.accountType), role: roleOf(Number(c.accountType)) };
  }

  /** The user holding an API key, with the decrypted secret key (caller zeroes nothing: it is a string). */
  async findByApiKey(apiKey: string): Promise<{ userId: number; secretKey: string } | undefined> {
    const u: UserRow | undefined = await this.db('user').where({ api_key: apiKey }).whereNull('removed').first();
    if (!u || !u.secret_key) return undefined;
    return { userId: u.id, secretKey: this.masterKey.decryptString(u.secret_key, secretAad(u.uuid)) };
  }

  async findUserForLogin(username: string, domainId: number): Promise<UserRow | undefined> {
    return this.db('user as u').join('account as a', 'a.id', 'u.account_id')
      .where({ 'u.username': username, 'a.domain_id': domainId }).whereNull('u.removed').whereNull('a.removed')
      .first('u.*');
  }

  // ---- domains -------------------------------------------------------------------------------

  async domainById(id: number): Promise<DomainRow | undefined> {
    return this.db('domain').where({ id }).whereNull('removed').first();
  }

  async domainByUuid(uuid: string): Promise<DomainRow | undefined> {
    return this.db('domain').where({ uuid }).whereNull('removed').first();
  }

  async domainByPath(path: string): Promise<DomainRow | undefined> {
    return this.db('domain').where({ path }).whereNull('removed').first();
  }

  /** A domain the caller may see, or a 431/531 naming the id. */
  async requireDomain(caller: Caller, uuid: string): Promise<DomainRow> {
    const d = await this.domainByUuid(uuid);
    if (!d) throw paramError(`Unable to find domain by id ${uuid}`);
    if (!(await this.access.reachesDomain(caller, d.id))) throw permissionError(`Caller does not have access to domain ${uuid}`);
    return d;
  }

  async createDomain(parent: DomainRow, name: string, networkDomain?: string, trx: Knex = this.db): Promise<DomainRow> {
    if (!/^[^/\\]+$/.test(name)) throw paramError('Domain name must not contain "/" or "\\"');
    const path = `${parent.path}${name}/`;
    if (await trx('domain').where({ path }).whereNull('removed').first()) {
      throw paramError(`Domain with name ${name} already exists for the parent id=${parent.uuid}`);
    }
    const row = { uuid: randomUUID(), name, path, parent_id: parent.id, level: parent.level + 1, network_domain: networkDomain ?? null, created: Date.now() };
    const [id] = await trx('domain').insert(row);
    return { ...row, id: Number(id) };
  }

  // ---- accounts and users -------------------------------------------------------------------

  async accountById(id: number): Promise<AccountRow | undefined> {
    return this.db('account').where({ id }).whereNull('removed').first();
  }

  async accountByUuid(uuid: string): Promise<AccountRow | undefined> {
    return this.db('account').where({ uuid }).whereNull('removed').first();
  }

  async accountByName(domainId: number, name: string): Promise<AccountRow | undefined> {
    return this.db('account').where({ domain_id: domainId, account_name: name }).whereNull('removed').first();
  }

  async userByUuid(uuid: string): Promise<UserRow | undefined> {
    return this.db('user').where({ uuid }).whereNull('removed').first();
  }

  async createAccountWithUser(input: {
    domain: DomainRow; accountName: string; accountType: number;
    username: string; password: string; firstname: string; lastname: string; email?: string; timezone?: string;
  }): Promise<{ account: AccountRow; user: UserRow }> {
    if (await this.accountByName(input.domain.id, input.accountName)) {
      throw paramError(`The specified account: ${input.accountName} already exists in domain ${input.domain.name}`);
    }
    await this.assertUsernameFree(input.username, input.domain.id);
    const passwordHash = await hashPassword(input.password);
    return this.db.transaction(async (trx) => {
      const account = { uuid: randomUUID(), account_name: input.accountName, type: input.accountType, domain_id: input.domain.id, state: 'enabled', created: Date.now() };
      const [accountId] = await trx('account').insert(account);
      const user = await this.insertUser(trx, Number(accountId), { ...input, passwordHash });
      return { account: { ...account, id: Number(accountId) }, user };
    });
  }

  async createUser(account: AccountRow, input: { username: string; password: string; firstname: string; lastname: string; email?: string; timezone?: string }): Promise<UserRow> {
    await this.assertUsernameFree(input.username, account.domain_id);
    const passwordHash = await hashPassword(input.password);
    return this.insertUser(this.db, account.id, { ...input, passwordHash });
  }

  private async assertUsernameFree(username: string, domainId: number): Promise<void> {
    if (await this.findUserForLogin(username, domainId)) {
      throw paramError(`The user ${username} already exists in domain ${domainId}`);
    }
  }

  private async insertUser(trx: Knex, accountId: number, input: { username: string; passwordHash: string; firstname: string; lastname: string; email?: string; timezone?: string }): Promise<UserRow> {
    const user = {
      uuid: randomUUID(), username: input.username, password: input.passwordHash, account_id: accountId,
      firstname: input.firstname, lastname: input.lastname, email: input.email ?? null, state: 'enabled',
      api_key: null, secret_key: null, timezone: input.timezone ?? null, created: Date.now(), login_attempts: 0,
    };
    const [id] = await trx('user').insert(user);
    return { ...user, id: Number(id) };
  }

  /** Stores an API key pair; the secret key is encrypted under the master key. */
  async setUserKeys(user: UserRow, keys: { apiKey: string; secretKey: string }, trx: Knex = this.db): Promise<void> {
    await trx('user').where({ id: user.id }).update({
      api_key: keys.apiKey,
      secret_key: this.masterKey.encryptString(keys.secretKey, secretAad(user.uuid)),
    });
    this.forgetCredentials();
  }

  async registerUserKeys(user: UserRow): Promise<{ apiKey: string; secretKey: string }> {
    const keys = { apiKey: generateKey(), secretKey: generateKey() };
    await this.setUserKeys(user, keys);
    return keys;
  }

  getUserKeys(user: UserRow): { apiKey: string; secretKey: string } | undefined {
    if (!user.api_key || !user.secret_key) return undefined;
    return { apiKey: user.api_key, secretKey: this.masterKey.decryptString(user.secret_key, secretAad(user.uuid)) };
  }

  // ---- states and login attempts -------------------------------------------------------------

  /** A user leaving `enabled` loses its sessions at once, so a later enableUser revives none of them. */
  async setUserState(userId: number, state: IdentityState): Promise<void> {
    await this.db('user').where({ id: userId }).update({ state, ...(state === 'enabled' ? { login_attempts: 0 } : {}) });
    this.forgetCredentials();
    if (state !== 'enabled') await this.endSessionsOf({ userId });
  }

  async setAccountState(accountId: number, state: IdentityState): Promise<void> {
    await this.db('account').where({ id: accountId }).update({ state });
    this.forgetCredentials();
    if (state !== 'enabled') await this.endSessionsOf({ accountId });
  }

  /**
   * Locks an enabled account when none of its users is enabled any more (lockUser on the last
   * one), in one conditional statement so two concurrent lockUser calls cannot both miss it.
   */
  async lockAccountWithoutEnabledUsers(accountId: number): Promise<void> {
    await this.db('account').where({ id: accountId, state: 'enabled' })
      .whereNotExists((q) => q.select('id').from('user').where({ account_id: accountId, state: 'enabled' }).whereNull('removed'))
      .update({ state: 'locked' });
    this.forgetCredentials();
  }

  private async endSessionsOf(who: { userId: number } | { accountId: number }): Promise<void> {
    const users = 'userId' in who ? [who.userId] : this.db('user').where({ account_id: who.accountId }).select('id');
    await this.db('http_session').whereIn('user_id', users).delete();
  }

  /**
   * Reserves one login attempt of an enabled user before its password is checked: one conditional
   * statement, so concurrent logins never check more than `allowed` guesses. False when none is left.
   */
  async reserveLoginAttempt(userId: number, allowed: number): Promise<boolean> {
    const n = await this.db('user').where({ id: userId, state: 'enabled' }).where('login_attempts', '<', allowed).increment('login_attempts', 1);
    return Number(n) > 0;
  }

  /** Disables an enabled user whose reserved attempts reached `allowed`; true when this call did it. */
  async disableWhenAttemptsExhausted(userId: number, allowed: number): Promise<boolean> {
    const n = await this.db('user').where({ id: userId, state: 'enabled' }).where('login_attempts', '>=', allowed).update({ state: 'disabled' });
    if (n > 0) {
      this.forgetCredentials();
      await this.endSessionsOf({ userId });
    }
    return n > 0;
  }

  async resetLoginAttempts(userId: number): Promise<void> {
    await this.db('user').where({ id: userId }).where('login_attempts', '>', 0).update({ login_attempts: 0 });
  }

  // ---- access -------------------------------------------------------------------------------

  /** Whether the caller may see and act on what `owner` owns (src/identity/access.ts). */
  async canAccessOwner(caller: Caller, owner: { accountId: number | null; domainId: number | null }): Promise<boolean> {
    return this.access.allows(caller, owner);
  }

  /** The account named by `account`+`domainid` (or the caller's own), checked for the caller's access. */
  async resolveOwner(caller: Caller, req: { account?: string; domainid?: string; projectid?: string }): Promise<AccountRow> {
    if (req.projectid) {
      if (req.account) throw paramError('Account and projectId can\'t be specified together');
      const project = await this.requireProjectAccess(caller, req.projectid);
      const account = await this.accountById(project.project_account_id);
      if (!account) throw paramError(`Unable to find the account of project ${req.projectid}`);
      return account;
    }
    if (req.domainid && !req.account) throw paramError('Account name must be provided with domain ID');
    if (!req.account) {
      const own = await this.accountById(caller.accountId);
      if (!own) throw paramError('The caller account no longer exists');
      return own;
    }
    if (caller.role === 'User' && req.account !== caller.accountName) {
      throw permissionError(`Caller ${caller.accountName} is not allowed to act on behalf of account ${req.account}`);
    }
    const domain = req.domainid ? await this.requireDomain(caller, req.domainid) : await this.domainById(caller.domainId);
    const account = domain && (await this.accountByName(domain.id, req.account));
    if (!account) throw paramError(`Unable to find account ${req.account} in domain ${req.domainid ?? caller.domainUuid}`);
    return this.requireAccountAccess(caller, account, `Caller ${caller.accountName} does not have access to account ${req.account}`);
  }

  /**
   * An account (or one of its users) the caller may act on. A root-admin target out of reach gets
   * CloudStack's role-type answer (AccountManagerImpl); anything else out of reach `denied`.
   */
  async requireAccountAccess(caller: Caller, account: AccountRow, denied: string): Promise<AccountRow> {
    if (await this.access.allows(caller, { accountId: account.id, domainId: account.domain_id })) return account;
    if (account.type === ACCOUNT_TYPES.Admin) {
      throw permissionError(`The calling account [${caller.accountName}, ${caller.accountUuid}] has a lower role type than the user account [${account.account_name}, ${account.uuid}]`);
    }
    throw permissionError(denied);
  }

  /**
   * CloudStack's list parameters (buildACLSearchParameters) as an owner scope inside the caller's
   * reach: `account`+`domainid` one account; `domainid` that domain (its subtree with `isrecursive`
   * or `listall`); `listall` everything reached; otherwise the caller's own account.
   */
  async listScope(caller: Caller, req: ScopeRequest): Promise<OwnerScope> {
    if (req.projectid !== undefined) return this.projectListScope(caller, req.projectid);
    return this.withoutProjects(await this.ownerListScope(caller, req));
  }

  /**
   * `projectid=-1`: the accounts of every project the caller reaches; a project id: that project's
   * account, if the caller reaches it (a member, a domain admin above it, root), else 531.
   */
  private async projectListScope(caller: Caller, projectid: string): Promise<OwnerScope> {
    if (projectid === '-1') {
      const reach = await this.access.reach(caller);
      const projects: Array<{ accountId: number; domainId: number }> = await this.db('projects').whereNull('removed')
        .select('project_account_id as accountId', 'domain_id as domainId');
      const reached = projects.map((p) => ({ accountId: Number(p.accountId), domainId: Number(p.domainId) })).filter((o) => scopeContains(reach, o));
      return { kind: 'accounts', accountIds: reached.map((o) => o.accountId) };
    }
    if (!isUuid(projectid)) throw paramError(`Unable to execute API command due to invalid value. Invalid parameter projectid value=${projectid} due to incorrect long value format, or entity does not exist or due to incorrect parameter annotation for the field in api cmd class.`);
    const project = await this.requireProjectAccess(caller, projectid.toLowerCase());
    return { kind: 'accounts', accountIds: [project.project_account_id] };
  }

  /** A list without projectid shows no project-owned object, as CloudStack (SkipProjectResources). */
  private async withoutProjects(scope: OwnerScope): Promise<OwnerScope> {
    switch (scope.kind) {
      case 'accounts': {
        const projects = await this.access.projectAccountIds(undefined, scope.accountIds);
        return { kind: 'accounts', accountIds: scope.accountIds.filter((id) => !projects.includes(id)) };
      }
      case 'all':
        return { kind: 'all', exceptAccountIds: await this.access.projectAccountIds() };
      case 'domains':
        return { kind: 'domains', domainIds: scope.domainIds, exceptAccountIds: [...scope.exceptAccountIds, ...(await this.access.projectAccountIds(scope.domainIds))] };
    }
  }

  // ---- projects -------------------------------------------------------------------------------

  async projectByUuid(uuid: string): Promise<ProjectRow | undefined> {
    return this.db('projects').where({ uuid }).whereNull('removed').first();
  }

  /** A live project whose account the caller reaches: 431 when there is none, 531 when out of reach. */
  async requireProjectAccess(caller: Caller, uuid: string): Promise<ProjectRow> {
    const project = await this.projectByUuid(uuid);
    if (!project) throw paramError(`Unable to find project by id ${uuid}`);
    if (!(await this.access.allows(caller, { accountId: project.project_account_id, domainId: project.domain_id }))) {
      throw permissionError(`Account ${caller.accountName} can't access project id=${uuid}`);
    }
    return project;
  }

  private async ownerListScope(caller: Caller, req: ScopeRequest): Promise<OwnerScope> {
    if (req.account) {
      if (caller.role !== 'User' && !req.domainid) throw paramError('Account name must be used together with domainid');
      const account = await this.resolveOwner(caller, req);
      return { kind: 'accounts', accountIds: [account.id] };
    }
    if (req.domainid) {
      const d = await this.domainByUuid(req.domainid);
      if (!d) throw paramError(`Unable to find domain by id ${req.domainid}`);
      if (!(await this.access.reachesDomain(caller, d.id))) throw permissionError(`Caller does not have access to domain ${req.domainid}`);
      if (caller.role === 'User') return { kind: 'accounts', accountIds: [caller.accountId] };
      return this.access.domainScope(caller, d.id, !!(req.isrecursive || req.listall));
    }
    if (req.listall) return this.access.reach(caller);
    return { kind: 'accounts', accountIds: [caller.accountId] };
  }
}
