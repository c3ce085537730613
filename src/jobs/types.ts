import type { Caller } from '../identity/caller';
import type { SettingName } from '../config/settings';

/** jobstatus numbers (CloudStack JobInfo.Status ordinal); the wire shows them as JSON numbers. */
export enum JobStatus {
  InProgress = 0,
  Succeeded = 1,
  Failed = 2,
}

/** What a job handler returns; stored as the job's `jobresult` (`{<name>: value}` or `{success: true}`). */
export type JobOutcome =
  | { type: 'object'; name: string; value: object }
  | { type: 'success'; displaytext?: string };

/** A job as its handler sees it: the durable record's non-secret arguments and a progress reporter. */
export interface RunningJob {
  readonly id: number;
  readonly uuid: string;
  readonly kind: string;
  readonly cmd: string;
  readonly args: Readonly<Record<string, unknown>>;
  readonly userId: number;
  readonly accountId: number;
  readonly domainId: number;
  readonly instanceId?: string;
  /** How many times this job has been started (1 on the first run; more after a worker died). */
  readonly attempt: number;
  /** Aborted when this worker lost the job's lease (another worker may take over) or is closing. */
  readonly signal: AbortSignal;
  /** Records progress (jobprocstatus) and extends the lease; await it between batches. */
  progress(percentOrCount: number): Promise<void>;
}

/**
 * One handler per job kind. The contract:
 * - It may run more than once for one job: a worker that dies (or stalls past its lease) loses the
 *   job, and another worker runs it again from the start with `attempt` + 1. So every step must be
 *   idempotent: check the current state before changing it, write each step in one transaction,
 *   and make a repeated step a no-op (e.g. a rewrap skips DEKs already on the target version).
 * - Only one worker runs a job at a time (a conditional claim on the row, kept by a lease), and a
 *   job that finished (succeeded or failed) is never run again.
 * - It throws KmsError to fail the job (its kind decides the wire code); any other throwable
 *   fails the job with a generic 530 and is logged on the server only.
 * - It stops early when `signal` is aborted, and calls `progress()` at least every lease/3 during
 *   long work that does not return to the event loop.
 */
export type JobHandler = (job: RunningJob) => Promise<JobOutcome>;

/** Submitting async work: the record is written first, then only its id goes through the queue. */
export interface JobSubmission {
  /** The API command name, e.g. rotateKMSKey */
  cmd: string;
  /** The handler kind, e.g. kms.rotate */
  kind: string;
  caller: Caller;
  /** Non-secret JSON arguments: never a PIN, a password or a plaintext. */
  args: Record<string, unknown>;
  instanceType?: string;
  instanceId?: string;
  /** Caller-chosen job uuid (customjobid); a uuid already used is a 431. */
  jobUuid?: string;
}

/** Anything that accepts job submissions (the JobService). */
export interface JobSubmitter {
  submit(s: JobSubmission): Promise<{ jobId: string }>;
}

/** A tick of scheduled work, as its `run` sees it. */
export interface ScheduledTick {
  /** Aborted when this worker lost the schedule's lock lease or is closing. */
  readonly signal: AbortSignal;
}

/**
 * Periodic work: runs every `intervalSetting` milliseconds (read from the global settings before
 * each tick, so updateConfiguration applies without a restart; 0 disables). The interval is
 * counted from the end of one tick to the start of the next, deployment-wide, and at most one
 * worker in the deployment runs a given schedule at a time. `run` must be safe to run again.
 */
export interface ScheduleSpec {
  intervalSetting: SettingName;
  run(tick: ScheduledTick): Promise<void>;
}
