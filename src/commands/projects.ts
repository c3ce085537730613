import { formatDate } from '../core/dates';
import { paramError } from '../core/errors';
import { PROJECT_ROLES, type ProjectMember, type ProjectView } from '../identity/projects';
import { asyncParams } from './async-jobs';
import type { JobContext } from './define';
import { ALL_ROLES, defineCommand, listParams, param, SUCCESS_FIELDS, type ResponseField } from './define';
import { defineJob, instanceOf, JobArgsError, submitJob } from './jobs';
import { listUnowned } from './list';

/**
 * CloudStack projects (ProjectManagerImpl, QueryManagerImpl.listProjects): createProject,
 * updateProject, deleteProject, addAccountToProject and deleteAccountFromProject are async;
 * listProjects and listProjectAccounts are not. A project owns keys, volumes and profiles through its
 * own account; the commands that make or list them take `projectid`.
 */

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


function projectResponse(p: ProjectView) {
  const owners = p.owners.map((o) => ({ account: o.accountName, accountid: o.accountUuid }));
  return {
    id: p.uuid, name: p.name, displaytext: p.displayText ?? p.name, domainid: p.domainUuid, domain: p.domainName, domainpath: p.domainPath,
    ...(owners[0] ? { account: owners[0].account } : {}), owner: owners, projectaccountname: p.accountName,
    state: p.state, created: formatDate(p.created), tags: [],
  };
}

const memberResponse = (project: { uuid: string; name: string }) => (m: ProjectMember) => ({
  projectid: project.uuid, project: project.name, accountid: m.accountUuid, account: m.accountName, accounttype: m.accountType,
  role: m.role, domainid: m.domainUuid, domain: m.domainName, domainpath: m.domainPath,
});

async function projectObject(ctx: JobContext, id: number) {
  return projectResponse(await ctx.directory.projects.view(id));
}

export const PROJECT_JOBS = {
  create: 'project.create', update: 'project.update', delete: 'project.delete',
  addAccount: 'project.account.add', removeAccount: 'project.account.remove',
} as const;


async function liveProject(ctx: JobContext, uuid: string) {
  const project = await ctx.repos.projects.byUuid(uuid);
  if (!project) throw paramError(`Unable to find project by id ${uuid}`);
  return project;
}

/**
 * The async halves. Each re-loads the submitter (still enabled), whose rights each step checks
 * again as the job may run late, and is a no-op when a previous attempt already did the work.
 */

// The project is made in the create phase (as CloudStack's BaseAsyncCreateCmd); the job answers it.
const createProjectJob = defineJob({
  kind: PROJECT_JOBS.create,
  args: {},
  run: async (_args, job, ctx) => ({ type: 'object', name: 'project', value: await projectObject(ctx, (await liveProject(ctx, instanceOf(job))).id) }),
});

const updateProjectJob = defineJob({
  kind: PROJECT_JOBS.update,
  args: { name: 'string?', displaytext: 'string?' },
  async run({ name, displaytext }, job, ctx) {
    const caller = await ctx.submitter();
    const project = await ctx.directory.projects.update(caller, instanceOf(job), { name, displayText: displaytext });
    return { type: 'object', name: 'project', value: await projectObject(ctx, project.id) };
  },
});

const deleteProjectJob = defineJob({
  kind: PROJECT_JOBS.delete,
  args: {},
  async run(_args, job, ctx) {
    const caller = await ctx.submitter();
    const uuid = instanceOf(job);
    if (job.attempt > 1 && !(await ctx.repos.projects.byUuid(uuid))) return { type: 'success' };
    await ctx.directory.projects.delete(caller, uuid);
    return { type: 'success' };
  },
});

const addAccountToProjectJob = defineJob({
  kind: PROJECT_JOBS.addAccount,
  args: { account: 'string', role: 'string' },
  async run(args, job, ctx) {
    const caller = await ctx.submitter();
    const uuid = instanceOf(job);
    const role = PROJECT_ROLES.find((r) => r === args.role);
    if (!role) throw new JobArgsError(`job argument role is not a project role: ${args.role}`);
    if (job.attempt > 1 && (await ctx.directory.projects.isMember(uuid, args.account))) return { type: 'success' };
    await ctx.directory.projects.addAccount(caller, uuid, args.account, role);
    return { type: 'success' };
  },
});

