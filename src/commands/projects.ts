import type { App } from '../app';
import { formatDate } from '../core/dates';
import { pageWindow } from './pagination';
import { permissionError, paramError } from '../core/errors';
import type { JobHandler, RunningJob } from '../jobs/types';
import type { Caller } from '../identity/caller';
import { PROJECT_ROLES, Projects, type MemberView, type ProjectRole, type ProjectView } from '../identity/projects';
import { asyncParams, submitAsync } from './async-jobs';
import { ALL_ROLES, defineCommand, listParams, param, type ResponseField } from './define';

/**
 * CloudStack projects (ProjectManagerImpl, QueryManagerImpl.listProjects): createProject,
 * updateProject, deleteProject, addAccountToProject and deleteAccountFromProject are async;
 * listProjects and listProjectAccounts are not. A project owns keys, volumes and profiles through its
 * own account; the commands that make or list them take `projectid`.
 */

const projects = (app: App) => new Projects(app.db, app.directory, app.events);

export const projectFields: readonly ResponseField[] = [
  { name: 'id', type: 'string', description: 'the id of the project' },
  { name: 'name', type: 'string', description: 'the name of the project' },
  { name: 'displaytext', type: 'string', description: 'the displaytext of the project' },
  { name: 'domainid', type: 'string', description: 'the domain id the project belongs to' },
  { name: 'domain', type: 'string', description: 'the domain name where the project belongs to' },
  { name: 'domainpath', type: 'string', description: 'the domain path where the project belongs to' },
  { name: 'account', type: 'string', description: 'the account name of the project\'s owner' },
  { name: 'owner', type: 'list', description: 'the accounts that administer the project (account, accountid)' },
  { name: 'projectaccountname', type: 'string', description: 'the name of the project\'s own account, which owns its resources' },
  { name: 'state', type: 'string', description: 'the state of the project' },
  { name: 'created', type: 'date', description: 'the date this project was created' },
  { name: 'tags', type: 'list', description: 'the list of resource tags associated with the project' },
];

const projectAccountFields: readonly ResponseField[] = [
  { name: 'projectid', type: 'string', description: 'project id' },
  { name: 'project', type: 'string', description: 'project name' },
  { name: 'accountid', type: 'string', description: 'the id of the account' },
  { name: 'account', type: 'string', description: 'the name of the account' },
  { name: 'accounttype', type: 'integer', description: 'account type (admin, domain-admin, user)' },
  { name: 'role', type: 'string', description: 'account role in the project (Regular, Admin)' },
  { name: 'domainid', type: 'string', description: 'id of the Domain the account belongs to' },
  { name: 'domain', type: 'string', description: 'name of the Domain the account belongs to' },
  { name: 'domainpath', type: 'string', description: 'path of the Domain the account belongs to' },
];

const successFields: readonly ResponseField[] = [{ name: 'success', type: 'boolean', description: 'true if operation is executed successfully' }];

function projectResponse(p: ProjectView) {
  return {
    id: p.uuid, name: p.name, displaytext: p.display_text ?? p.name, domainid: p.domain_uuid, domain: p.domain_name, domainpath: p.domain_path,
    ...(p.owners[0] ? { account: p.owners[0].account } : {}), owner: p.owners, projectaccountname: p.project_account_name,
    state: p.state, created: formatDate(Number(p.created)), tags: [],
  };
}

const memberResponse = (project: { uuid: string; name: string }) => (m: MemberView) => ({
  projectid: project.uuid, project: project.name, accountid: m.account_uuid, account: m.account_name, accounttype: Number(m.account_type),
  role: m.account_role, domainid: m.domain_uuid, domain: m.domain_name, domainpath: m.domain_path,
});

async function projectObject(app: App, id: number) {
  return projectResponse(await projects(app).view(id));
}

export const PROJECT_JOBS = {
  create: 'project.create', update: 'project.update', delete: 'project.delete',
  addAccount: 'project.account.add', removeAccount: 'project.account.remove',
} as const;

/** The submitter, still enabled: its rights are checked again by each step, as the job may run late. */
async function jobCaller(app: App, job: RunningJob): Promise<Caller> {
  const caller = await app.directory.loadCaller(job.userId);
  if (!caller) throw permissionError('The user who submitted this job no longer exists or is disabled');
  return caller;
}

async function liveProject(app: App, uuid: string) {
  const project = await app.directory.projectByUuid(uuid);
  if (!project) throw paramError(`Unable to find project by id ${uuid}`);
  return project;
}

