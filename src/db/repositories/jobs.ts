import type { Db } from '../knex';
import { paramError } from '../../core/errors';
import type { OwnerScope } from '../../core/owner-scope';
import { applyOwnerScope } from '../owner-scope';
import { type Page, type PageWindow } from '../paging';
import { pagedRows } from '../reader';
import { dateOrNull } from '../columns';
import { isConflictError, isConnectionError } from '../cluster';

/** One `async_job` row: the single truth of a job (owner, command, state, progress, result, lease). */
export interface AsyncJobRow {
  id: number;
  uuid: string;
  user_id: number;
  account_id: number;
  domain_id: number;
  cmd: string;
  job_kind: string;
  cmd_info: string;
  instance_type: string | null;
  instance_id: string | null;
  status: number;
  process_status: number;
  result_code: number;
  result_type: string | null;
  result: string | null;
  lease_owner: string | null;
  lease_expires: number | null;
  attempts: number;
  created: number;
  completed: number | null;
  last_updated: number;
  /** The API request that submitted the job (log correlation); null for jobs from before it was kept. */
  request_id: string | null;
}

/** A new job's record. */
export interface NewJob {
  uuid: string;
  userId: number;
  accountId: number;
  domainId: number;
  cmd: string;
  kind: string;
  args: Record<string, unknown>;
  instanceType?: string;
  instanceId?: string;
  /** The submitting API request's id, followed into the job's log lines. */
  requestId?: string;
}

/** A finished job's result as stored: the `jobresult` object and its code. */
export interface JobFinish {
  status: 1 | 2;
  resultCode: number;
  result: object;
}

const IN_PROGRESS = 0;

/** A job with its owner's names, as queryAsyncJobResult and listAsyncJobs show it. */
export interface AsyncJobView {
  uuid: string; cmd: string;
  /** JobStatus: 0 in progress, 1 succeeded, 2 failed. */
  status: number;
  processStatus: number; resultCode: number; resultType: string | null;
  /** The stored `jobresult` JSON text; null while in progress. */
  result: string | null;
  instanceType: string | null; instanceId: string | null; created: Date; completed: Date | null; accountId: number; domainId: number;
  accountUuid: string | null; accountName: string | null; domainUuid: string | null; domainPath: string | null; userUuid: string | null;
}

function toJobView(r: Record<string, any>): AsyncJobView {
  return {
    uuid: r.uuid, cmd: r.cmd, status: Number(r.status), processStatus: Number(r.process_status), resultCode: Number(r.result_code),
    resultType: r.result_type ?? null, result: r.result ?? null, instanceType: r.instance_type ?? null, instanceId: r.instance_id ?? null,
    created: new Date(Number(r.created)), completed: dateOrNull(r.completed),
    accountId: Number(r.account_id), domainId: Number(r.domain_id), accountUuid: r.account_uuid ?? null, accountName: r.account_name ?? null,
    domainUuid: r.domain_uuid ?? null, domainPath: r.domain_path ?? null, userUuid: r.user_uuid ?? null,
  };
}

/**
 * Job rows. Every state change is a conditional UPDATE (status, lease owner, lease expiry), so
 * several workers and API nodes can share one database: a claim succeeds for exactly one worker,
 * and only the lease holder can record progress or a result. Safe to call concurrently.
 */
export class JobRepository {
  constructor(private readonly db: Db) {}

  /** Writes a new in-progress job; a uuid already used (customjobid) is a param error. */
  async insert(job: NewJob): Promise<number> {
    if (await this.db('async_job').where({ uuid: job.uuid }).first('id')) throw paramError(`A job with id ${job.uuid} already exists`);
    const now = Date.now();
    try {
      const [id] = await this.db('async_job').insert({
        uuid: job.uuid, user_id: job.userId, account_id: job.accountId, domain_id: job.domainId, cmd: job.cmd, job_kind: job.kind,
        cmd_info: JSON.stringify(job.args), instance_type: job.instanceType ?? null, instance_id: job.instanceId ?? null,
        status: IN_PROGRESS, created: now, last_updated: now, request_id: job.requestId ?? null,
      });
      return Number(id);
    } catch (err) {
      // The connection died around the commit (a database host lost): the insert may have committed.
      // No other submission can have this uuid without a duplicate-key error, so a row found is ours.
      if (isConnectionError(err)) {
        const mine: { id: number } | undefined = await this.db('async_job').where({ uuid: job.uuid }).first('id');
        if (mine) return Number(mine.id);
        throw err;
      }
      // Two submissions racing with one customjobid: the unique index decides, the loser is a 431.
      if (await this.db('async_job').where({ uuid: job.uuid }).first('id')) throw paramError(`A job with id ${job.uuid} already exists`);
      throw err;
    }
  }

  private viewQuery() {
    return this.db('async_job as j')
      .leftJoin('account as a', 'a.id', 'j.account_id')
      .leftJoin('domain as d', 'd.id', 'j.domain_id')
      .leftJoin('user as u', 'u.id', 'j.user_id')
      .select('j.uuid', 'j.cmd', 'j.status', 'j.process_status', 'j.result_code', 'j.result_type', 'j.result', 'j.instance_type', 'j.instance_id',
        'j.created', 'j.completed', 'j.account_id', 'j.domain_id', 'a.uuid as account_uuid', 'a.account_name', 'd.uuid as domain_uuid',
        'd.path as domain_path', 'u.uuid as user_uuid');
  }

  /** A job with its owner's names, by uuid. */
  async view(uuid: string): Promise<AsyncJobView | undefined> {
    const r = await this.viewQuery().where('j.uuid', uuid).first();
    return r ? toJobView(r) : undefined;
  }

