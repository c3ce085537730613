import { randomUUID } from 'node:crypto';
import type { Clock } from '../core/clock';
import { paramError, permissionError } from '../core/errors';
import type { Repositories } from '../db/repositories';
import type { Account } from '../db/repositories/accounts';
import type { Domain } from '../db/repositories/domains';
import type { PageWindow, Page } from '../db/paging';
import type { Project, ProjectMember, ProjectRole, ProjectView } from '../db/repositories/projects';
import type { EventLog, EventType } from '../events/event-log';
import type { Access } from './access';
import { ACCOUNT_TYPES, type Caller } from './caller';

export type { ProjectMember, ProjectRole, ProjectView } from '../db/repositories/projects';
export const PROJECT_ROLES: readonly ProjectRole[] = ['Admin', 'Regular'];

/** What the project service needs: the repositories, the event log and a clock. */
export interface ProjectDeps {
  readonly repos: Repositories;
  readonly events: EventLog;
  readonly clock: Clock;
}

/** What projects ask of the directory (src/identity/directory.ts builds the project service with itself). */
export interface ProjectDirectory {
  readonly access: Access;
  owningAccount(caller: Caller, req: { account?: string; domainid?: string }): Promise<Account>;
  accessibleDomain(caller: Caller, uuid: string): Promise<Domain>;
  accessibleProject(caller: Caller, uuid: string): Promise<Project>;
}

/** What listProjects asks for. */
export interface ProjectListRequest {
  uuid?: string; name?: string; displayText?: string; keyword?: string; listall?: boolean; domainUuid?: string; isrecursive?: boolean; state?: string;
}

/**
 * CloudStack projects: a project owns its resources through its own account (type 5, PROJECT),
 * in the project's domain. Its members (`project_account`) reach that account (src/identity/access.ts);
 * its Admin members, the domain admins above it and root admins manage it.
 */
export class Projects {
  constructor(private readonly deps: ProjectDeps, private readonly directory: ProjectDirectory) {}

  private get repos(): Repositories {
    return this.deps.repos;
  }

  private now(): Date {
    return new Date(this.deps.clock.now());
  }

  /** Creates a project owned by `owner` (an ordinary account): its project account, the project, and the owner as Admin member. */
  async create(caller: Caller, input: { name: string; displayText?: string; account?: string; domainUuid?: string }): Promise<Project> {
    const name = input.name.trim();
    if (!name) throw paramError('Project name can\'t be blank');
    const owner = await this.directory.owningAccount(caller, { account: input.account, domainid: input.domainUuid });
    if (owner.type === ACCOUNT_TYPES.Project) throw paramError('A project account can\'t own a project');
    if (await this.repos.projects.nameTaken(owner.domainId, name)) {
      throw paramError(`Project with name ${name} already exists in domain id=${(await this.repos.domains.byId(owner.domainId))?.uuid ?? owner.domainId}`);
    }
    const now = this.now();
    const project = await this.repos.transaction(async (tx) => {
      const account = await tx.accounts.insert({ uuid: randomUUID(), name: `PrjAcct-${name}-${owner.id}`, type: ACCOUNT_TYPES.Project, domainId: owner.domainId, state: 'enabled', created: now });
      const p = await tx.projects.insert({
        uuid: randomUUID(), name, displayText: input.displayText?.trim() || name, domainId: owner.domainId, accountId: account.id, state: 'Active', created: now,
      });
      await tx.projects.addMember(p.id, owner.id, 'Admin', now);
      await this.deps.events.record({
        type: 'PROJECT.CREATE', description: `Created project ${name}`, actor: { userId: caller.userId, accountId: p.accountId, domainId: owner.domainId },
        resourceType: 'Project', resourceId: p.uuid,
      }, tx);
      return p;
    });
    return project;
  }

  /**
   * A project the caller may manage: root admins, domain admins whose subtree holds it, and its
   * Admin members. A caller that does not even reach it is told so as for any project command.
   */
  async requireManageable(caller: Caller, uuid: string): Promise<Project> {
    const project = await this.directory.accessibleProject(caller, uuid);
    if (caller.role === 'Admin') return project;
    if (caller.role === 'DomainAdmin' && (await this.directory.access.reachesDomain(caller, project.domainId))) return project;
    const member = await this.repos.projects.membership(project.id, caller.accountId);
    if (member?.role !== 'Admin') throw permissionError(`Account ${caller.accountName} is not an admin of project id=${uuid}`);
    return project;
  }

  async update(caller: Caller, uuid: string, change: { name?: string; displayText?: string }): Promise<Project> {
    const project = await this.requireManageable(caller, uuid);
    const name = change.name?.trim();
    if (name !== undefined && !name) throw paramError('Project name can\'t be blank');
    if (name && name !== project.name && (await this.repos.projects.nameTaken(project.domainId, name))) {
      throw paramError(`Project with name ${name} already exists in this domain`);
    }
    const patch = { ...(name ? { name } : {}), ...(change.displayText !== undefined ? { displayText: change.displayText } : {}) };
    await this.repos.projects.update(project.id, patch);
    await this.record(caller, project, 'PROJECT.UPDATE', `Updated project ${name ?? project.name}`);
    return { ...project, ...patch };
  }