/** The async halves. Each re-checks the submitter's rights and is a no-op when a previous attempt did the work. */
export const projectJobHandlers: Record<string, (app: App) => JobHandler> = {
  // The project is made in the create phase (as CloudStack's BaseAsyncCreateCmd); the job answers it.
  [PROJECT_JOBS.create]: (app) => async (job) => ({ type: 'object', name: 'project', value: await projectObject(app, (await liveProject(app, String(job.instanceId))).id) }),
  [PROJECT_JOBS.update]: (app) => async (job) => {
    const caller = await jobCaller(app, job);
    const project = await projects(app).update(caller, String(job.instanceId), { name: job.args.name as string | undefined, displayText: job.args.displaytext as string | undefined });
    return { type: 'object', name: 'project', value: await projectObject(app, project.id) };
  },
  [PROJECT_JOBS.delete]: (app) => async (job) => {
    const caller = await jobCaller(app, job);
    if (job.attempt > 1 && !(await app.directory.projectByUuid(String(job.instanceId)))) return { type: 'success' };
    await projects(app).delete(caller, String(job.instanceId));
    return { type: 'success' };
  },
  [PROJECT_JOBS.addAccount]: (app) => async (job) => {
    const caller = await jobCaller(app, job);
    const uuid = String(job.instanceId);
    const account = String(job.args.account);
    if (job.attempt > 1 && (await isMember(app, uuid, account))) return { type: 'success' };
    await projects(app).addAccount(caller, uuid, account, job.args.role as ProjectRole);
    return { type: 'success' };
  },
  [PROJECT_JOBS.removeAccount]: (app) => async (job) => {
    const caller = await jobCaller(app, job);
    const uuid = String(job.instanceId);
    const account = String(job.args.account);
    if (job.attempt > 1 && !(await isMember(app, uuid, account))) return { type: 'success' };
    await projects(app).removeAccount(caller, uuid, account);
    return { type: 'success' };
  },
};

async function isMember(app: App, uuid: string, accountName: string): Promise<boolean> {
  const project = await liveProject(app, uuid);
  const account = await app.directory.accountByName(project.domain_id, accountName);
  return !!account && !!(await app.db('project_account').where({ project_id: project.id, account_id: account.id }).first('id'));
}

const projectId = param.uuid({ required: true, description: 'ID of the project', related: 'listProjects' });

