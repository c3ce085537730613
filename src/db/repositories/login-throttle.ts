import type { Knex } from 'knex';

/** One throttled key: its counted failures, when its next attempt may be checked, its last failure (epoch ms). */
export interface ThrottleEntry {
  failures: number;
  nextAllowed: number;
  lastFailure: number;
}

/** The login throttle's rows (src/identity/login-throttle.ts): every count is one conditional statement. */
export class LoginThrottleRepository {
  constructor(private readonly db: Knex | Knex.Transaction) {}

  async get(key: string): Promise<ThrottleEntry | undefined> {
    const r: { failures: number | string; next_allowed: number | string; last_failure: number | string } | undefined =
      await this.db('login_throttle').where({ throttle_key: key }).first('failures', 'next_allowed', 'last_failure');
    return r && { failures: Number(r.failures), nextAllowed: Number(r.next_allowed), lastFailure: Number(r.last_failure) };
  }

  /** Inserts a key's first row; false when another attempt inserted it first. */
  async insert(key: string, e: ThrottleEntry): Promise<boolean> {
    try {
      await this.db('login_throttle').insert({ throttle_key: key, failures: e.failures, next_allowed: e.nextAllowed, last_failure: e.lastFailure });
      return true;
    } catch (err) {
      const code = (err as { code?: string }).code ?? '';
      if (code === 'ER_DUP_ENTRY' || code.startsWith('SQLITE_CONSTRAINT')) return false;
      throw err;
    }
  }

  /**
   * Counts one failure of a key that is not waiting at `now`, in one statement: the failure that
   * reaches `free` also makes the key wait until `blockUntil` (the caller then sets the real wait
   * with `setWait`), so concurrent attempts never count past it. False when the key is waiting (or
   * has no row).
   */
  async countFailure(key: string, now: number, free: number, blockUntil: number): Promise<boolean> {
    // next_allowed first: MySQL evaluates assignments left to right with the new values, SQLite with the old.
    const n = await this.db('login_throttle').where({ throttle_key: key }).where('next_allowed', '<=', now).update({
      next_allowed: this.db.raw('CASE WHEN failures + 1 >= ? THEN ? ELSE 0 END', [free, blockUntil]),
      failures: this.db.raw('failures + 1'),
      last_failure: now,
    });
    return Number(n) > 0;
  }

  /** Sets the wait of a key that still has `failures` counted. */
  async setWait(key: string, failures: number, nextAllowed: number): Promise<void> {
    await this.db('login_throttle').where({ throttle_key: key, failures }).update({ next_allowed: nextAllowed });
  }

  /** Forgets the failures of a key whose last one is older than `before` (the window passed). */
  async restartIfIdle(key: string, before: number): Promise<void> {
    await this.db('login_throttle').where({ throttle_key: key }).where('last_failure', '<', before).update({ failures: 0, next_allowed: 0 });
  }

  /**
   * Takes back one counted failure; the key stops waiting when fewer than `free` remain, or when
   * its wait is still the one the taken-back count started (`setTo`): the key was not waiting before it.
   */
  async uncount(key: string, free: number, setTo?: number): Promise<void> {
    await this.db('login_throttle').where({ throttle_key: key }).where('failures', '>', 0).update({
      next_allowed: this.db.raw('CASE WHEN failures - 1 < ? OR next_allowed = ? THEN 0 ELSE next_allowed END', [free, setTo ?? -1]),
      failures: this.db.raw('failures - 1'),
    });
  }

  async remove(key: string): Promise<void> {
    await this.db('login_throttle').where({ throttle_key: key }).delete();
  }

  /** Deletes every row whose key begins with `prefix` (hex: a user's own row and its address pairs). */
  async removeByPrefix(prefix: string): Promise<void> {
    if (!/^[0-9a-f]{32}$/.test(prefix)) throw new Error('a throttle key prefix is 32 hex digits');
    await this.db('login_throttle').where('throttle_key', 'like', `${prefix}%`).delete();
  }

  /** Deletes the rows whose last failure is older than `before` (epoch ms). */
  async prune(before: number): Promise<number> {
    return Number(await this.db('login_throttle').where('last_failure', '<', before).delete());
  }
}
