import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { Logger } from '../core/logger';
import { isConflictError } from './cluster';

/** Why a start could not take a deployment-wide lock in time; main prints it as one line. */
export class LockWaitError extends Error {
  override readonly name = 'LockWaitError';
}

/** The table of start-up leases. Made here, not by a migration: the migration itself runs under one. */
export const CLUSTER_LOCK_TABLE = 'kms_cluster_lock';
/** A holder renews its lease every third of it; a holder that died frees it after LEASE_MS. */
export const LEASE_MS = 30_000;
const POLL_MS = 300;

/**
 * Creates the lease table when missing. CREATE TABLE IF NOT EXISTS is safe to race: on Galera, DDL
 * runs in total order on every node (TOI), so two nodes creating it at once both succeed.
 */
export async function ensureLockTable(db: Knex): Promise<void> {
  await db.raw(
    `CREATE TABLE IF NOT EXISTS ${CLUSTER_LOCK_TABLE} (name VARCHAR(64) NOT NULL PRIMARY KEY, owner VARCHAR(64) NOT NULL, expires BIGINT NOT NULL) ENGINE=InnoDB`,
  );
}

/**
 * Takes the lease `name` for `owner` if it is free or expired: an insert-if-absent, then one
 * conditional UPDATE. Only writes decide, never GET_LOCK or a lock held by a session, so it holds
 * across a Galera cluster: two nodes taking it at once both run the UPDATE, and at commit one of
 * them fails certification (1213) or, retried by the server, changes no row. Either way it is not taken.
 */
export async function tryTakeLease(db: Knex, name: string, owner: string, leaseMs = LEASE_MS): Promise<boolean> {
  try {
    await db(CLUSTER_LOCK_TABLE).insert({ name, owner: '', expires: 0 }).onConflict('name').ignore();
    const n = await db(CLUSTER_LOCK_TABLE).where({ name }).andWhere((q) => q.where('expires', '<', db.raw(DB_NOW_MS)).orWhere({ owner }))
      .update({ owner, expires: db.raw(`${DB_NOW_MS} + ?`, [leaseMs]) });
    return n === 1;
  } catch (e) {
    if (isConflictError(e)) return false;
    throw e;
  }
}

/**
 * The database's clock in epoch ms (MariaDB): every lease time is read and written with it, so the
 * nodes' own clocks never decide when a lease expired. On Galera the value is computed on the node
 * that runs the statement and replicated as a value.
 */
const DB_NOW_MS = 'ROUND(UNIX_TIMESTAMP(NOW(3)) * 1000)';

/** Extends a held lease; false when `owner` lost it. */
export async function renewLease(db: Knex, name: string, owner: string, leaseMs = LEASE_MS): Promise<boolean> {
  return (await db(CLUSTER_LOCK_TABLE).where({ name, owner }).update({ expires: db.raw(`${DB_NOW_MS} + ?`, [leaseMs]) })) === 1;
}

/** Frees a held lease at once. */
export async function releaseLease(db: Knex, name: string, owner: string): Promise<void> {
  await db(CLUSTER_LOCK_TABLE).where({ name, owner }).update({ owner: '', expires: 0 });
}

/**
 * Runs fn while holding the deployment-wide lease `name` (a row of kms_cluster_lock, renewed while
 * fn runs), so processes started at the same instant, on one database or on several nodes of a
 * Galera cluster, take turns. When another process holds it, logs once that it waits, and waits at
 * most `waitSec`; a holder that died frees it when its lease ends (30 s). On SQLite (one host, one
 * file) fn runs at once: its writers are already serialised by the database file.
 */
export async function withDbLock<T>(db: Knex, name: string, opts: { waitSec: number; logger?: Logger; what: string }, fn: () => Promise<T>): Promise<T> {
  if (db.client.config.client !== 'mysql2') return fn();
  await ensureLockTable(db);
  const owner = randomUUID();
  const deadline = Date.now() + opts.waitSec * 1000;
  let waited = false;
  while (!(await tryTakeLease(db, name, owner))) {
    if (!waited) opts.logger?.info(`waiting for the ${opts.what} lock held by another process`, { lock: name, waitSec: opts.waitSec });
    waited = true;
    if (Date.now() > deadline) {
      throw new LockWaitError(`another process held the ${opts.what} lock (${name}) for more than ${opts.waitSec}s; raise KMS_STARTUP_LOCK_WAIT_SEC or look for a stuck process`);
    }
    await new Promise((r) => setTimeout(r, POLL_MS + Math.floor(Math.random() * POLL_MS)));
  }
  if (waited) opts.logger?.info(`took the ${opts.what} lock`, { lock: name });
  // Fencing: once the lease is lost (another process may hold it now), this process stops waiting
  // for fn and fails, so its start-up aborts instead of carrying on beside the new holder.
  let lose: (e: Error) => void = () => undefined;
  const lost = new Promise<never>((_, reject) => { lose = reject; });
  lost.catch(() => undefined);
  const renewer = setInterval(() => {
    renewLease(db, name, owner).then((held) => {
      if (held) return;
      opts.logger?.error(`lost the ${opts.what} lock (${name}) while holding it: the database was unreachable for longer than the lease; stopping`, { lock: name });
      lose(new LockWaitError(`lost the ${opts.what} lock (${name}) while holding it; start the process again`));
    }, () => undefined);
  }, LEASE_MS / 3);
  renewer.unref();
  try {
    return await Promise.race([fn(), lost]);
  } finally {
    clearInterval(renewer);
    await releaseLease(db, name, owner).catch(() => undefined);
  }
}
