import { randomUUID } from 'node:crypto';
import type { MasterKey } from '../config/master-key';
import { systemClock, type Clock } from '../core/clock';
import { paramError, permissionError } from '../core/errors';
import { isUuid } from '../core/ids';
import { NAME_KEY_MAX, nameKey } from '../db/columns';
import type { Repositories } from '../db/repositories';
import type { Account, IdentityState } from '../db/repositories/accounts';
import type { Domain } from '../db/repositories/domains';
import type { Project } from '../db/repositories/projects';
import type { User } from '../db/repositories/users';
import type { EventLog } from '../events/event-log';
import { Access, scopeContains, type OwnerScope } from './access';
import { ACCOUNT_TYPES, roleOf, type Caller } from './caller';
import { generateKey, hashPassword } from './password';
import { userPairsPrefix, userThrottleKey } from './login-throttle';
import { Projects } from './projects';

export type { Account, AccountView, IdentityState } from '../db/repositories/accounts';
export type { Domain, DomainView } from '../db/repositories/domains';
export type { Project, ProjectMember, ProjectRole, ProjectView } from '../db/repositories/projects';
export type { User, UserView } from '../db/repositories/users';

/** What the identity services need (docs/architecture.md): the repositories, the master key (secret keys), the event log and a clock. */
export interface IdentityDeps {
  readonly repos: Repositories;
  readonly masterKey: MasterKey;
  readonly events: EventLog;
  readonly clock?: Clock;
  /**
   * How long a request may rely on a credential read from the database. Every change made through a
   * server process (any node or worker) moves the credentials version, which `syncCredentials` reads
   * with each request, so it is seen at once everywhere; this bounds only rows edited by hand.
   * @defaultValue 1000
   */
  readonly credentialTtlMs?: number;
}

export interface ScopeRequest { listall?: boolean; domainid?: string; account?: string; isrecursive?: boolean; projectid?: string }

/** The authenticated place of a user's secret key under the master key. */
export const secretAad = (userUuid: string) => `user-secret:${userUuid}`;

/** Domains, accounts and users, and the access rules between them. */
export class Directory {
  /** The authorization rule (src/identity/access.ts); the access methods below only apply it. */
  readonly access: Access;
  private readonly repos: Repositories;
  private readonly events: EventLog;
  #projects: Projects | undefined;
  private readonly masterKey: MasterKey;
  private readonly clock: Clock;
  private readonly credentialTtlMs: number;

  /** Credentials of recent requests, so a signed request costs no lookup; see `callerForRequest`. */
  readonly #callers = new Map<number, { caller: Caller | undefined; at: number }>();
  readonly #apiKeys = new Map<string, { holder: { userId: number; secretKey: string }; at: number }>();
  #generation = 0;
  /** The credentials version the caches were filled under (`syncCredentials`). */
  #version: number | undefined;

  constructor(deps: IdentityDeps) {
    this.repos = deps.repos;
    this.events = deps.events;
    this.masterKey = deps.masterKey;
    this.clock = deps.clock ?? systemClock;
    this.credentialTtlMs = deps.credentialTtlMs ?? 1000;
    this.access = new Access(deps.repos);
  }