export const projectCommands = [
  defineCommand({
    name: 'createProject',
    description: 'Creates a project: its own account owns the keys, volumes and profiles made with its projectid; the owner account becomes its Admin member',
    isAsync: true,
    roles: ALL_ROLES,
    related: 'listProjects',
    params: {
      ...asyncParams,
      name: param.string({ required: true, description: 'name of the project' }),
      displaytext: param.string({ description: 'The display text of the project, defaults to the \'name\'' }),
      account: param.string({ description: 'account who will be Admin for the project; the caller\'s when absent' }),
      domainid: param.uuid({ description: 'domain ID of the account owning a project', related: 'listDomains' }),
      userid: param.uuid({ description: 'user ID of the account to be assigned as owner of the project i.e., Project Admin (accepted; the account is the owner)', related: 'listUsers' }),
    },
    response: projectFields,
    async handler(p, ctx) {
      const project = await projects(ctx.app).create(ctx.caller, { name: p.name, displayText: p.displaytext, account: p.account, domainUuid: p.domainid });
      return submitAsync(ctx, p, { kind: PROJECT_JOBS.create, args: {}, instanceType: 'Project', instanceId: project.uuid }, project.uuid);
    },
  }),
  defineCommand({
    name: 'listProjects',
    description: 'Lists projects: those the caller is a member of; with listall=true every project it may see (a domain admin those of its domains, root all)',
    roles: ALL_ROLES,
    related: 'createProject',
    params: {
      ...listParams,
      id: param.uuid({ description: 'list projects by project ID', related: 'listProjects' }),
      name: param.string({ description: 'list projects by name' }),
      displaytext: param.string({ description: 'list projects by display text' }),
      state: param.string({ description: 'list projects by state (Active)' }),
      domainid: param.uuid({ description: 'list only resources belonging to the domain specified', related: 'listDomains' }),
      isrecursive: param.boolean({ default: false, description: 'with domainid, also the projects of every domain below it' }),
      listall: param.boolean({ default: false, description: 'list every project the caller may see, not only those it is a member of' }),
      details: param.string({ description: 'comma separated list of project details requested (min, all); every detail of this server is always returned' }),
      showicon: param.boolean({ description: 'flag to display the resource icon for projects (this server has none)' }),
    },
    response: projectFields,
    async handler(p, ctx) {
      const rows = (await projects(ctx.app).list(ctx.caller, {
        uuid: p.id, name: p.name, keyword: p.keyword, listall: p.listall, domainUuid: p.domainid, isrecursive: p.isrecursive, state: p.state,
      })).filter((r) => p.displaytext === undefined || r.display_text === p.displaytext);
      const { offset, limit } = pageWindow(p);
      const page = rows.slice(offset, limit === undefined ? undefined : offset + limit);
      return { kind: 'list', name: 'project', items: page.map(projectResponse), count: rows.length };
    },
  }),
  defineCommand({
    name: 'updateProject',
    description: 'Updates a project\'s name or display text (its Admin members, the domain admins above it, root)',
    isAsync: true,
    roles: ALL_ROLES,
    related: 'listProjects',
    params: {
      ...asyncParams,
      id: projectId,
      name: param.string({ description: 'name of the project' }),
      displaytext: param.string({ description: 'display text of the project' }),
    },
    response: projectFields,
    async handler(p, ctx) {
      const project = await projects(ctx.app).requireManageable(ctx.caller, p.id);
      if (p.name !== undefined && !p.name.trim()) throw paramError('Project name can\'t be blank');
      return submitAsync(ctx, p, { kind: PROJECT_JOBS.update, args: { name: p.name, displaytext: p.displaytext }, instanceType: 'Project', instanceId: project.uuid });
    },
  }),
  defineCommand({
    name: 'deleteProject',
    description: 'Deletes a project that owns no key, volume or HSM profile any more, with its account and memberships',
    isAsync: true,
    roles: ALL_ROLES,
    params: { ...asyncParams, id: projectId, cleanup: param.boolean({ description: 'true to delete the project\'s resources too (not supported: delete them first)' }) },
    response: successFields,
    async handler(p, ctx) {
      const service = projects(ctx.app);
      const project = await service.requireManageable(ctx.caller, p.id);
      if (p.cleanup) throw paramError('cleanup=true is not supported by this server: delete the project\'s keys, volumes and HSM profiles first');
      await service.assertEmpty(project);
      return submitAsync(ctx, p, { kind: PROJECT_JOBS.delete, args: {}, instanceType: 'Project', instanceId: project.uuid });
    },
  }),
  defineCommand({
    name: 'addAccountToProject',
    description: 'Adds an account of the project\'s domain to a project (its Admin members, the domain admins above it, root)',
    isAsync: true,
    roles: ALL_ROLES,
    params: {
      ...asyncParams,
      projectid: projectId,
      account: param.string({ required: true, description: 'name of the account to be added to the project' }),
      roletype: param.string({ default: 'Regular', description: 'Project role type to be assigned to the account (Admin or Regular), Regular when absent' }),
      email: param.string({ description: 'email to which the invitation would be sent (invitations are not used by this server)' }),
    },
    response: successFields,
    async handler(p, ctx) {
      const service = projects(ctx.app);
      const project = await service.requireManageable(ctx.caller, p.projectid);
      const role = PROJECT_ROLES.find((r) => r.toLowerCase() === p.roletype.toLowerCase());
      if (!role) throw paramError(`Invalid roletype ${p.roletype}: use Admin or Regular`);
      await service.memberCandidate(project, p.account);
      return submitAsync(ctx, p, { kind: PROJECT_JOBS.addAccount, args: { account: p.account, role }, instanceType: 'Project', instanceId: project.uuid });
    },
  }),
  defineCommand({
    name: 'deleteAccountFromProject',
    description: 'Removes an account from a project; its last Admin stays',
    isAsync: true,
    roles: ALL_ROLES,
    params: {
      ...asyncParams,
      projectid: projectId,
      account: param.string({ required: true, description: 'name of the account to be removed from the project' }),
    },
    response: successFields,
    async handler(p, ctx) {
      const service = projects(ctx.app);
      const project = await service.requireManageable(ctx.caller, p.projectid);
      await service.memberCandidate(project, p.account);
      return submitAsync(ctx, p, { kind: PROJECT_JOBS.removeAccount, args: { account: p.account }, instanceType: 'Project', instanceId: project.uuid });
    },
  }),
  defineCommand({
    name: 'listProjectAccounts',
    description: 'Lists the accounts of a project with their role (any caller that reaches the project)',
    roles: ALL_ROLES,
    params: {
      ...listParams,
      projectid: projectId,
      account: param.string({ description: 'list accounts of the project by account name' }),
      role: param.string({ description: 'list accounts of the project by role (Admin, Regular)' }),
    },
    response: projectAccountFields,
    async handler(p, ctx) {
      const project = await ctx.app.directory.requireProjectAccess(ctx.caller, p.projectid);
      const rows = (await projects(ctx.app).members(ctx.caller, p.projectid, { account: p.account, role: p.role }))
        .filter((m) => !p.keyword || m.account_name.includes(p.keyword));
      const { offset, limit } = pageWindow(p);
      const page = rows.slice(offset, limit === undefined ? undefined : offset + limit);
      return { kind: 'list', name: 'projectaccount', items: page.map(memberResponse(project)), count: rows.length };
    },
  }),
];
