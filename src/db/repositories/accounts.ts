import { nameKey } from '../columns';
import type { Knex } from 'knex';
import { knexReader, type Reader } from '../reader';
import type { OwnerScope } from '../../core/owner-scope';
import { applyOwnerScope } from '../owner-scope';
import { type Page, type PageWindow } from '../paging';
import { pagedRows } from '../reader';

/** CloudStack's Account.State, shared by accounts and users; the wire shows it lower-case. */
export type IdentityState = 'enabled' | 'disabled' | 'locked';

/** CloudStack Account.Type ordinals this server knows (5, a project's own account, never calls). */
const PROJECT_ACCOUNT_TYPE = 5;
const ROOT_ADMIN_ACCOUNT_TYPE = 1;

/** A live account: `type` is CloudStack's Account.Type ordinal (0 user, 1 root admin, 2 domain admin, 5 project). */
export interface Account {
  readonly id: number;
  readonly uuid: string;
  readonly name: string;
  readonly type: number;
  readonly domainId: number;
  readonly state: IdentityState;
  readonly created: Date;
}

/** An account with its domain, as lists show it. */
export interface AccountView extends Account {
  readonly domainUuid: string;
  readonly domainName: string;
  readonly domainPath: string;
}

/** What listAccounts filters by (all optional, combined with AND). */
export interface AccountFilter {
  readonly uuid?: string;
  readonly name?: string;
  readonly type?: number;
  readonly state?: string;
  /** The name contains it (SQL LIKE). */
  readonly keyword?: string;
}

interface AccountDbRow { id: number; uuid: string; account_name: string; type: number; domain_id: number; state: string; created: number | string }

export const toAccount = (r: AccountDbRow): Account => ({
  id: Number(r.id), uuid: r.uuid, name: r.account_name, type: Number(r.type), domainId: Number(r.domain_id),
  state: r.state as IdentityState, created: new Date(Number(r.created)),
});

const toView = (r: AccountDbRow & { domain_uuid: string; domain_name: string; domain_path: string }): AccountView => ({
  ...toAccount(r), domainUuid: r.domain_uuid, domainName: r.domain_name, domainPath: r.domain_path,
});

/** The `account` table. */
export class AccountRepository {
  constructor(private readonly db: Knex | Knex.Transaction, private readonly read: Reader = knexReader) {}

  async byId(id: number): Promise<Account | undefined> {
    const r: AccountDbRow | undefined = await this.db('account').where({ id }).whereNull('removed').first();
    return r && toAccount(r);
  }

  async byUuid(uuid: string): Promise<Account | undefined> {
    const r: AccountDbRow | undefined = await this.db('account').where({ uuid }).whereNull('removed').first();
    return r && toAccount(r);
  }

  async byName(domainId: number, name: string): Promise<Account | undefined> {
    // Whatever the case, as CloudStack on its MySQL schema (migration 012).
    const r: AccountDbRow | undefined = await this.db('account').where({ domain_id: domainId, account_name_key: nameKey(name) }).whereNull('removed').first();
    return r && toAccount(r);
  }

  async insert(a: { uuid: string; name: string; type: number; domainId: number; state: IdentityState; created: Date }): Promise<Account> {
    const [id] = await this.db('account').insert({
      uuid: a.uuid, account_name: a.name, account_name_key: nameKey(a.name), type: a.type, domain_id: a.domainId, state: a.state, created: a.created.getTime(),
    });
    return { ...a, id: Number(id) };
  }

  async setState(id: number, state: IdentityState): Promise<void> {
    await this.db('account').where({ id }).update({ state });
  }

  /**
   * Locks an enabled account when none of its users is enabled any more, in one conditional
   * statement so two concurrent calls cannot both miss it.
   */
  async lockWithoutEnabledUsers(id: number): Promise<void> {
    await this.db('account').where({ id, state: 'enabled' })
      .whereNotExists((q) => q.select('id').from('user').where({ account_id: id, state: 'enabled' }).whereNull('removed'))
      .update({ state: 'locked' });
  }

  /** Marks an account removed (a deleted project's own account). */
  async markRemoved(id: number, at: Date): Promise<void> {
    await this.db('account').where({ id }).update({ removed: at.getTime(), state: 'disabled' });
  }

  /** The project accounts (type 5) in these domains (all domains when absent), among `amongIds` when given. */
  async projectAccountIds(domainIds?: readonly number[], amongIds?: readonly number[]): Promise<number[]> {
    if (amongIds && !amongIds.length) return [];
    const q = this.db('account').where('type', PROJECT_ACCOUNT_TYPE).select('id');
    if (domainIds) q.whereIn('domain_id', [...domainIds]);
    if (amongIds) q.whereIn('id', [...amongIds]);
    const rows = await this.read.rows<{ id: number }>(q);
    return rows.map((r) => Number(r.id));
  }

  /** The root-admin accounts (type 1) in these domains. */
  async rootAdminIdsIn(domainIds: readonly number[]): Promise<number[]> {
    const rows = await this.read.rows<{ id: number }>(this.db('account').where('type', ROOT_ADMIN_ACCOUNT_TYPE).whereIn('domain_id', [...domainIds]).select('id'));
    return rows.map((r) => Number(r.id));
  }

  /** One live account with its domain. */
  async view(id: number): Promise<AccountView | undefined> {
    const r = await this.viewQuery().where('a.id', id).first();
    return r && toView(r);
  }

  /** A page of the accounts of people (never a project's own account) in a scope, by id. */
  async list(scope: OwnerScope, f: AccountFilter, page: PageWindow): Promise<Page<AccountView>> {
    const q = applyOwnerScope(this.viewQuery(), scope, { accountCol: 'a.id', domainCol: 'a.domain_id' })
      .whereNot('a.type', PROJECT_ACCOUNT_TYPE).orderBy('a.id');
    if (f.uuid) q.where('a.uuid', f.uuid);
    if (f.name) q.where('a.account_name_key', nameKey(f.name));
    if (f.type !== undefined) q.where('a.type', f.type);
    if (f.state) q.where('a.state', f.state);
    if (f.keyword) q.where('a.account_name_key', 'like', `%${nameKey(f.keyword)}%`);
    const { rows, count } = await pagedRows<AccountDbRow & { domain_uuid: string; domain_name: string; domain_path: string }>(q, page);
    return { rows: rows.map(toView), count };
  }

  private viewQuery() {
    return this.db('account as a').join('domain as d', 'd.id', 'a.domain_id').whereNull('a.removed')
      .select('a.id', 'a.uuid', 'a.account_name', 'a.type', 'a.domain_id', 'a.state', 'a.created', 'd.uuid as domain_uuid', 'd.name as domain_name', 'd.path as domain_path');
  }
}
