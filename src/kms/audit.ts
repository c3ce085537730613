import type { Repositories } from '../db/repositories';
import type { EventInput, EventLog } from '../events/event-log';

/**
 * Records an event in the transaction `tx`, so it commits (or not) with the rows it describes. The
 * event log takes a knex connection today; this is the one place that lends it the transaction's
 * (through a deprecated bridge of the KMS key repository) until it takes a Repositories transaction.
 */
export function recordIn(events: Pick<EventLog, 'record'>, tx: Repositories, e: EventInput): Promise<void> {
  return tx.kmsKeys.withConnection((c) => events.record(e, c));
}
