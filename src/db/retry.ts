import type { Knex } from 'knex';
import type { Logger } from '../core/logger';
import { DatabaseBusyError, DatabaseUnavailableError, isConflictError, isConnectionError, selectorOf } from './cluster';

/** How many times a transaction runs at most before its conflict or outage reaches the caller. */
export const TRANSACTION_ATTEMPTS = 8;
/** First back-off between attempts, doubled each time up to TRANSACTION_BACKOFF_MAX_MS, with full jitter. */
export const TRANSACTION_BACKOFF_MS = 20;
export const TRANSACTION_BACKOFF_MAX_MS = 1000;
/** All attempts of one transaction after a lost connection share this much time, so a hung database answers 530 within seconds. */
export const TRANSACTION_OUTAGE_DEADLINE_MS = 5000;

/** Thrown by a transaction whose COMMIT lost its connection: it may have committed, so it is not run again. */
const commitOutcomeUnknown = (e: unknown): boolean => e instanceof DatabaseUnavailableError && e.duringCommit;

/** Counts of retried transactions, for tests and metrics. */
export const transactionRetries = { conflicts: 0, outages: 0 };

/**
 * Runs `attempt` (one whole transaction) again when it failed on a deadlock or Galera certification
 * conflict (1213), a lock-wait timeout (1205), a node that is not ready (1047) or a lost connection
 * (after the host selector moved to a live host), with exponential back-off and full jitter, at most
 * TRANSACTION_ATTEMPTS times; after a lost connection, not once the host selector found every host
 * down, nor after TRANSACTION_OUTAGE_DEADLINE_MS since the first attempt. The transaction was rolled back each time, so only its database
 * writes are repeated: whatever `attempt` does outside the database must happen before it (an HSM
 * result computed once and reused) or be idempotent. A COMMIT whose connection died is not
 * retried (its outcome is unknown). What is left after the last attempt is a 530 (DatabaseBusyError
 * or DatabaseUnavailableError), never an internal error.
 */
export async function retryTransaction<T>(db: Knex, attempt: () => Promise<T>, logger?: Logger): Promise<T> {
  const deadline = Date.now() + TRANSACTION_OUTAGE_DEADLINE_MS;
  const unavailable = (e: unknown) => (e instanceof DatabaseUnavailableError ? e : new DatabaseUnavailableError((e as { code?: string }).code, e));
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (e) {
      const conflict = isConflictError(e);
      const outage = !conflict && isConnectionError(e) && !commitOutcomeUnknown(e);
      if (!conflict && !outage) throw e;
      if (outage) {
        const selector = selectorOf(db);
        await selector?.reportFailure(e);
        await selector?.settled();
        // Every host probed down, or the shared deadline spent: answer now rather than probe again.
        if ((selector && !selector.available) || Date.now() >= deadline) throw unavailable(e);
      }
      if (n >= TRANSACTION_ATTEMPTS) {
        if (conflict) throw new DatabaseBusyError(n, e);
        throw unavailable(e);
      }
      if (conflict) transactionRetries.conflicts++;
      else transactionRetries.outages++;
      logger?.debug('transaction retried', { attempt: n, reason: conflict ? 'conflict' : 'connection', error: e instanceof Error ? e.message.split('\n')[0] : String(e) });
      const cap = Math.min(TRANSACTION_BACKOFF_MAX_MS, TRANSACTION_BACKOFF_MS * 2 ** (n - 1));
      await new Promise((r) => setTimeout(r, Math.floor(cap / 2 + Math.random() * cap / 2)));
      await selectorOf(db)?.settled();
    }
  }
}
