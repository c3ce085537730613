import type { Knex } from 'knex';
import type { Logger } from '../core/logger';

/** Why a start could not take a deployment-wide lock in time; main prints it as one line. */
export class LockWaitError extends Error {
  override readonly name = 'LockWaitError';
}

/**
 * Runs fn while holding the MySQL named lock `name` (GET_LOCK on a connection of its own), so
 * processes started at the same instant on one database take turns. When another process holds
 * it, logs once that it waits, and waits at most `waitSec`. On SQLite (one host, one file) fn
 * runs at once: its writers are already serialised by the database file.
 */
export async function withDbLock<T>(db: Knex, name: string, opts: { waitSec: number; logger?: Logger; what: string }, fn: () => Promise<T>): Promise<T> {
  if (db.client.config.client !== 'mysql2') return fn();
  const conn: Knex.Client = await db.client.acquireConnection();
  const getLock = async (sec: number): Promise<boolean> => {
    const [rows] = (await db.raw('SELECT GET_LOCK(?, ?) AS got', [name, sec]).connection(conn)) as unknown as [Array<{ got: number | null }>];
    return Number(rows[0]?.got) === 1;
  };
  try {
    if (!(await getLock(0))) {
      opts.logger?.info(`waiting for the ${opts.what} lock held by another process`, { lock: name, waitSec: opts.waitSec });
      if (!(await getLock(opts.waitSec))) {
        throw new LockWaitError(`another process held the ${opts.what} lock (${name}) for more than ${opts.waitSec}s; raise KMS_STARTUP_LOCK_WAIT_SEC or look for a stuck process`);
      }
      opts.logger?.info(`took the ${opts.what} lock`, { lock: name });
    }
    try {
      return await fn();
    } finally {
      await db.raw('SELECT RELEASE_LOCK(?)', [name]).connection(conn).catch(() => undefined);
    }
  } finally {
    await db.client.releaseConnection(conn);
  }
}
