/** How the workers of one process behave; every field has an environment variable (README.md). */
export interface WorkerOptions {
  /**
   * Jobs one process runs at once (KMS_JOB_CONCURRENCY).
   * @defaultValue 4
   */
  concurrency: number;
  /**
   * How long a claim on a job (or a schedule's lock) lasts without renewal; a dead worker's job
   * is taken over after this (KMS_JOB_LEASE_MS). Running jobs renew every third of it.
   * @defaultValue 30000
   */
  leaseMs: number;
  /**
   * How often each worker looks in the database for jobs nobody runs (KMS_JOB_SWEEP_MS).
   * @defaultValue 5000
   */
  sweepMs: number;
  /**
   * How long a new job may wait for the queue before a sweeper claims it directly, e.g. when its
   * Redis entry was lost (KMS_JOB_PICKUP_DELAY_MS).
   * @defaultValue 10000
   */
  pickupDelayMs: number;
  /**
   * Starts of one job before it is failed as abandoned (a job that keeps killing its worker)
   * (KMS_JOB_MAX_ATTEMPTS).
   * @defaultValue 5
   */
  maxAttempts: number;
  /**
   * The longest a submission waits for Redis; after that the API answers anyway and a sweeper
   * runs the job (KMS_JOB_ENQUEUE_TIMEOUT_MS).
   * @defaultValue 2000
   */
  enqueueTimeoutMs: number;
  /**
   * The longest a scheduler waits between looks at its schedules' settings and locks
   * (KMS_SCHEDULE_POLL_MS).
   * @defaultValue 1000
   */
  schedulePollMs: number;
}

/** The environment variable behind each option, for error messages and README.md. */
export const WORKER_OPTION_ENV: Record<keyof WorkerOptions, string> = {
  concurrency: 'KMS_JOB_CONCURRENCY',
  leaseMs: 'KMS_JOB_LEASE_MS',
  sweepMs: 'KMS_JOB_SWEEP_MS',
  pickupDelayMs: 'KMS_JOB_PICKUP_DELAY_MS',
  maxAttempts: 'KMS_JOB_MAX_ATTEMPTS',
  enqueueTimeoutMs: 'KMS_JOB_ENQUEUE_TIMEOUT_MS',
  schedulePollMs: 'KMS_SCHEDULE_POLL_MS',
};

const DEFAULTS: WorkerOptions = {
  concurrency: 4,
  leaseMs: 30_000,
  sweepMs: 5_000,
  pickupDelayMs: 10_000,
  maxAttempts: 5,
  enqueueTimeoutMs: 2_000,
  schedulePollMs: 1_000,
};

/** Merges the defaults once and validates; a bad value throws a sentence naming its variable. */
export function resolveWorkerOptions(partial: Partial<WorkerOptions> = {}): WorkerOptions {
  const out: WorkerOptions = { ...DEFAULTS };
  for (const key of Object.keys(DEFAULTS) as Array<keyof WorkerOptions>) {
    const v = partial[key];
    if (v === undefined) continue;
    const min = key === 'pickupDelayMs' ? 0 : 1;
    if (!Number.isInteger(v) || v < min) throw new Error(`${WORKER_OPTION_ENV[key]} must be an integer of at least ${min} (got ${v})`);
    out[key] = v;
  }
  if (out.leaseMs < 300) throw new Error(`${WORKER_OPTION_ENV.leaseMs} must be at least 300 ms (got ${out.leaseMs})`);
  return out;
}

/** Reads the options that are set in the environment; resolveWorkerOptions validates them. */
export function workerOptionsFromEnv(e: NodeJS.ProcessEnv): Partial<WorkerOptions> {
  const out: Partial<WorkerOptions> = {};
  for (const [key, name] of Object.entries(WORKER_OPTION_ENV) as Array<[keyof WorkerOptions, string]>) {
    const raw = e[name];
    if (raw !== undefined && raw !== '') out[key] = Number(raw);
  }
  return out;
}
