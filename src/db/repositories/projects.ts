import type { Knex } from 'knex';
import type { OwnerScope } from '../../core/owner-scope';
import { applyOwnerScope } from '../owner-scope';
import { type Page, type PageWindow } from '../paging';
import { pagedRows } from '../reader';

/** CloudStack's ProjectAccount.Role. */
export type ProjectRole = 'Admin' | 'Regular';

/** A live project: it owns its resources through its own account (`accountId`, type 5). */
export interface Project {
  readonly id: number;
  readonly uuid: string;
  readonly name: string;
  readonly displayText: string | null;
  readonly domainId: number;
  /** The project's own account, which owns its keys, volumes and profiles. */
  readonly accountId: number;
  readonly state: string;
  readonly created: Date;
}

/** A project as the API shows it, with its domain, its account's name and its Admin members. */
export interface ProjectView extends Project {
  readonly domainUuid: string;
  readonly domainName: string;
  readonly domainPath: string;
  readonly accountName: string;
  readonly owners: ReadonlyArray<{ readonly accountName: string; readonly accountUuid: string }>;
}

/** A member of a project, with its account and domain. */
export interface ProjectMember {
  readonly accountUuid: string;
  readonly accountName: string;
  readonly accountType: number;
  readonly role: ProjectRole;
  readonly domainUuid: string;
  readonly domainName: string;
  readonly domainPath: string;
}

/** What listProjects shows: filters, and which projects the caller may see. */
export interface ProjectFilter {
  readonly uuid?: string;
  readonly name?: string;
  /** Exactly this display text (case-sensitive). */
  readonly displayText?: string;
  readonly state?: string;
  /** The name or display text contains it (SQL LIKE). */
  readonly keyword?: string;
  readonly domainIds?: readonly number[];
  /** Projects whose account is in this scope (owner filtering on the project account and domain). */
  readonly scope?: OwnerScope;
  /** Projects whose account is one of these (the caller's memberships). */
  readonly accountIds?: readonly number[];
}

interface ProjectDbRow {
  id: number; uuid: string; name: string; display_text: string | null; domain_id: number; project_account_id: number; state: string; created: number | string;
}

const toProject = (r: ProjectDbRow): Project => ({
  id: Number(r.id), uuid: r.uuid, name: r.name, displayText: r.display_text, domainId: Number(r.domain_id),
  accountId: Number(r.project_account_id), state: r.state, created: new Date(Number(r.created)),
});

type ViewDbRow = ProjectDbRow & { domain_uuid: string; domain_name: string; domain_path: string; project_account_name: string };

/** The `projects` and `project_account` tables. */
export class ProjectRepository {
  constructor(private readonly db: Knex | Knex.Transaction, private readonly isMysql: boolean) {}

  async byId(id: number): Promise<Project | undefined> {
    const r: ProjectDbRow | undefined = await this.db('projects').where({ id }).whereNull('removed').first();
    return r && toProject(r);
  }

  async byUuid(uuid: string): Promise<Project | undefined> {
    const r: ProjectDbRow | undefined = await this.db('projects').where({ uuid }).whereNull('removed').first();
    return r && toProject(r);
  }

  /** Whether a live project of the domain has this name. */
  async nameTaken(domainId: number, name: string): Promise<boolean> {
    return !!(await this.db('projects').where({ domain_id: domainId, name }).whereNull('removed').first('id'));
  }

  async insert(p: { uuid: string; name: string; displayText: string | null; domainId: number; accountId: number; state: string; created: Date }): Promise<Project> {
    const [id] = await this.db('projects').insert({
      uuid: p.uuid, name: p.name, display_text: p.displayText, domain_id: p.domainId, project_account_id: p.accountId, state: p.state, created: p.created.getTime(),
    });
    return { ...p, id: Number(id) };
  }

  async update(id: number, patch: { name?: string; displayText?: string }): Promise<void> {
    const row = { ...(patch.name !== undefined ? { name: patch.name } : {}), ...(patch.displayText !== undefined ? { display_text: patch.displayText } : {}) };
    if (Object.keys(row).length) await this.db('projects').where({ id }).update(row);
  }

  /** Marks a project removed (state Destroyed). */
  async markRemoved(id: number, at: Date): Promise<void> {
    await this.db('projects').where({ id }).update({ removed: at.getTime(), state: 'Destroyed' });
  }

  /** The accounts of the live projects an account is a member of (any role). */
  async memberProjectAccountIds(accountId: number): Promise<number[]> {
    const rows: Array<{ id: number }> = await this.db('project_account as m').join('projects as p', 'p.id', 'm.project_id')
      .where('m.account_id', accountId).whereNull('p.removed').select('p.project_account_id as id');
    return rows.map((r) => Number(r.id));
  }

  /** The owner (project account and domain) of every live project. */
  async owners(): Promise<Array<{ accountId: number; domainId: number }>> {
    const rows: Array<{ accountId: number; domainId: number }> = await this.db('projects').whereNull('removed')
      .select('project_account_id as accountId', 'domain_id as domainId');
    return rows.map((r) => ({ accountId: Number(r.accountId), domainId: Number(r.domainId) }));
  }

  /** An account's membership of a project. */
  async membership(projectId: number, accountId: number): Promise<{ id: number; role: ProjectRole } | undefined> {
    const r: { id: number; account_role: ProjectRole } | undefined = await this.db('project_account')
      .where({ project_id: projectId, account_id: accountId }).first('id', 'account_role');
    return r && { id: Number(r.id), role: r.account_role };
  }

