import type { Knex } from 'knex';

/** Unfinished async jobs: waiting for a worker, and running under a live lease. */
export interface JobQueueDepth {
  waiting: number;
  active: number;
}

/** `async_job.status` of an unfinished job (JobStatus in src/jobs/types.ts, which db may not import). */
const IN_PROGRESS = 0;

/** What readiness and the state gauges read of the database itself (src/ops). */
export class OpsStateRepository {
  constructor(private readonly db: Knex | Knex.Transaction) {}

  /** A round trip to the database (readiness). */
  async ping(): Promise<void> {
    await this.db.raw('SELECT 1');
  }

  /** How many migrations are not applied yet (readiness). */
  async pendingMigrations(): Promise<number> {
    const [, pending] = (await this.db.migrate.list()) as [unknown[], unknown[]];
    return pending.length;
  }

  /** Unfinished jobs, split by whether a lease is live at `now` (epoch ms). */
  async jobQueueDepth(now: number): Promise<JobQueueDepth> {
    const row: { total: number | string | null; active: number | string | null } | undefined = await this.db('async_job')
      .where({ status: IN_PROGRESS })
      .first(this.db.raw('COUNT(*) AS total'), this.db.raw('SUM(CASE WHEN lease_expires > ? THEN 1 ELSE 0 END) AS active', [now]));
    const active = Number(row?.active ?? 0);
    return { waiting: Number(row?.total ?? 0) - active, active };
  }
}
