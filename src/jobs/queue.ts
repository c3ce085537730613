/** Called for each job id a queue delivers; it claims and runs the job, and never throws. */
export type Deliver = (jobUuid: string) => Promise<void>;

/**
 * Carries job ids from the API to workers: at least once, maybe more than once, maybe lost
 * (a Redis restart). Correctness never depends on it: the `async_job` row is the truth, a claim
 * stops double runs and the sweeper finds lost ids. Only ids travel, never arguments or results.
 */
export interface JobQueue {
  readonly kind: 'bullmq' | 'in-process';
  /** Hands the id to some worker; may throw or time out when the transport is down. */
  enqueue(jobUuid: string): Promise<void>;
  /** Starts delivering ids to `deliver`, at most `concurrency` at a time, in this process. */
  consume(deliver: Deliver, concurrency: number): Promise<void>;
  /** Stops delivering and waits for the deliveries under way. */
  close(): Promise<void>;
}
