import type { Db } from '../knex';
import { isConflictError } from '../cluster';

/**
 * Named deployment-wide leases in `kms_lock` (scheduled work). `expires` is the end of the
 * holder's lease while it runs, and the time the last run ended once released, so "due" is
 * `expires + interval <= now`. Every change is a conditional UPDATE after an insert-if-absent,
 * which behaves the same on SQLite and MariaDB. Safe to call concurrently from many processes.
 */
export class LockRepository {
  constructor(private readonly db: Db) {}

  /** Takes the lock for `owner` if nobody holds it and `intervalMs` passed since the last release. */
  async acquireIfDue(name: string, owner: string, intervalMs: number, leaseMs: number): Promise<boolean> {
    try {
      await this.db('kms_lock').insert({ name, owner: '', expires: 0 }).onConflict('name').ignore();
      const now = Date.now();
      const n = await this.db('kms_lock').where({ name }).where('expires', '<=', now - intervalMs).update({ owner, expires: now + leaseMs });
      return n === 1;
    } catch (e) {
      // On Galera two nodes taking it at the same instant both update; one fails certification (1213): the other has it.
      if (isConflictError(e)) return false;
      throw e;
    }
  }

  /** When the lock is next due under `intervalMs` (epoch ms); 0 when it never ran. */
  async dueAt(name: string, intervalMs: number): Promise<number> {
    const row: { expires: number } | undefined = await this.db('kms_lock').where({ name }).first('expires');
    return row ? Number(row.expires) + intervalMs : 0;
  }

  /** Extends the holder's lease; false when `owner` no longer holds it. */
  async renew(name: string, owner: string, leaseMs: number): Promise<boolean> {
    const now = Date.now();
    return (await this.db('kms_lock').where({ name, owner }).where('expires', '>=', now).update({ expires: now + leaseMs })) === 1;
  }

  /** Releases the lock, recording now as the end of the run (the interval counts from here). */
  async release(name: string, owner: string): Promise<void> {
    await this.db('kms_lock').where({ name, owner }).update({ expires: Date.now() });
  }
}
