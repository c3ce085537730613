import { Queue, Worker } from 'bullmq';
import type { Logger } from '../core/logger';
import type { Deliver, JobQueue } from './queue';
import { redisConnectionOptions, type RedisTarget } from '../config/redis';

/** Options of the BullMQ queue. */
export interface BullmqQueueOptions {
  /** redis://[user:password@]host:port[/db], or a primary found through Sentinel. */
  redis: RedisTarget;
  /** Per-deployment key prefix (KMS_QUEUE_PREFIX), so deployments and tests can share one Redis. */
  prefix: string;
  /** The longest `enqueue` waits for Redis before it gives up (the sweeper then runs the job). */
  enqueueTimeoutMs: number;
  logger: Logger;
}

const QUEUE_NAME = 'jobs';

/** Logs a repeating connection error at most once per period. */
function throttled(logger: Logger, what: string, periodMs = 10_000): (err: Error) => void {
  let last = 0;
  return (err) => {
    if (Date.now() - last < periodMs) return;
    last = Date.now();
    logger.warn(`${what}: redis error`, { error: err.message });
  };
}

/**
 * BullMQ on Redis. A message is `{ jobId }` with BullMQ's job id equal to ours, so an id already
 * waiting is not queued twice; messages are removed when processed. Nothing else goes to Redis.
 */
export class BullmqQueue implements JobQueue {
  readonly kind = 'bullmq' as const;
  #queue?: Queue;
  #worker?: Worker;

  constructor(private readonly opts: BullmqQueueOptions) {}

  #connection(forWorker: boolean) {
    // Workers block on Redis and must retry forever; the producer fails fast so the API answers.
    // Through Sentinel, ioredis asks the sentinels for the primary at every reconnection, so after a
    // failover both follow the new primary by themselves.
    return forWorker
      ? redisConnectionOptions(this.opts.redis, { maxRetriesPerRequest: null })
      : redisConnectionOptions(this.opts.redis, { maxRetriesPerRequest: 1, enableOfflineQueue: false });
  }

  #producer(): Queue {
    if (!this.#queue) {
      this.#queue = new Queue(QUEUE_NAME, { connection: this.#connection(false), prefix: this.opts.prefix });
      this.#queue.on('error', throttled(this.opts.logger, 'job queue'));
    }
    return this.#queue;
  }

  async enqueue(jobUuid: string): Promise<void> {
    const add = this.#producer().add('run', { jobId: jobUuid }, { jobId: jobUuid, removeOnComplete: true, removeOnFail: true, attempts: 1 });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`redis did not accept the job within ${this.opts.enqueueTimeoutMs} ms`)), this.opts.enqueueTimeoutMs);
    });
    try {
      await Promise.race([add, timeout]);
    } finally {
      clearTimeout(timer);
      add.catch(() => undefined);
    }
  }

  async consume(deliver: Deliver, concurrency: number): Promise<void> {
    const worker = new Worker<{ jobId: string }>(QUEUE_NAME, async (job) => deliver(job.data.jobId), {
      connection: this.#connection(true), prefix: this.opts.prefix, concurrency, autorun: false,
    });
    worker.on('error', throttled(this.opts.logger, 'job worker'));
    this.#worker = worker;
    worker.run().catch((err: unknown) => this.opts.logger.error('job worker stopped', { error: err instanceof Error ? err.message : String(err) }));
  }

  async close(): Promise<void> {
    await this.#worker?.close();
    await this.#queue?.close();
  }
}
