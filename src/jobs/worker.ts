import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { withLogContext, type Logger } from '../core/logger';
import { ApiError, toApiError } from '../core/errors';
import { isKmsError } from '../core/errors';
import type { AsyncJobRow, JobRepository } from '../db/repositories/jobs';
import type { WorkerOptions } from '../config/worker-options';
import { JobStatus, type JobHandler, type JobOutcome, type RunningJob } from './types';

/** A worker identity for leases: host, pid and a random part (unique per process start). */
export const newLeaseOwner = (): string => `${hostname().slice(0, 32)}:${process.pid}:${randomBytes(4).toString('hex')}`;

/** The stored `jobresult` of a successful job (ResponseObjectTypeAdapter's shapes). */
export function jobResultOf(outcome: JobOutcome): object {
  if (outcome.type === 'object') return { [outcome.name]: outcome.value };
  return outcome.displaytext === undefined ? { success: true } : { success: true, details: outcome.displaytext };
}

/** Dependencies of the job worker. */
export interface JobWorkerDeps {
  repo: JobRepository;
  handlers: ReadonlyMap<string, JobHandler>;
  logger: Logger;
  options: WorkerOptions;
  owner: string;
  /** The backend error prefix a command declares (CommandSpec.backendErrorPrefix). */
  errorPrefixOf?: (cmd: string) => string | undefined;
  /** Called once per job this worker ran: its kind, how it ended and its run time. Must not throw. */
  onJobEnded?: (info: { kind: string; status: 'succeeded' | 'failed' | 'interrupted'; seconds: number }) => void;
}

/**
 * Runs jobs by id: claims the row (so no other worker runs it), keeps the lease alive while the
 * handler runs, and records the outcome only while it still holds the lease. Never throws.
 */
export class JobWorker {
  #running = new Map<string, Promise<void>>();
  #closing = new AbortController();

  constructor(private readonly deps: JobWorkerDeps) {}

  /** Jobs this process runs right now. */
  get active(): number {
    return this.#running.size;
  }

  /** Claims and runs the job if it is runnable here; returns when it finished or was skipped. */
  execute(jobUuid: string): Promise<void> {
    const current = this.#running.get(jobUuid);
    if (current) return current;
    if (this.#closing.signal.aborted) return Promise.resolve();
    const p = this.#execute(jobUuid)
      .catch((err: unknown) => this.deps.logger.error('job worker failed', { job: jobUuid, error: err instanceof Error ? err.stack : String(err) }))
      .finally(() => this.#running.delete(jobUuid));
    this.#running.set(jobUuid, p);
    return p;
  }

  /** Stops starting jobs, aborts the running ones' signals and waits for them. */
  async close(): Promise<void> {
    this.#closing.abort();
    await Promise.allSettled([...this.#running.values()]);
  }

  async #execute(jobUuid: string): Promise<void> {
    const { repo, handlers, options, owner, logger } = this.deps;
    const peek = await repo.findByUuid(jobUuid);
    if (!peek || peek.status !== JobStatus.InProgress) return;
    const handler = handlers.get(peek.job_kind);
    if (!handler) {
      logger.debug('no handler for job kind in this process', { job: jobUuid, kind: peek.job_kind });
      return;
    }
    const row = await repo.claim(jobUuid, owner, options.leaseMs, options.maxAttempts);
    if (!row) return;
    const started = process.hrtime.bigint();
    const ended = (status: 'succeeded' | 'failed' | 'interrupted') =>
      this.deps.onJobEnded?.({ kind: row.job_kind, status, seconds: Number(process.hrtime.bigint() - started) / 1e9 });
    // The job's log lines carry its uuid and the id of the API request that submitted it.
    await withLogContext({ requestId: row.request_id ?? undefined, job: row.uuid }, () => this.#run(row, handler, ended));
  }

  async #run(row: AsyncJobRow, handler: JobHandler, ended: (status: 'succeeded' | 'failed' | 'interrupted') => void): Promise<void> {
    const { repo, options, owner, logger } = this.deps;

    const lost = new AbortController();
    const signal = AbortSignal.any([lost.signal, this.#closing.signal]);
    const keep = async (progress?: number): Promise<void> => {
      if (lost.signal.aborted) return;
      if (!(await repo.renew(row.id, owner, options.leaseMs, progress))) {
        logger.warn('job lease lost; another worker may run it', { job: row.uuid });
        lost.abort();
      }
    };
    const renewer = setInterval(() => { keep().catch(() => undefined); }, Math.max(100, Math.floor(options.leaseMs / 3)));
    const job: RunningJob = {
      id: row.id, uuid: row.uuid, kind: row.job_kind, cmd: row.cmd, args: JSON.parse(row.cmd_info) as Record<string, unknown>,
      userId: row.user_id, accountId: row.account_id, domainId: row.domain_id, instanceId: row.instance_id ?? undefined,
      attempt: row.attempts, signal,
      progress: (n) => keep(Math.max(0, Math.round(n))),
    };
    logger.debug('job started', { job: row.uuid, kind: row.job_kind, attempt: row.attempts });
    let finish: Parameters<JobRepository['finish']>[2];
    try {
      const outcome = await handler(job);
      finish = { status: JobStatus.Succeeded, resultCode: 0, result: jobResultOf(outcome) };
    } catch (err) {
      if (signal.aborted) {
        // Stopped because this worker is closing or lost the lease: not a result; the job runs again elsewhere.
        await repo.release(row.id, owner);
        logger.info('job interrupted; left for another worker', { job: row.uuid });
        ended('interrupted');
        return;
      }
      const wire = toApiError(err, { backendPrefix: this.deps.errorPrefixOf?.(row.cmd), isRootAdmin: false });
      if (!(err instanceof ApiError) && !(isKmsError(err) && err.kind !== 'internal')) {
        logger.error('job failed with an internal error', { job: row.uuid, kind: row.job_kind, error: err instanceof Error ? err.stack : String(err) });
      }
      finish = { status: JobStatus.Failed, resultCode: wire.errorcode, result: { errorcode: wire.errorcode, errortext: wire.message } };
    } finally {
      clearInterval(renewer);
    }
    if (!(await repo.finish(row.id, owner, finish))) {
      logger.warn('job finished after its lease was taken over; result discarded', { job: row.uuid });
      return;
    }
    ended(finish.status === JobStatus.Succeeded ? 'succeeded' : 'failed');
    logger.debug('job finished', { job: row.uuid, status: finish.status });
  }
}