  /** Whether the project account still owns a key, a volume or an HSM profile (they must go first). */
  async assertEmpty(project: Project): Promise<void> {
    const what = await this.repos.projects.firstOwnedKind(project.accountId);
    if (what) throw paramError(`Project ${project.name} still owns ${what}; delete them before the project`);
  }

  /** Removes an empty project, its account and its memberships. */
  async delete(caller: Caller, uuid: string): Promise<void> {
    const project = await this.requireManageable(caller, uuid);
    await this.assertEmpty(project);
    const now = this.now();
    await this.repos.transaction(async (tx) => {
      await tx.projects.removeAllMembers(project.id);
      await tx.projects.markRemoved(project.id, now);
      await tx.accounts.markRemoved(project.accountId, now);
    });
    await this.record(caller, project, 'PROJECT.DELETE', `Deleted project ${project.name}`);
  }

  /** The account a membership command names: an ordinary live account of the project's domain. */
  async memberCandidate(project: Project, accountName: string): Promise<Account> {
    const account = await this.repos.accounts.byName(project.domainId, accountName);
    if (!account || account.type === ACCOUNT_TYPES.Project) throw paramError(`Unable to find account name=${accountName} in domain id=${project.domainId}`);
    return account;
  }

  /** Whether the account named `accountName` of the project's domain is a member of the live project `uuid` (431 when the project is gone). */
  async isMember(uuid: string, accountName: string): Promise<boolean> {
    const project = await this.repos.projects.byUuid(uuid);
    if (!project) throw paramError(`Unable to find project by id ${uuid}`);
    const account = await this.repos.accounts.byName(project.domainId, accountName);
    return !!account && !!(await this.repos.projects.membership(project.id, account.id));
  }

  async addAccount(caller: Caller, uuid: string, accountName: string, role: ProjectRole): Promise<void> {
    const project = await this.requireManageable(caller, uuid);
    const account = await this.memberCandidate(project, accountName);
    if (await this.repos.projects.membership(project.id, account.id)) {
      throw paramError(`Account ${accountName} is already assigned to the project id=${uuid}`);
    }
    await this.repos.projects.addMember(project.id, account.id, role, this.now());
    await this.record(caller, project, 'PROJECT.ACCOUNT.ADD', `Added account ${accountName} to project ${project.name} as ${role}`);
  }

  /** Removes a member; the last Admin stays (a project always has an owner). */
  async removeAccount(caller: Caller, uuid: string, accountName: string): Promise<void> {
    const project = await this.requireManageable(caller, uuid);
    const account = await this.memberCandidate(project, accountName);
    const member = await this.repos.projects.membership(project.id, account.id);
    if (!member) throw paramError(`Account ${accountName} is not assigned to the project id=${uuid}`);
    if (member.role === 'Admin' && (await this.repos.projects.adminCount(project.id)) <= 1) {
      throw paramError(`Account ${accountName} is the last admin of project id=${uuid} and can't be removed`);
    }
    await this.repos.projects.removeMembership(member.id);
    await this.record(caller, project, 'PROJECT.ACCOUNT.REMOVE', `Removed account ${accountName} from project ${project.name}`);
  }

  /**
   * The projects a list shows. With listall (or a domain, or an id) every project whose account
   * the caller reaches (root: all; a domain admin: its subtree); otherwise those it is a member of.
   */
  async list(caller: Caller, f: ProjectListRequest, page: PageWindow): Promise<Page<ProjectView>> {
    let domainIds: number[] | undefined;
    if (f.domainUuid) {
      const domain = await this.directory.accessibleDomain(caller, f.domainUuid);
      domainIds = f.isrecursive || f.listall ? await this.directory.access.subtreeIds(domain.id) : [domain.id];
    }
    const wide = f.listall || !!f.domainUuid || !!f.uuid;
    const visible = wide
      ? { scope: await this.directory.access.reach(caller) }
      : { accountIds: await this.directory.access.memberProjectAccountIds(caller.accountId) };
    return this.repos.projects.list({
      uuid: f.uuid, name: f.name, displayText: f.displayText, state: f.state, keyword: f.keyword, domainIds, ...visible,
    }, page);
  }

  /** One live project as the API shows it. */
  async view(id: number): Promise<ProjectView> {
    const view = await this.repos.projects.view(id);
    if (!view) throw paramError(`Unable to find project by id ${id}`);
    return view;
  }

  /** The members of a project the caller reaches. */
  async members(caller: Caller, uuid: string, f: { account?: string; role?: string; keyword?: string }, page: PageWindow): Promise<{ project: Project; members: Page<ProjectMember> }> {
    const project = await this.directory.accessibleProject(caller, uuid);
    return { project, members: await this.repos.projects.members(project.id, { accountName: f.account, role: f.role, keyword: f.keyword }, page) };
  }

  private async record(caller: Caller, project: Project, type: EventType, description: string): Promise<void> {
    await this.deps.events.record({
      type, description, actor: { userId: caller.userId, accountId: project.accountId, domainId: project.domainId },
      resourceType: 'Project', resourceId: project.uuid,
    });
  }
}
