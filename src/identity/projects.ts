import { randomUUID } from 'node:crypto';
import type { Db } from '../db/knex';
import type { EventLog, EventType } from '../events/event-log';
import { paramError, permissionError } from '../core/errors';
import { scopeContains } from './access';
import { ACCOUNT_TYPES, type Caller } from './caller';
import type { AccountRow, Directory, ProjectRow } from './directory';

/** CloudStack's ProjectAccount.Role. */
export type ProjectRole = 'Admin' | 'Regular';
export const PROJECT_ROLES: readonly ProjectRole[] = ['Admin', 'Regular'];

/** A project as the API shows it, with its domain and its admins. */
export interface ProjectView extends ProjectRow {
  domain_uuid: string; domain_name: string; domain_path: string; project_account_name: string;
  owners: Array<{ account: string; accountid: string }>;
}

export interface MemberView {
  account_uuid: string; account_name: string; account_type: number; account_role: string;
  domain_uuid: string; domain_name: string; domain_path: string;
}

/**
 * CloudStack projects: a project owns its resources through its own account (type 5, PROJECT),
 * in the project's domain. Its members (`project_account`) reach that account (src/identity/access.ts);
 * its Admin members, the domain admins above it and root admins manage it.
 */
export class Projects {
  constructor(private readonly db: Db, private readonly directory: Directory, private readonly events: EventLog) {}

  /** Creates a project owned by `owner` (an ordinary account): its project account, the project, and the owner as Admin member. */
  async create(caller: Caller, input: { name: string; displayText?: string; account?: string; domainUuid?: string }): Promise<ProjectRow> {
    const name = input.name.trim();
    if (!name) throw paramError('Project name can\'t be blank');
    const owner = await this.directory.resolveOwner(caller, { account: input.account, domainid: input.domainUuid });
    if (owner.type === ACCOUNT_TYPES.Project) throw paramError('A project account can\'t own a project');
    if (await this.db('projects').where({ domain_id: owner.domain_id, name }).whereNull('removed').first('id')) {
      throw paramError(`Project with name ${name} already exists in domain id=${(await this.directory.domainById(owner.domain_id))?.uuid ?? owner.domain_id}`);
    }
    const now = Date.now();
    return this.db.transaction(async (trx) => {
      const account = { uuid: randomUUID(), account_name: `PrjAcct-${name}-${owner.id}`, type: ACCOUNT_TYPES.Project, domain_id: owner.domain_id, state: 'enabled', created: now };
      const [accountId] = await trx('account').insert(account);
      const row = {
        uuid: randomUUID(), name, display_text: input.displayText?.trim() || name, domain_id: owner.domain_id,
        project_account_id: Number(accountId), state: 'Active', created: now,
      };
      const [id] = await trx('projects').insert(row);
      await trx('project_account').insert({ project_id: Number(id), account_id: owner.id, account_role: 'Admin', created: now });
      await this.events.record({
        type: 'PROJECT.CREATE', description: `Created project ${name}`, actor: { userId: caller.userId, accountId: Number(accountId), domainId: owner.domain_id },
        resourceType: 'Project', resourceId: row.uuid,
      }, trx);
      return { ...row, id: Number(id) };
    });
  }

  /**
   * A project the caller may manage: root admins, domain admins whose subtree holds it, and its
   * Admin members. A caller that does not even reach it is told so as for any project command.
   */
  async requireManageable(caller: Caller, uuid: string): Promise<ProjectRow> {
    const project = await this.directory.requireProjectAccess(caller, uuid);
    if (caller.role === 'Admin') return project;
    if (caller.role === 'DomainAdmin' && (await this.directory.access.reachesDomain(caller, project.domain_id))) return project;
    const member = await this.db('project_account').where({ project_id: project.id, account_id: caller.accountId, account_role: 'Admin' }).first('id');
    if (!member) throw permissionError(`Account ${caller.accountName} is not an admin of project id=${uuid}`);
    return project;
  }