const deleteAccountFromProjectJob = defineJob({
  kind: PROJECT_JOBS.removeAccount,
  args: { account: 'string' },
  async run({ account }, job, ctx) {
    const caller = await ctx.submitter();
    const uuid = instanceOf(job);
    if (job.attempt > 1 && !(await ctx.directory.projects.isMember(uuid, account))) return { type: 'success' };
    await ctx.directory.projects.removeAccount(caller, uuid, account);
    return { type: 'success' };
  },
});

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
    job: createProjectJob,
    async handler(p, ctx) {
      const project = await ctx.directory.projects.create(ctx.caller, { name: p.name, displayText: p.displaytext, account: p.account, domainUuid: p.domainid });
      return submitJob(ctx, p, createProjectJob, {}, { instanceType: 'Project', instanceId: project.uuid, id: project.uuid });
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
      const f = { uuid: p.id, name: p.name, displayText: p.displaytext, keyword: p.keyword, listall: p.listall, domainUuid: p.domainid, isrecursive: p.isrecursive, state: p.state };
      return listUnowned(p, 'project', (page) => ctx.directory.projects.list(ctx.caller, f, page), projectResponse);
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
    job: updateProjectJob,
    async handler(p, ctx) {
      const project = await ctx.directory.projects.requireManageable(ctx.caller, p.id);
      if (p.name !== undefined && !p.name.trim()) throw paramError('Project name can\'t be blank');
      return submitJob(ctx, p, updateProjectJob, { name: p.name, displaytext: p.displaytext }, { instanceType: 'Project', instanceId: project.uuid });
    },
  }),
  defineCommand({
    name: 'deleteProject',
    description: 'Deletes a project that owns no key, volume or HSM profile any more, with its account and memberships',
    isAsync: true,
    roles: ALL_ROLES,
    params: { ...asyncParams, id: projectId, cleanup: param.boolean({ description: 'true to delete the project\'s resources too (not supported: delete them first)' }) },
    response: SUCCESS_FIELDS,
    job: deleteProjectJob,
    async handler(p, ctx) {
      const service = ctx.directory.projects;
      const project = await service.requireManageable(ctx.caller, p.id);
      if (p.cleanup) throw paramError('cleanup=true is not supported by this server: delete the project\'s keys, volumes and HSM profiles first');
      await service.assertEmpty(project);
      return submitJob(ctx, p, deleteProjectJob, {}, { instanceType: 'Project', instanceId: project.uuid });
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
    response: SUCCESS_FIELDS,
    job: addAccountToProjectJob,
    async handler(p, ctx) {
      const service = ctx.directory.projects;
      const project = await service.requireManageable(ctx.caller, p.projectid);
      const role = PROJECT_ROLES.find((r) => r.toLowerCase() === p.roletype.toLowerCase());
      if (!role) throw paramError(`Invalid roletype ${p.roletype}: use Admin or Regular`);
      await service.memberCandidate(project, p.account);
      return submitJob(ctx, p, addAccountToProjectJob, { account: p.account, role }, { instanceType: 'Project', instanceId: project.uuid });
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
    response: SUCCESS_FIELDS,
    job: deleteAccountFromProjectJob,
    async handler(p, ctx) {
      const service = ctx.directory.projects;
      const project = await service.requireManageable(ctx.caller, p.projectid);
      await service.memberCandidate(project, p.account);
      return submitJob(ctx, p, deleteAccountFromProjectJob, { account: p.account }, { instanceType: 'Project', instanceId: project.uuid });
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
      return listUnowned(p, 'projectaccount', async (page) => {
        const { project, members } = await ctx.directory.projects.members(ctx.caller, p.projectid, { account: p.account, role: p.role, keyword: p.keyword }, page);
        return { rows: members.rows.map((member) => ({ project, member })), count: members.count };
      }, ({ project, member }) => memberResponse(project)(member));
    },
  }),
];
