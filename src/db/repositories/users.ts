import { nameKey } from '../columns';
import type { Knex } from 'knex';
import type { OwnerScope } from '../../core/owner-scope';
import { applyOwnerScope } from '../owner-scope';
import { type Page, type PageWindow } from '../paging';
import { pagedRows } from '../reader';
import type { IdentityState } from './accounts';

/** A live user. The password is a scrypt hash; the secret key is sealed under the master key. */
export interface User {
  readonly id: number;
  readonly uuid: string;
  readonly username: string;
  readonly passwordHash: string;
  readonly accountId: number;
  readonly firstname: string;
  readonly lastname: string;
  readonly email: string | null;
  readonly state: IdentityState;
  readonly apiKey: string | null;
  /** The secret key encrypted under the master key (identity opens it). */
  readonly sealedSecretKey: string | null;
  readonly timezone: string | null;
  readonly created: Date;
  /** Failed logins counted against incorrect.login.attempts.allowed. */
  readonly loginAttempts: number;
}

/** The account and domain a user belongs to, named as responses and callers name them. */
export interface UserAccountAndDomain {
  readonly accountId: number;
  readonly accountUuid: string;
  readonly accountName: string;
  /** CloudStack Account.Type ordinal: 0 user, 1 root admin, 2 domain admin, 5 a project's account. */
  readonly accountType: number;
  readonly domainId: number;
  readonly domainUuid: string;
  readonly domainName: string;
  readonly domainPath: string;
}

/** A user with its account and domain, as lists show it. */
export interface UserView extends UserAccountAndDomain {
  readonly id: number;
  readonly uuid: string;
  readonly username: string;
  readonly firstname: string;
  readonly lastname: string;
  readonly email: string | null;
  readonly state: IdentityState;
  readonly created: Date;
  readonly timezone: string | null;
  readonly apiKey: string | null;
}

/** A user with its account and domain and their states: what a caller is made of. */
export interface CallerRecord extends UserAccountAndDomain {
  readonly userId: number;
  readonly userUuid: string;
  readonly username: string;
  readonly userState: IdentityState;
  readonly accountState: IdentityState;
}

/** What listUsers filters by (all optional, combined with AND). */
export interface UserFilter {
  readonly uuid?: string;
  readonly username?: string;
  readonly accountType?: number;
  readonly state?: string;
  /** The username contains it (SQL LIKE). */
  readonly keyword?: string;
}

interface UserDbRow {
  id: number; uuid: string; username: string; password: string; account_id: number; firstname: string; lastname: string;
  email: string | null; state: string; api_key: string | null; secret_key: string | null; timezone: string | null; created: number | string;
  login_attempts: number;
}

interface UserViewDbRow {
  id: number; uuid: string; username: string; firstname: string; lastname: string; email: string | null; state: string; created: number | string;
  timezone: string | null; api_key: string | null; account_id: number; account_uuid: string; account_name: string; account_type: number;
  domain_id: number; domain_uuid: string; domain_name: string; domain_path: string;
}

const toUser = (r: UserDbRow): User => ({
  id: Number(r.id), uuid: r.uuid, username: r.username, passwordHash: r.password, accountId: Number(r.account_id),
  firstname: r.firstname, lastname: r.lastname, email: r.email, state: r.state as IdentityState, apiKey: r.api_key,
  sealedSecretKey: r.secret_key, timezone: r.timezone, created: new Date(Number(r.created)), loginAttempts: Number(r.login_attempts ?? 0),
});

const toView = (r: UserViewDbRow): UserView => ({
  id: Number(r.id), uuid: r.uuid, username: r.username, firstname: r.firstname, lastname: r.lastname, email: r.email,
  state: r.state as IdentityState, created: new Date(Number(r.created)), timezone: r.timezone, apiKey: r.api_key,
  accountId: Number(r.account_id), accountUuid: r.account_uuid, accountName: r.account_name, accountType: Number(r.account_type),
  domainId: Number(r.domain_id), domainUuid: r.domain_uuid, domainName: r.domain_name, domainPath: r.domain_path,
});

/** The `user` table, with the login-attempt counter of the lockout. */
export class UserRepository {
  constructor(private readonly db: Knex | Knex.Transaction) {}

  async byUuid(uuid: string): Promise<User | undefined> {
    const r: UserDbRow | undefined = await this.db('user').where({ uuid }).whereNull('removed').first();
    return r && toUser(r);
  }

  async byApiKey(apiKey: string): Promise<User | undefined> {
    const r: UserDbRow | undefined = await this.db('user').where({ api_key: apiKey }).whereNull('removed').first();
    return r && toUser(r);
  }

  /** The live user of a live account of the domain with this username, whatever its case (login's lookup; migration 012). */
  async forLogin(username: string, domainId: number): Promise<User | undefined> {
    const r: UserDbRow | undefined = await this.db('user as u').join('account as a', 'a.id', 'u.account_id')
      .where({ 'u.username_key': nameKey(username), 'a.domain_id': domainId }).whereNull('u.removed').whereNull('a.removed')
      .first('u.*');
    return r && toUser(r);
  }