  /** The jobs in `scope`, newest first, created at or after `since`, whose command contains `keyword`: one page and the total. */
  async listViews(scope: OwnerScope, f: { since?: Date; keyword?: string }, page: PageWindow): Promise<Page<AsyncJobView>> {
    const q = applyOwnerScope(this.viewQuery(), scope, { accountCol: 'j.account_id', domainCol: 'j.domain_id' }).orderBy('j.id', 'desc');
    if (f.since !== undefined) q.where('j.created', '>=', f.since.getTime());
    if (f.keyword) q.where('j.cmd', 'like', `%${f.keyword}%`);
    const { rows, count } = await pagedRows<Record<string, any>>(q, page);
    return { rows: rows.map(toJobView), count };
  }

  /** The uuid of an unfinished job of `kind`, if any. */
  async unfinishedOfKind(kind: string): Promise<string | undefined> {
    const r: { uuid: string } | undefined = await this.db('async_job').where({ job_kind: kind, status: IN_PROGRESS }).first('uuid');
    return r?.uuid;
  }

  async findByUuid(uuid: string): Promise<AsyncJobRow | undefined> {
    return this.db('async_job').where({ uuid }).first();
  }

  /**
   * Takes the job for `owner` if it is unfinished, below `maxAttempts` starts and has no live lease.
   * Returns the claimed row (attempts already counted), or undefined when someone else has it or it is done.
   */
  async claim(uuid: string, owner: string, leaseMs: number, maxAttempts: number): Promise<AsyncJobRow | undefined> {
    const now = Date.now();
    // On Galera two workers claiming at the same instant on different nodes both update; one fails
    // certification (1213) and did not get the job.
    const n = await this.db('async_job')
      .where({ uuid, status: IN_PROGRESS })
      .where('attempts', '<', maxAttempts)
      .where((q) => q.whereNull('lease_owner').orWhereNull('lease_expires').orWhere('lease_expires', '<', now))
      .update({ lease_owner: owner, lease_expires: now + leaseMs, attempts: this.db.raw('attempts + 1'), last_updated: now })
      .catch((e: unknown) => { if (isConflictError(e)) return 0; throw e; });
    if (n !== 1) return undefined;
    return this.db('async_job').where({ uuid, lease_owner: owner, status: IN_PROGRESS }).first();
  }

  /** Extends the lease (and records progress when given); false when `owner` no longer holds it. */
  async renew(id: number, owner: string, leaseMs: number, progress?: number): Promise<boolean> {
    const now = Date.now();
    const fields: Record<string, number> = { lease_expires: now + leaseMs, last_updated: now };
    if (progress !== undefined) fields.process_status = progress;
    const n = await this.db('async_job').where({ id, lease_owner: owner, status: IN_PROGRESS }).update(fields);
    return n === 1;
  }

  /** Gives the job up without a result (this worker is closing); any worker may claim it at once. */
  async release(id: number, owner: string): Promise<void> {
    await this.db('async_job').where({ id, lease_owner: owner, status: IN_PROGRESS }).update({ lease_expires: 0, last_updated: Date.now() });
  }

  /** Records the result, resets the progress (jobprocstatus 0, as CloudStack) and releases the lease; false (nothing written) when `owner` lost the job. */
  async finish(id: number, owner: string, f: JobFinish): Promise<boolean> {
    const now = Date.now();
    const n = await this.db('async_job').where({ id, lease_owner: owner, status: IN_PROGRESS }).update({
      status: f.status, result_code: f.resultCode, result_type: 'object', result: JSON.stringify(f.result), process_status: 0,
      completed: now, last_updated: now, lease_owner: null, lease_expires: null,
    });
    return n === 1;
  }

  /**
   * Unfinished jobs of the given kinds that nobody runs: never claimed and older than
   * `pickupDelayMs` (their queue entry may be lost), or with an expired lease (their worker died).
   */
  async findOrphans(kinds: readonly string[], pickupDelayMs: number, maxAttempts: number, limit: number): Promise<string[]> {
    if (!kinds.length || limit <= 0) return [];
    const now = Date.now();
    const rows: Array<{ uuid: string }> = await this.db('async_job')
      .where({ status: IN_PROGRESS })
      .whereIn('job_kind', [...kinds])
      .where('attempts', '<', maxAttempts)
      .where((q) =>
        q.where((u) => u.whereNull('lease_owner').where('last_updated', '<=', now - pickupDelayMs))
          .orWhere('lease_expires', '<', now))
      .orderBy('id')
      .limit(limit)
      .select('uuid');
    return rows.map((r) => r.uuid);
  }

  /** Fails unfinished jobs that used up their starts and have no live lease; returns their uuids. */
  async failAbandoned(maxAttempts: number, result: { errorcode: number; errortext: string }): Promise<string[]> {
    const now = Date.now();
    const stale = (q: ReturnType<Db>) =>
      q.where({ status: IN_PROGRESS }).where('attempts', '>=', maxAttempts)
        .where((w) => w.whereNull('lease_expires').orWhere('lease_expires', '<', now));
    const rows: Array<{ uuid: string }> = await stale(this.db('async_job')).select('uuid');
    if (!rows.length) return [];
    await stale(this.db('async_job')).whereIn('uuid', rows.map((r) => r.uuid)).update({
      status: 2, result_code: result.errorcode, result_type: 'object', result: JSON.stringify(result), process_status: 0,
      completed: now, last_updated: now, lease_owner: null, lease_expires: null,
    });
    return rows.map((r) => r.uuid);
  }
}