  async update(caller: Caller, uuid: string, change: { name?: string; displayText?: string }): Promise<ProjectRow> {
    const project = await this.requireManageable(caller, uuid);
    const name = change.name?.trim();
    if (name !== undefined && !name) throw paramError('Project name can\'t be blank');
    if (name && name !== project.name && (await this.db('projects').where({ domain_id: project.domain_id, name }).whereNull('removed').first('id'))) {
      throw paramError(`Project with name ${name} already exists in this domain`);
    }
    const patch = { ...(name ? { name } : {}), ...(change.displayText !== undefined ? { display_text: change.displayText } : {}) };
    if (Object.keys(patch).length) await this.db('projects').where({ id: project.id }).update(patch);
    await this.record(caller, project, 'PROJECT.UPDATE', `Updated project ${name ?? project.name}`);
    return { ...project, ...patch };
  }

  /** Whether the project account still owns a key, a volume or an HSM profile (they must go first). */
  async assertEmpty(project: ProjectRow): Promise<void> {
    const owned = async (table: string) => !!(await this.db(table).where({ account_id: project.project_account_id }).whereNull('removed').first('id'));
    for (const [table, what] of [['kms_keys', 'KMS keys'], ['volumes', 'volumes'], ['kms_hsm_profiles', 'HSM profiles']] as const) {
      if (await owned(table)) throw paramError(`Project ${project.name} still owns ${what}; delete them before the project`);
    }
  }

  /** Removes an empty project, its account and its memberships. */
  async delete(caller: Caller, uuid: string): Promise<void> {
    const project = await this.requireManageable(caller, uuid);
    await this.assertEmpty(project);
    const now = Date.now();
    await this.db.transaction(async (trx) => {
      await trx('project_account').where({ project_id: project.id }).delete();
      await trx('projects').where({ id: project.id }).update({ removed: now, state: 'Destroyed' });
      await trx('account').where({ id: project.project_account_id }).update({ removed: now, state: 'disabled' });
    });
    await this.record(caller, project, 'PROJECT.DELETE', `Deleted project ${project.name}`);
  }

  /** The account a membership command names: an ordinary live account of the project's domain. */
  async memberCandidate(project: ProjectRow, accountName: string): Promise<AccountRow> {
    const account = await this.directory.accountByName(project.domain_id, accountName);
    if (!account || account.type === ACCOUNT_TYPES.Project) throw paramError(`Unable to find account name=${accountName} in domain id=${project.domain_id}`);
    return account;
  }

  async addAccount(caller: Caller, uuid: string, accountName: string, role: ProjectRole): Promise<void> {
    const project = await this.requireManageable(caller, uuid);
    const account = await this.memberCandidate(project, accountName);
    if (await this.db('project_account').where({ project_id: project.id, account_id: account.id }).first('id')) {
      throw paramError(`Account ${accountName} is already assigned to the project id=${uuid}`);
    }
    await this.db('project_account').insert({ project_id: project.id, account_id: account.id, account_role: role, created: Date.now() });
    await this.record(caller, project, 'PROJECT.ACCOUNT.ADD', `Added account ${accountName} to project ${project.name} as ${role}`);
  }

  /** Removes a member; the last Admin stays (a project always has an owner). */
  async removeAccount(caller: Caller, uuid: string, accountName: string): Promise<void> {
    const project = await this.requireManageable(caller, uuid);
    const account = await this.memberCandidate(project, accountName);
    const member = await this.db('project_account').where({ project_id: project.id, account_id: account.id }).first('id', 'account_role');
    if (!member) throw paramError(`Account ${accountName} is not assigned to the project id=${uuid}`);
    if (member.account_role === 'Admin') {
      const admins = await this.db('project_account').where({ project_id: project.id, account_role: 'Admin' }).count<Array<{ n: number }>>('id as n');
      if (Number(admins[0]?.n ?? 0) <= 1) throw paramError(`Account ${accountName} is the last admin of project id=${uuid} and can't be removed`);
    }
    await this.db('project_account').where({ id: member.id }).delete();
    await this.record(caller, project, 'PROJECT.ACCOUNT.REMOVE', `Removed account ${accountName} from project ${project.name}`);
  }

