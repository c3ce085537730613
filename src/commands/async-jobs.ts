import { parseListDate } from './dates';
import { paramError, permissionError } from '../core/errors';
import { ALL_ROLES, defineCommand, ownerListParams, param } from './define';
import { listOwned } from './list';
import { asyncJobFields, asyncJobResponse } from './responses/async-job';

/** The parameters every async command takes (BaseAsyncCmd); spread them into `params`. */
export const asyncParams = {
  customjobid: param.uuid({ description: 'the ID of the job to create, chosen by the caller instead of a generated one; it must not be in use' }),
};

/** queryAsyncJobResult and listAsyncJobs (reference/cloudstack-api-protocol.md §4.2, §4.3). */
export const asyncJobCommands = [
  defineCommand({
    name: 'queryAsyncJobResult',
    description: 'Retrieves the current status of an asynchronous job',
    roles: ALL_ROLES,
    params: {
      jobid: param.uuid({ required: true, description: 'the ID of the asynchronous job', related: 'listAsyncJobs' }),
    },
    response: asyncJobFields,
    async handler(p, ctx) {
      const row = await ctx.repos.jobs.view(p.jobid);
      if (!row) throw paramError(`Unable to find job by id ${p.jobid}`);
      // CloudStack lets a user see only its own account's jobs (ApiResponseHelper.queryJobResult).
      if (!(await ctx.directory.canAccessOwner(ctx.caller, { accountId: row.accountId, domainId: row.domainId }))) {
        throw permissionError(`Account ${ctx.caller.accountName} does not have permission to query job ${p.jobid}`);
      }
      return { kind: 'flat', value: asyncJobResponse(row) };
    },
  }),
  defineCommand({
    name: 'listAsyncJobs',
    description: 'Lists all pending asynchronous jobs for the account',
    roles: ALL_ROLES,
    params: {
      ...ownerListParams,
      startdate: param.date({ description: 'the start date of the async job (use format "yyyy-MM-dd" or "yyyy-MM-dd\'T\'HH:mm:ssZ")' }),
    },
    response: asyncJobFields,
    async handler(p, ctx) {
      return listOwned(ctx, p, 'asyncjobs', (scope, page) => {
        const since = p.startdate === undefined ? undefined : new Date(parseListDate(p.startdate, 'startdate'));
        return ctx.repos.jobs.listViews(scope, { since, keyword: p.keyword }, page);
      }, asyncJobResponse);
    },
  }),
];