  /** The user, its account and its domain (all live), with both states; undefined when any is gone. */
  async callerRecord(userId: number): Promise<CallerRecord | undefined> {
    const r = await this.db('user as u')
      .join('account as a', 'a.id', 'u.account_id')
      .join('domain as d', 'd.id', 'a.domain_id')
      .where('u.id', userId)
      .whereNull('u.removed').whereNull('a.removed').whereNull('d.removed')
      .first('u.id as userId', 'u.uuid as userUuid', 'u.username', 'u.state as userState', 'a.state as accountState',
        'a.id as accountId', 'a.uuid as accountUuid', 'a.account_name as accountName', 'a.type as accountType',
        'd.id as domainId', 'd.uuid as domainUuid', 'd.name as domainName', 'd.path as domainPath');
    if (!r) return undefined;
    return { ...r, userId: Number(r.userId), accountId: Number(r.accountId), accountType: Number(r.accountType), domainId: Number(r.domainId) };
  }

  async insert(u: {
    uuid: string; username: string; passwordHash: string; accountId: number; firstname: string; lastname: string;
    email: string | null; timezone: string | null; created: Date;
  }): Promise<User> {
    const row = {
      uuid: u.uuid, username: u.username, username_key: nameKey(u.username), password: u.passwordHash, account_id: u.accountId, firstname: u.firstname, lastname: u.lastname,
      email: u.email, state: 'enabled', api_key: null, secret_key: null, timezone: u.timezone, created: u.created.getTime(), login_attempts: 0,
    };
    const [id] = await this.db('user').insert(row);
    return toUser({ ...row, id: Number(id) });
  }

  /** Stores an API key and its sealed secret key. */
  async setKeys(id: number, apiKey: string, sealedSecretKey: string): Promise<void> {
    await this.db('user').where({ id }).update({ api_key: apiKey, secret_key: sealedSecretKey });
  }

  /** Replaces the password hash (the admin CLI's set-admin-password). */
  async setPasswordHash(id: number, passwordHash: string): Promise<void> {
    await this.db('user').where({ id }).update({ password: passwordHash });
  }

  /** Sets the state; `enabled` also resets the failed-login count. */
  async setState(id: number, state: IdentityState): Promise<void> {
    await this.db('user').where({ id }).update({ state, ...(state === 'enabled' ? { login_attempts: 0 } : {}) });
  }

  /**
   * Reserves one login attempt of an enabled user: one conditional statement, so concurrent
   * logins never take more than `allowed`. False when none is left.
   */
  async reserveLoginAttempt(id: number, allowed: number): Promise<boolean> {
    const n = await this.db('user').where({ id, state: 'enabled' }).where('login_attempts', '<', allowed).increment('login_attempts', 1);
    return Number(n) > 0;
  }

  /** Disables an enabled user whose reserved attempts reached `allowed`; true when this call did it. */
  async disableWhenAttemptsExhausted(id: number, allowed: number): Promise<boolean> {
    const n = await this.db('user').where({ id, state: 'enabled' }).where('login_attempts', '>=', allowed).update({ state: 'disabled' });
    return Number(n) > 0;
  }

  async resetLoginAttempts(id: number): Promise<void> {
    await this.db('user').where({ id }).where('login_attempts', '>', 0).update({ login_attempts: 0 });
  }

  /** One live user with its account and domain. */
  async view(id: number): Promise<UserView | undefined> {
    const r: UserViewDbRow | undefined = await this.viewQuery().where('u.id', id).first();
    return r && toView(r);
  }

  /** The live users of these accounts, by id (the `user` list of an account). */
  async viewsOfAccounts(accountIds: readonly number[]): Promise<UserView[]> {
    if (!accountIds.length) return [];
    const rows: UserViewDbRow[] = await this.viewQuery().whereIn('a.id', [...accountIds]);
    return rows.map(toView);
  }

  /** A page of the live users of live accounts in a scope, by id. */
  async list(scope: OwnerScope, f: UserFilter, page: PageWindow): Promise<Page<UserView>> {
    const q = applyOwnerScope(this.viewQuery().orderBy('u.id'), scope, { accountCol: 'a.id', domainCol: 'a.domain_id' });
    if (f.uuid) q.where('u.uuid', f.uuid);
    if (f.username) q.where('u.username_key', nameKey(f.username));
    if (f.accountType !== undefined) q.where('a.type', f.accountType);
    if (f.state) q.where('u.state', f.state);
    if (f.keyword) q.where('u.username_key', 'like', `%${nameKey(f.keyword)}%`);
    const { rows, count } = await pagedRows<UserViewDbRow>(q, page);
    return { rows: rows.map(toView), count };
  }

  private viewQuery() {
    return this.db('user as u').join('account as a', 'a.id', 'u.account_id').join('domain as d', 'd.id', 'a.domain_id')
      .whereNull('u.removed').whereNull('a.removed')
      .select('u.id', 'u.uuid', 'u.username', 'u.firstname', 'u.lastname', 'u.email', 'u.state', 'u.created', 'u.timezone', 'u.api_key',
        'a.id as account_id', 'a.uuid as account_uuid', 'a.account_name', 'a.type as account_type',
        'd.id as domain_id', 'd.uuid as domain_uuid', 'd.name as domain_name', 'd.path as domain_path');
  }
}