  /**
   * The projects a list shows. With listall (or a domain) every project whose account the caller
   * reaches (root: all; a domain admin: its subtree); otherwise those it is a member of.
   */
  async list(caller: Caller, f: { uuid?: string; name?: string; keyword?: string; listall?: boolean; domainUuid?: string; isrecursive?: boolean; state?: string }): Promise<ProjectView[]> {
    const q = this.viewQuery().orderBy('p.id');
    if (f.uuid) q.where('p.uuid', f.uuid);
    if (f.name) q.where('p.name', f.name);
    if (f.state) q.where('p.state', f.state);
    if (f.keyword) q.where((b) => b.where('p.name', 'like', `%${f.keyword}%`).orWhere('p.display_text', 'like', `%${f.keyword}%`));
    if (f.domainUuid) {
      const domain = await this.directory.requireDomain(caller, f.domainUuid);
      q.whereIn('p.domain_id', f.isrecursive || f.listall ? await this.directory.access.subtreeIds(domain.id) : [domain.id]);
    }
    const rows: ProjectView[] = await q;
    const reach = await this.directory.access.reach(caller);
    const memberOf = new Set(await this.directory.access.memberProjectAccountIds(caller.accountId));
    const wide = f.listall || !!f.domainUuid || !!f.uuid;
    const visible = rows.filter((r) => (wide
      ? scopeContains(reach, { accountId: Number(r.project_account_id), domainId: Number(r.domain_id) })
      : memberOf.has(Number(r.project_account_id))));
    return this.withOwners(visible);
  }

  async view(id: number): Promise<ProjectView> {
    const rows: ProjectView[] = await this.viewQuery().where('p.id', id);
    return (await this.withOwners(rows))[0]!;
  }

  async members(caller: Caller, uuid: string, f: { account?: string; role?: string }): Promise<MemberView[]> {
    const project = await this.directory.requireProjectAccess(caller, uuid);
    const q = this.db('project_account as m').join('account as a', 'a.id', 'm.account_id').join('domain as d', 'd.id', 'a.domain_id')
      .where('m.project_id', project.id).orderBy('m.id')
      .select('a.uuid as account_uuid', 'a.account_name', 'a.type as account_type', 'm.account_role', 'd.uuid as domain_uuid', 'd.name as domain_name', 'd.path as domain_path');
    if (f.account) q.where('a.account_name', f.account);
    if (f.role) q.where('m.account_role', f.role);
    return q;
  }

  private viewQuery() {
    return this.db('projects as p').join('domain as d', 'd.id', 'p.domain_id').join('account as pa', 'pa.id', 'p.project_account_id')
      .whereNull('p.removed')
      .select('p.*', 'd.uuid as domain_uuid', 'd.name as domain_name', 'd.path as domain_path', 'pa.account_name as project_account_name');
  }

  private async withOwners(rows: ProjectView[]): Promise<ProjectView[]> {
    if (!rows.length) return rows;
    const admins: Array<{ project_id: number; account_name: string; account_uuid: string }> = await this.db('project_account as m')
      .join('account as a', 'a.id', 'm.account_id').whereIn('m.project_id', rows.map((r) => r.id)).where('m.account_role', 'Admin')
      .orderBy('m.id').select('m.project_id', 'a.account_name', 'a.uuid as account_uuid');
    return rows.map((r) => ({
      ...r,
      owners: admins.filter((a) => Number(a.project_id) === Number(r.id)).map((a) => ({ account: a.account_name, accountid: a.account_uuid })),
    }));
  }

  private async record(caller: Caller, project: ProjectRow, type: EventType, description: string): Promise<void> {
    await this.events.record({
      type, description, actor: { userId: caller.userId, accountId: project.project_account_id, domainId: project.domain_id },
      resourceType: 'Project', resourceId: project.uuid,
    });
  }
}
