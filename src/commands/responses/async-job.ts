import { formatDate } from '../../core/dates';
import type { AsyncJobView } from '../../db/repositories/jobs';
import { JobStatus } from '../../jobs/types';
import type { ResponseField } from '../define';
import { prettyPath } from './identity';

export type { AsyncJobView } from '../../db/repositories/jobs';

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

/** The wire form: numbers as JSON numbers, result fields only once the job finished. */
export function asyncJobResponse(j: AsyncJobView): Record<string, unknown> {
  const finished = j.status !== JobStatus.InProgress;
  return {
    accountid: j.accountUuid ?? undefined,
    account: j.accountName ?? undefined,
    domainid: j.domainUuid ?? undefined,
    domainpath: j.domainPath === null ? undefined : prettyPath(j.domainPath),
    userid: j.userUuid ?? undefined,
    cmd: j.cmd,
    jobprocstatus: j.processStatus,
    jobresultcode: j.resultCode,
    jobresulttype: finished ? (j.resultType ?? 'object') : undefined,
    jobresult: finished && j.result ? (JSON.parse(j.result) as object) : undefined,
    jobinstancetype: j.instanceType ?? undefined,
    jobinstanceid: j.instanceId ?? undefined,
    created: formatDate(j.created),
    completed: finished ? formatDate(j.completed) : undefined,
    jobid: j.uuid,
    jobstatus: j.status,
  };
}
