import type { Caller } from '../identity/caller';

/** jobstatus numbers (CloudStack JobInfo.Status ordinal). */
export enum JobStatus {
  InProgress = 0,
  Succeeded = 1,
  Failed = 2,
}

/** What a job handler returns; stored as the job's `jobresult`. */
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
  /** Records progress (jobprocstatus) and extends the lease; await it between batches. */
  progress(percentOrCount: number): Promise<void>;
}

/**
 * One handler per job kind. It must be safe to run again after a crash (the job is re-run
 * from the start once its lease expires), and it throws KmsError to fail the job.
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
  /** Caller-chosen job uuid (customjobid). */
  jobUuid?: string;
}

export interface JobSubmitter {
  submit(s: JobSubmission): Promise<{ jobId: string }>;
}
