import { randomUUID } from 'node:crypto';
import type { Db } from '../db/knex';
import type { Logger } from '../logger';
import { isKmsError } from '../kms/errors';
import { WIRE } from '../api/errors';
import { JobStatus, type JobHandler, type JobOutcome, type JobSubmission, type JobSubmitter, type RunningJob } from './types';

/**
 * Async jobs: the `async_job` row is the truth; handlers are registered per kind.
 * (Minimal in-process runner; issue 3 replaces the queue with BullMQ/in-process behind one interface.)
 */
export interface JobService extends JobSubmitter {
  register(kind: string, handler: JobHandler): void;
  start(): Promise<void>;
  close(): Promise<void>;
}

export function createJobService(deps: { db: Db; logger: Logger }): JobService {
  const handlers = new Map<string, JobHandler>();
  const running = new Set<Promise<void>>();

  const run = async (jobId: number): Promise<void> => {
    const row = await deps.db('async_job').where({ id: jobId }).first();
    const handler = handlers.get(row.job_kind);
    const job: RunningJob = {
      id: row.id, uuid: row.uuid, kind: row.job_kind, cmd: row.cmd, args: JSON.parse(row.cmd_info), userId: row.user_id,
      accountId: row.account_id, domainId: row.domain_id, instanceId: row.instance_id ?? undefined, attempt: row.attempts + 1,
      progress: async (n) => { await deps.db('async_job').where({ id: jobId }).update({ process_status: Math.round(n), last_updated: Date.now() }); },
    };
    await deps.db('async_job').where({ id: jobId }).update({ attempts: job.attempt });
    let outcome: JobOutcome | undefined;
    let failure: { errorcode: number; errortext: string } | undefined;
    try {
      if (!handler) throw new Error(`no handler for job kind ${row.job_kind}`);
      outcome = await handler(job);
    } catch (err) {
      const code = isKmsError(err) ? WIRE[err.kind].errorcode : 530;
      failure = { errorcode: code, errortext: isKmsError(err) && err.kind !== 'internal' ? err.message : 'Internal error executing command, please contact your system administrator' };
      if (!isKmsError(err)) deps.logger.error('job failed', { job: row.uuid, error: err instanceof Error ? err.stack : String(err) });
    }
    const now = Date.now();
    await deps.db('async_job').where({ id: jobId }).update(
      failure
        ? { status: JobStatus.Failed, result_code: failure.errorcode, result_type: 'object', result: JSON.stringify(failure), completed: now, last_updated: now }
        : { status: JobStatus.Succeeded, result_code: 0, result_type: 'object', result: JSON.stringify(outcome), completed: now, last_updated: now },
    );
  };

  return {
    register(kind, handler) {
      handlers.set(kind, handler);
    },
    async submit(s: JobSubmission) {
      const now = Date.now();
      const uuid = s.jobUuid ?? randomUUID();
      const [id] = await deps.db('async_job').insert({
        uuid, user_id: s.caller.userId, account_id: s.caller.accountId, domain_id: s.caller.domainId, cmd: s.cmd, job_kind: s.kind,
        cmd_info: JSON.stringify(s.args), instance_type: s.instanceType ?? null, instance_id: s.instanceId ?? null,
        status: JobStatus.InProgress, created: now, last_updated: now,
      });
      const p = run(Number(id)).catch((err) => deps.logger.error('job runner failed', { error: String(err) })).finally(() => running.delete(p));
      running.add(p);
      return { jobId: uuid };
    },
    async start() {},
    async close() {
      await Promise.allSettled([...running]);
    },
  };
}