  async addMember(projectId: number, accountId: number, role: ProjectRole, at: Date): Promise<void> {
    await this.db('project_account').insert({ project_id: projectId, account_id: accountId, account_role: role, created: at.getTime() });
  }

  async removeMembership(membershipId: number): Promise<void> {
    await this.db('project_account').where({ id: membershipId }).delete();
  }

  async removeAllMembers(projectId: number): Promise<void> {
    await this.db('project_account').where({ project_id: projectId }).delete();
  }

  async adminCount(projectId: number): Promise<number> {
    const rows = await this.db('project_account').where({ project_id: projectId, account_role: 'Admin' }).count<Array<{ n: number }>>('id as n');
    return Number(rows[0]?.n ?? 0);
  }

  /**
   * What an account still owns that must go before its project: the first of KMS keys, volumes
   * and HSM profiles it owns (a view over the tables of the KMS), or undefined.
   */
  async firstOwnedKind(accountId: number): Promise<'KMS keys' | 'volumes' | 'HSM profiles' | undefined> {
    for (const [table, what] of [['kms_keys', 'KMS keys'], ['volumes', 'volumes'], ['kms_hsm_profiles', 'HSM profiles']] as const) {
      if (await this.db(table).where({ account_id: accountId }).whereNull('removed').first('id')) return what;
    }
    return undefined;
  }

  /** One live project as the API shows it. */
  async view(id: number): Promise<ProjectView | undefined> {
    const rows: ViewDbRow[] = await this.viewQuery().where('p.id', id);
    return (await this.withOwners(rows))[0];
  }

  /** A page of live projects, by id. */
  async list(f: ProjectFilter, page: PageWindow): Promise<Page<ProjectView>> {
    const q = this.viewQuery().orderBy('p.id');
    if (f.uuid) q.where('p.uuid', f.uuid);
    if (f.name) q.where('p.name', f.name);
    if (f.displayText !== undefined) q.whereRaw(this.isMysql ? 'p.display_text = binary ?' : 'p.display_text = ?', [f.displayText]);
    if (f.state) q.where('p.state', f.state);
    if (f.keyword) q.where((b) => b.where('p.name', 'like', `%${f.keyword}%`).orWhere('p.display_text', 'like', `%${f.keyword}%`));
    if (f.domainIds) q.whereIn('p.domain_id', [...f.domainIds]);
    if (f.scope) applyOwnerScope(q, f.scope, { accountCol: 'p.project_account_id', domainCol: 'p.domain_id' });
    if (f.accountIds) q.whereIn('p.project_account_id', [...f.accountIds]);
    const { rows, count } = await pagedRows<ViewDbRow>(q, page);
    return { rows: await this.withOwners(rows), count };
  }

  /** The members of a project, by membership id; `keyword`: the account name contains it (case-sensitive). */
  async members(projectId: number, f: { accountName?: string; role?: string; keyword?: string }, page: PageWindow): Promise<Page<ProjectMember>> {
    const q = this.db('project_account as m').join('account as a', 'a.id', 'm.account_id').join('domain as d', 'd.id', 'a.domain_id')
      .where('m.project_id', projectId).orderBy('m.id')
      .select('a.uuid as account_uuid', 'a.account_name', 'a.type as account_type', 'm.account_role', 'd.uuid as domain_uuid', 'd.name as domain_name', 'd.path as domain_path');
    if (f.accountName) q.where('a.account_name', f.accountName);
    if (f.role) q.where('m.account_role', f.role);
    if (f.keyword) q.whereRaw(this.isMysql ? 'locate(binary ?, a.account_name) > 0' : 'instr(a.account_name, ?) > 0', [f.keyword]);
    const { rows, count } = await pagedRows<{
      account_uuid: string; account_name: string; account_type: number; account_role: ProjectRole; domain_uuid: string; domain_name: string; domain_path: string;
    }>(q, page);
    return {
      rows: rows.map((r) => ({
        accountUuid: r.account_uuid, accountName: r.account_name, accountType: Number(r.account_type), role: r.account_role,
        domainUuid: r.domain_uuid, domainName: r.domain_name, domainPath: r.domain_path,
      })),
      count,
    };
  }

  private viewQuery() {
    return this.db('projects as p').join('domain as d', 'd.id', 'p.domain_id').join('account as pa', 'pa.id', 'p.project_account_id')
      .whereNull('p.removed')
      .select('p.*', 'd.uuid as domain_uuid', 'd.name as domain_name', 'd.path as domain_path', 'pa.account_name as project_account_name');
  }

  private async withOwners(rows: ViewDbRow[]): Promise<ProjectView[]> {
    if (!rows.length) return [];
    const admins: Array<{ project_id: number; account_name: string; account_uuid: string }> = await this.db('project_account as m')
      .join('account as a', 'a.id', 'm.account_id').whereIn('m.project_id', rows.map((r) => r.id)).where('m.account_role', 'Admin')
      .orderBy('m.id').select('m.project_id', 'a.account_name', 'a.uuid as account_uuid');
    return rows.map((r) => ({
      ...toProject(r), domainUuid: r.domain_uuid, domainName: r.domain_name, domainPath: r.domain_path, accountName: r.project_account_name,
      owners: admins.filter((a) => Number(a.project_id) === Number(r.id)).map((a) => ({ accountName: a.account_name, accountUuid: a.account_uuid })),
    }));
  }
}
