import { parseListDate } from './dates';
import type { ApiResult } from './result';
import { pageWindow } from './pagination';
import { pagedRows } from '../db/paging';
import { applyOwnerScope } from '../db/owner-scope';
import { paramError, permissionError } from '../core/errors';
import type { JobSubmission } from '../jobs/types';
import type { CommandContext } from './context';
import { ALL_ROLES, defineCommand, ownerListParams, param } from './define';
import { asyncJobFields, asyncJobQuery, asyncJobResponse, type AsyncJobView } from './responses/async-job';

/** What an async command answers: `{jobid}`, or `{id, jobid}` for an async create (§4.1). */
export function asyncResult(jobId: string, id?: string): ApiResult {
  return { kind: 'flat', value: id === undefined ? { jobid: jobId } : { id, jobid: jobId } };
}

/** The parameters every async command takes (BaseAsyncCmd); spread them into `params`. */
export const asyncParams = {
  customjobid: param.uuid({ description: 'the ID of the job to create, chosen by the caller instead of a generated one; it must not be in use' }),
};

/**
 * Submits an async command's job as the caller (honouring `customjobid`) and answers `{jobid}`
 * or `{id, jobid}`. The job row is written before this returns; a worker runs it.
 */
export async function submitAsync(
  ctx: CommandContext,
  p: { customjobid?: string },
  job: Omit<JobSubmission, 'caller' | 'cmd' | 'jobUuid'>,
  id?: string,
): Promise<ApiResult> {
  const { jobId } = await ctx.app.jobs.submit({ ...job, cmd: ctx.command, caller: ctx.caller, jobUuid: p.customjobid });
  return asyncResult(jobId, id);
}


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
      const row: AsyncJobView | undefined = await asyncJobQuery(ctx.app.db).where('j.uuid', p.jobid).first();
      if (!row) throw paramError(`Unable to find job by id ${p.jobid}`);
      // CloudStack lets a user see only its own account's jobs (ApiResponseHelper.queryJobResult).
      if (!(await ctx.app.directory.canAccessOwner(ctx.caller, { accountId: row.account_id, domainId: row.domain_id }))) {
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
      const scope = await ctx.app.directory.listScope(ctx.caller, p);
      const q = applyOwnerScope(asyncJobQuery(ctx.app.db), scope, { accountCol: 'j.account_id', domainCol: 'j.domain_id' }).orderBy('j.id', 'desc');
      if (p.startdate !== undefined) q.where('j.created', '>=', parseListDate(p.startdate, 'startdate'));
      if (p.keyword) q.where('j.cmd', 'like', `%${p.keyword}%`);
      const { rows, count } = await pagedRows<AsyncJobView>(q, pageWindow(p));
      return { kind: 'list', name: 'asyncjobs', items: rows.map(asyncJobResponse), count };
    },
  }),
];