  /** Projects, their memberships and their commands' rules (src/identity/projects.ts). */
  get projects(): Projects {
    // Built on first use: Projects asks this directory back (membership, owners).
    return (this.#projects ??= new Projects({ repos: this.repos, events: this.events, clock: this.clock }, this));
  }

  /** The caller of an API request: `loadCaller`, cached for `credentialTtlMs`. */
  async callerForRequest(userId: number): Promise<Caller | undefined> {
    const hit = this.#callers.get(userId);
    if (hit && this.clock.now() - hit.at < this.credentialTtlMs) return hit.caller;
    const generation = this.#generation;
    const caller = await this.loadCaller(userId);
    // A read that raced a change (forgetCredentials ran meanwhile) is used once, never cached.
    if (generation === this.#generation) this.remember(this.#callers, userId, { caller, at: this.clock.now() });
    return caller;
  }

  /** `findByApiKey`, cached for `credentialTtlMs` (unknown keys are not cached). */
  async holderOfApiKey(apiKey: string): Promise<{ userId: number; secretKey: string } | undefined> {
    const hit = this.#apiKeys.get(apiKey);
    if (hit && this.clock.now() - hit.at < this.credentialTtlMs) return hit.holder;
    const generation = this.#generation;
    const holder = await this.findByApiKey(apiKey);
    if (holder && generation === this.#generation) this.remember(this.#apiKeys, apiKey, { holder, at: this.clock.now() });
    return holder;
  }

  /**
   * Reads the deployment's credentials version (one single-row read) and drops the cached
   * credentials when it moved: called once per authenticated request, before the lookups, so a
   * change made on any node or worker is seen at this node's next request.
   */
  async syncCredentials(): Promise<void> {
    const version = await this.repos.credentialVersion.current();
    if (version !== this.#version) {
      this.forgetCredentials();
      this.#version = version;
    }
  }

  /** After a change of a state or of keys (written already): every node drops its cached credentials at its next request. */
  async credentialsChanged(): Promise<void> {
    await this.repos.credentialVersion.bump();
    this.forgetCredentials();
  }

  /** Drops this process's cached credentials (`credentialsChanged` tells the other nodes too). */
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
    const r = await this.repos.users.callerRecord(userId);
    if (!r || r.userState !== 'enabled' || r.accountState !== 'enabled') return undefined;
    const { userState: _u, accountState: _a, ...c } = r;
    return { ...c, role: roleOf(c.accountType) };
  }

  /** The user holding an API key, with the decrypted secret key (caller zeroes nothing: it is a string). */
  async findByApiKey(apiKey: string): Promise<{ userId: number; secretKey: string } | undefined> {
    const u = await this.repos.users.byApiKey(apiKey);
    if (!u || !u.sealedSecretKey) return undefined;
    return { userId: u.id, secretKey: this.masterKey.decryptString(u.sealedSecretKey, secretAad(u.uuid)) };
  }

  /** The live user `username` of a live account of the domain (login's lookup). */
  async userForLogin(username: string, domainId: number): Promise<User | undefined> {
    return this.repos.users.forLogin(username, domainId);
  }

  // ---- domains -------------------------------------------------------------------------------

  /** A domain the caller may see, or a 431/531 naming the id. */
  async accessibleDomain(caller: Caller, uuid: string): Promise<Domain> {
    const d = await this.repos.domains.byUuid(uuid);
    if (!d) throw paramError(`Unable to find domain by id ${uuid}`);
    if (!(await this.access.reachesDomain(caller, d.id))) throw permissionError(`Caller does not have access to domain ${uuid}`);
    return d;
  }

  async createDomain(parent: Domain, name: string, networkDomain?: string): Promise<Domain> {
    if (!/^[^/\\]+$/.test(name)) throw paramError('Domain name must not contain "/" or "\\"');
    const path = `${parent.path}${name}/`;
    if (await this.repos.domains.byPath(path)) {
      throw paramError(`Domain with name ${name} already exists for the parent id=${parent.uuid}`);
    }
    return this.repos.domains.insert({
      uuid: randomUUID(), name, path, parentId: parent.id, level: parent.level + 1, networkDomain: networkDomain ?? null, created: new Date(this.clock.now()),
    });
  }

  // ---- accounts and users -------------------------------------------------------------------

  async createAccountWithUser(input: {
    domain: Domain; accountName: string; accountType: number;
    username: string; password: string; firstname: string; lastname: string; email?: string; timezone?: string;
  }): Promise<{ account: Account; user: User }> {
    assertNameKeyFits('account', input.accountName);
    assertNameKeyFits('username', input.username);
    if (await this.repos.accounts.byName(input.domain.id, input.accountName)) {
      throw paramError(`The specified account: ${input.accountName} already exists in domain ${input.domain.name}`);
    }
    await this.assertUsernameFree(input.username, input.domain.id);
    const passwordHash = await hashPassword(input.password);
    return this.repos.transaction(async (tx) => {
      // Checked again under the domain's lock: a concurrent create of `Alice` beside `alice` is a 431.
      await tx.domains.lockForNames(input.domain.id);
      if (await tx.accounts.byName(input.domain.id, input.accountName)) {
        throw paramError(`The specified account: ${input.accountName} already exists in domain ${input.domain.name}`);
      }
      await this.assertUsernameFree(input.username, input.domain.id, tx);
      const created = new Date(this.clock.now());
      const account = await tx.accounts.insert({ uuid: randomUUID(), name: input.accountName, type: input.accountType, domainId: input.domain.id, state: 'enabled', created });
      const user = await this.insertUser(tx, account.id, { ...input, passwordHash });
      return { account, user };
    });
  }

  async createUser(account: Account, input: { username: string; password: string; firstname: string; lastname: string; email?: string; timezone?: string }): Promise<User> {
    assertNameKeyFits('username', input.username);
    await this.assertUsernameFree(input.username, account.domainId);
    const passwordHash = await hashPassword(input.password);
    return this.repos.transaction(async (tx) => {
      await tx.domains.lockForNames(account.domainId);
      await this.assertUsernameFree(input.username, account.domainId, tx);
      return this.insertUser(tx, account.id, { ...input, passwordHash });
    });
  }

  private async assertUsernameFree(username: string, domainId: number, repos: Repositories = this.repos): Promise<void> {
    if (await repos.users.forLogin(username, domainId)) {
      throw paramError(`The user ${username} already exists in domain ${domainId}`);
    }
  }

  private insertUser(repos: Repositories, accountId: number, input: { username: string; passwordHash: string; firstname: string; lastname: string; email?: string; timezone?: string }): Promise<User> {
    return repos.users.insert({
      uuid: randomUUID(), username: input.username, passwordHash: input.passwordHash, accountId,
      firstname: input.firstname, lastname: input.lastname, email: input.email ?? null, timezone: input.timezone ?? null, created: new Date(this.clock.now()),
    });
  }

  /** Stores an API key pair; the secret key is encrypted under the master key. */
  async storeUserKeys(user: Pick<User, 'id' | 'uuid'>, keys: { apiKey: string; secretKey: string }): Promise<void> {
    await this.repos.users.setKeys(user.id, keys.apiKey, this.masterKey.encryptString(keys.secretKey, secretAad(user.uuid)));
    await this.credentialsChanged();
  }

  async registerUserKeys(user: User): Promise<{ apiKey: string; secretKey: string }> {
    const keys = { apiKey: generateKey(), secretKey: generateKey() };
    await this.storeUserKeys(user, keys);
    return keys;
  }

  /** A user's API key pair, the secret key opened; undefined when it has none. */
  userKeys(user: Pick<User, 'uuid' | 'apiKey' | 'sealedSecretKey'>): { apiKey: string; secretKey: string } | undefined {
    if (!user.apiKey || !user.sealedSecretKey) return undefined;
    return { apiKey: user.apiKey, secretKey: this.masterKey.decryptString(user.sealedSecretKey, secretAad(user.uuid)) };
  }

  // ---- states and login attempts -------------------------------------------------------------

  /** A user leaving `enabled` loses its sessions at once, so a later enableUser revives none of them. */
  async setUserState(userId: number, state: IdentityState): Promise<void> {
    await this.repos.users.setState(userId, state);
    // enableUser is an administrator's decision: the user's login waits end with its lockout count.
    if (state === 'enabled') await this.repos.loginThrottle.removeByPrefix(userPairsPrefix(userThrottleKey(userId)));
    await this.credentialsChanged();
    if (state !== 'enabled') await this.repos.sessions.deleteOfUser(userId);
  }

  async setAccountState(accountId: number, state: IdentityState): Promise<void> {
    await this.repos.accounts.setState(accountId, state);
    await this.credentialsChanged();
    if (state !== 'enabled') await this.repos.sessions.deleteOfAccount(accountId);
  }

  /**
   * Locks an enabled account when none of its users is enabled any more (lockUser on the last
   * one), in one conditional statement so two concurrent lockUser calls cannot both miss it.
   */
  async lockAccountWithoutEnabledUsers(accountId: number): Promise<void> {
    await this.repos.accounts.lockWithoutEnabledUsers(accountId);
    await this.credentialsChanged();
  }

  /**
   * Reserves one login attempt of an enabled user before its password is checked: one conditional
   * statement, so concurrent logins never check more than `allowed` guesses. False when none is left.
   */
  async reserveLoginAttempt(userId: number, allowed: number): Promise<boolean> {
    return this.repos.users.reserveLoginAttempt(userId, allowed);
  }

  /** Disables an enabled user whose reserved attempts reached `allowed`; true when this call did it. */
  async disableWhenAttemptsExhausted(userId: number, allowed: number): Promise<boolean> {
    const done = await this.repos.users.disableWhenAttemptsExhausted(userId, allowed);
    if (done) {
      await this.credentialsChanged();
      await this.repos.sessions.deleteOfUser(userId);
    }
    return done;
  }

  async resetLoginAttempts(userId: number): Promise<void> {
    await this.repos.users.resetLoginAttempts(userId);
  }

  // ---- access -------------------------------------------------------------------------------

  /** Whether the caller may see and act on what `owner` owns (src/identity/access.ts). */
  async canAccessOwner(caller: Caller, owner: { accountId: number | null; domainId: number | null }): Promise<boolean> {
    return this.access.allows(caller, owner);
  }

  /** The account named by `account`+`domainid` (or the caller's own, or a project's), checked for the caller's access. */
  async owningAccount(caller: Caller, req: { account?: string; domainid?: string; projectid?: string }): Promise<Account> {
    if (req.projectid) {
      if (req.account) throw paramError('Account and projectId can\'t be specified together');
      const project = await this.accessibleProject(caller, req.projectid);
      const account = await this.repos.accounts.byId(project.accountId);
      if (!account) throw paramError(`Unable to find the account of project ${req.projectid}`);
      return account;
    }
    if (req.domainid && !req.account) throw paramError('Account name must be provided with domain ID');
    if (!req.account) {
      const own = await this.repos.accounts.byId(caller.accountId);
      if (!own) throw paramError('The caller account no longer exists');
      return own;
    }
    if (caller.role === 'User' && req.account !== caller.accountName) {
      throw permissionError(`Caller ${caller.accountName} is not allowed to act on behalf of account ${req.account}`);
    }
    const domain = req.domainid ? await this.accessibleDomain(caller, req.domainid) : await this.repos.domains.byId(caller.domainId);
    const account = domain && (await this.repos.accounts.byName(domain.id, req.account));
    if (!account) throw paramError(`Unable to find account ${req.account} in domain ${req.domainid ?? caller.domainUuid}`);
    return this.accessibleAccount(caller, account, `Caller ${caller.accountName} does not have access to account ${req.account}`);
  }

  /**
   * An account (or one of its users) the caller may act on. A root-admin target out of reach gets
   * CloudStack's role-type answer (AccountManagerImpl); anything else out of reach `denied`.
   */
  async accessibleAccount(caller: Caller, account: Account, denied: string): Promise<Account> {
    if (await this.access.allows(caller, { accountId: account.id, domainId: account.domainId })) return account;
    if (account.type === ACCOUNT_TYPES.Admin) {
      throw permissionError(`The calling account [${caller.accountName}, ${caller.accountUuid}] has a lower role type than the user account [${account.name}, ${account.uuid}]`);
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
      const reached = (await this.repos.projects.owners()).filter((o) => scopeContains(reach, o));
      return { kind: 'accounts', accountIds: reached.map((o) => o.accountId) };
    }
    if (!isUuid(projectid)) throw paramError(`Unable to execute API command due to invalid value. Invalid parameter projectid value=${projectid} due to incorrect long value format, or entity does not exist or due to incorrect parameter annotation for the field in api cmd class.`);
    const project = await this.accessibleProject(caller, projectid.toLowerCase());
    return { kind: 'accounts', accountIds: [project.accountId] };
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

  /** A live project whose account the caller reaches: 431 when there is none, 531 when out of reach. */
  async accessibleProject(caller: Caller, uuid: string): Promise<Project> {
    const project = await this.repos.projects.byUuid(uuid);
    if (!project) throw paramError(`Unable to find project by id ${uuid}`);
    if (!(await this.access.allows(caller, { accountId: project.accountId, domainId: project.domainId }))) {
      throw permissionError(`Account ${caller.accountName} can't access project id=${uuid}`);
    }
    return project;
  }

  private async ownerListScope(caller: Caller, req: ScopeRequest): Promise<OwnerScope> {
    if (req.account) {
      if (caller.role !== 'User' && !req.domainid) throw paramError('Account name must be used together with domainid');
      const account = await this.owningAccount(caller, req);
      return { kind: 'accounts', accountIds: [account.id] };
    }
    if (req.domainid) {
      const d = await this.repos.domains.byUuid(req.domainid);
      if (!d) throw paramError(`Unable to find domain by id ${req.domainid}`);
      if (!(await this.access.reachesDomain(caller, d.id))) throw permissionError(`Caller does not have access to domain ${req.domainid}`);
      if (caller.role === 'User') return { kind: 'accounts', accountIds: [caller.accountId] };
      return this.access.domainScope(caller, d.id, !!(req.isrecursive || req.listall));
    }
    if (req.listall) return this.access.reach(caller);
    return { kind: 'accounts', accountIds: [caller.accountId] };
  }
}

/**
 * A name is compared by its lower-cased key, stored in a 255-character column on both databases: a
 * name whose lower case is longer (some letters grow, `İ` becomes two code units) is refused alike
 * on SQLite and MariaDB.
 */
function assertNameKeyFits(what: string, name: string): void {
  const length = nameKey(name).length;
  if (length > NAME_KEY_MAX) {
    throw paramError(`Parameter ${what} is too long: at most ${NAME_KEY_MAX} characters once lower-cased (${length} given)`);
  }
}
