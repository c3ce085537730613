import type { Knex } from 'knex';
import { formatDate } from '../../core/dates';
import type { ResponseField } from '../define';
import { prettyPath } from './identity';

/** An async_job row joined with its owner's names, as the job responses need it. */
export interface AsyncJobView {
  uuid: string; cmd: string; status: number; process_status: number; result_code: number; result_type: string | null; result: string | null;
  instance_type: string | null; instance_id: string | null; created: number; completed: number | null; account_id: number; domain_id: number;
  account_uuid: string | null; account_name: string | null; domain_uuid: string | null; domain_path: string | null; user_uuid: string | null;
}

/** AsyncJobResponse fields in CloudStack's order (reference/cloudstack-api-protocol.md §4.2). */
export const asyncJobFields: readonly ResponseField[] = [
  { name: 'accountid', type: 'string', description: 'the account ID that executed the async command' },
  { name: 'account', type: 'string', description: 'the account that executed the async command' },
  { name: 'domainid', type: 'string', description: 'the domain ID that executed the async command' },
  { name: 'domainpath', type: 'string', description: 'the path of the domain that executed the async command' },
  { name: 'userid', type: 'string', description: 'the user that executed the async command' },
  { name: 'cmd', type: 'string', description: 'the async command executed' },
  { name: 'jobprocstatus', type: 'integer', description: 'the progress information of the PENDING job' },
  { name: 'jobresultcode', type: 'integer', description: 'the result code for the job: 0 while pending or on success, the error code on failure' },
  { name: 'jobresulttype', type: 'string', description: 'the result type; absent while the job is pending' },
  { name: 'jobresult', type: 'responseobject', description: 'the result reason; absent while the job is pending' },
  { name: 'jobinstancetype', type: 'string', description: 'the instance/entity object related to the job' },
  { name: 'jobinstanceid', type: 'string', description: 'the unique ID of the instance/entity object related to the job' },
  { name: 'created', type: 'date', description: 'the created date of the job' },
  { name: 'completed', type: 'date', description: 'the completed date of the job; absent while the job is pending' },
  { name: 'jobid', type: 'string', description: 'the UUID of the job' },
  { name: 'jobstatus', type: 'integer', description: 'the current job status: 0 in progress, 1 succeeded, 2 failed' },
];

/** The jobs with their owners' names; restrict it with applyOwnerScope or a uuid. */
export const asyncJobQuery = (db: Knex) =>
  db('async_job as j')
    .leftJoin('account as a', 'a.id', 'j.account_id')
    .leftJoin('domain as d', 'd.id', 'j.domain_id')
    .leftJoin('user as u', 'u.id', 'j.user_id')
    .select('j.uuid', 'j.cmd', 'j.status', 'j.process_status', 'j.result_code', 'j.result_type', 'j.result', 'j.instance_type', 'j.instance_id',
      'j.created', 'j.completed', 'j.account_id', 'j.domain_id', 'a.uuid as account_uuid', 'a.account_name', 'd.uuid as domain_uuid',
      'd.path as domain_path', 'u.uuid as user_uuid');

/** The wire form: numbers as JSON numbers, result fields only once the job finished. */
export function asyncJobResponse(j: AsyncJobView): Record<string, unknown> {
  const finished = Number(j.status) !== 0;
  return {
    accountid: j.account_uuid ?? undefined,
    account: j.account_name ?? undefined,
    domainid: j.domain_uuid ?? undefined,
    domainpath: j.domain_path === null ? undefined : prettyPath(j.domain_path),
    userid: j.user_uuid ?? undefined,
    cmd: j.cmd,
    jobprocstatus: Number(j.process_status),
    jobresultcode: Number(j.result_code),
    jobresulttype: finished ? (j.result_type ?? 'object') : undefined,
    jobresult: finished && j.result ? (JSON.parse(j.result) as object) : undefined,
    jobinstancetype: j.instance_type ?? undefined,
    jobinstanceid: j.instance_id ?? undefined,
    created: formatDate(j.created),
    completed: finished ? formatDate(j.completed) : undefined,
    jobid: j.uuid,
    jobstatus: Number(j.status),
  };
}
