import { randomUUID } from 'node:crypto';
import type { Db } from '../db/knex';
import type { RedisTarget } from '../config/redis';
import { currentLogContext, type Logger } from '../core/logger';
import type { Settings } from '../config/settings';
import { JobRepository } from '../db/repositories/jobs';
import { LockRepository } from '../db/repositories/locks';
import { GENERIC_INTERNAL_TEXT } from '../core/errors';
import { BullmqQueue } from './bullmq-queue';
import { InProcessQueue } from './in-process-queue';
import { resolveWorkerOptions, type WorkerOptions } from '../config/worker-options';
import type { JobQueue } from './queue';
import { Scheduler } from './scheduler';
import { JobWorker, newLeaseOwner, type JobWorkerDeps } from './worker';
import type { JobHandler, JobSubmission, JobSubmitter, ScheduleSpec } from './types';

/**
 * Async jobs: the `async_job` row is the truth; handlers are registered per kind; the queue
 * (BullMQ or in-process) only carries ids. Register handlers and schedules before `start()`.
 */
export interface JobService extends JobSubmitter {
  /** 'bullmq' when REDIS_URL is set, else 'in-process'. */
  readonly queueKind: JobQueue['kind'];
  /** This process's lease-owner id (job and lock rows name it while it holds them). */
  readonly owner: string;
  /** The handler of one job kind (e.g. kms.rotate); see JobHandler for the run-again contract. */
  register(kind: string, handler: JobHandler): void;
  /** Periodic work with a deployment-wide lock; runs only in processes that run workers. */
  schedule(name: string, spec: ScheduleSpec): void;
  /** Starts the workers, sweeper and scheduler (unless API-only); idempotent. */
  start(): Promise<void>;
  /** Stops taking jobs, interrupts running ones' signals, waits for them and closes the queue. */
  close(): Promise<void>;
}

/** What the job service needs. */
export interface JobServiceDeps {
  db: Db;
  logger: Logger;
  settings: Settings;
  /** BullMQ on this Redis; the in-process queue when absent. */
  redisUrl?: string;
  /** BullMQ on this Redis or Sentinel-managed primary (wins over redisUrl). */
  redis?: RedisTarget;
  /** Redis key prefix (KMS_QUEUE_PREFIX). @defaultValue 'kms' */
  queuePrefix?: string;
  /** false for an API-only process (KMS_ROLE=api): it submits but never runs jobs. @defaultValue true */
  runWorkers?: boolean;
  options?: Partial<WorkerOptions>;
  /** The backend error prefix of a command (CommandSpec.backendErrorPrefix), for job results. */
  errorPrefixOf?: (cmd: string) => string | undefined;
  /** Hears every job this process ran to an end (metrics). */
  onJobEnded?: JobWorkerDeps['onJobEnded'];
}

/** Builds the job service; nothing runs until `start()`. */
export function createJobService(deps: JobServiceDeps): JobService {
  const options = resolveWorkerOptions(deps.options);
  const runWorkers = deps.runWorkers ?? true;
  const owner = newLeaseOwner();
  const handlers = new Map<string, JobHandler>();
  const repo = new JobRepository(deps.db);
  const redis: RedisTarget | undefined = deps.redis ?? (deps.redisUrl ? { kind: 'url', url: deps.redisUrl } : undefined);
  const queue: JobQueue = redis
    ? new BullmqQueue({ redis, prefix: deps.queuePrefix ?? 'kms', enqueueTimeoutMs: options.enqueueTimeoutMs, logger: deps.logger })
    : new InProcessQueue();
  const worker = new JobWorker({ repo, handlers, logger: deps.logger, options, owner, errorPrefixOf: deps.errorPrefixOf, onJobEnded: deps.onJobEnded });
  const scheduler = new Scheduler({
    locks: new LockRepository(deps.db), settings: deps.settings, logger: deps.logger, owner,
    leaseMs: options.leaseMs, pollMs: options.schedulePollMs,
  });
  let sweeper: NodeJS.Timeout | undefined;
  let started = false;
  let closed = false;

  /**
   * Claims jobs nobody runs (lost queue entries, dead workers) and fails those that used up their
   * starts. While it finds as many as it has free slots (a backlog left by a Redis outage), it takes
   * more as soon as one ends, for up to one sweep interval: the backlog drains at the worker's
   * concurrency, not `concurrency` jobs per interval.
   */
  const sweep = async (pickupDelayMs: number): Promise<void> => {
    const abandoned = await repo.failAbandoned(options.maxAttempts, { errorcode: 530, errortext: GENERIC_INTERNAL_TEXT });
    for (const uuid of abandoned) deps.logger.error('job abandoned after too many starts', { job: uuid, maxAttempts: options.maxAttempts });
    const until = Date.now() + options.sweepMs;
    for (;;) {
      const free = options.concurrency - worker.active;
      const orphans = await repo.findOrphans([...handlers.keys()], pickupDelayMs, options.maxAttempts, free);
      const runs = orphans.map((uuid) => worker.execute(uuid));
      if (!runs.length || orphans.length < free || closed || Date.now() >= until) return;
      await Promise.race(runs);
    }
  };
  let sweeping: Promise<void> | undefined;
  const sweepSafely = (pickupDelayMs: number) =>
    (sweeping ??= sweep(pickupDelayMs)
      .catch((err: unknown) => deps.logger.warn('job sweep failed', { error: err instanceof Error ? err.message : String(err) }))
      .finally(() => { sweeping = undefined; }));

  return {
    queueKind: queue.kind,
    owner,
    register(kind, handler) {
      if (handlers.has(kind)) throw new Error(`job kind ${kind} is registered twice`);
      handlers.set(kind, handler);
    },
    schedule(name, spec) {
      scheduler.add(name, spec);
    },
    async submit(s: JobSubmission) {
      const uuid = s.jobUuid ?? randomUUID();
      await repo.insert({
        uuid, userId: s.caller.userId, accountId: s.caller.accountId, domainId: s.caller.domainId, cmd: s.cmd, kind: s.kind,
        args: s.args, instanceType: s.instanceType, instanceId: s.instanceId, requestId: currentLogContext().requestId,
      });
      // An API-only process has nobody to hand an in-process id to: a worker's sweeper takes the row.
      if (queue.kind === 'bullmq' || runWorkers) {
        await queue.enqueue(uuid).catch((err: unknown) => {
          deps.logger.warn('job queued in the database only; a sweeper will run it', { job: uuid, error: err instanceof Error ? err.message : String(err) });
        });
      }
      return { jobId: uuid };
    },
    async start() {
      if (started || closed) return;
      started = true;
      if (!runWorkers) return;
      await queue.consume((uuid) => worker.execute(uuid), options.concurrency);
      // On start, everything unfinished and unleased is ours to take, however new.
      await sweepSafely(0);
      sweeper = setInterval(() => { void sweepSafely(options.pickupDelayMs); }, options.sweepMs);
      await scheduler.start();
    },
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(sweeper);
      await scheduler.close();
      await worker.close();
      await queue.close();
    },
  };
}
