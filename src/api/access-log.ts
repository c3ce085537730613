import type { App } from '../app';
import type { Caller } from '../identity/caller';
import { withLogContext } from '../core/logger';

/** What the access line of one API request says; filled in as the request is handled. */
export interface ApiRequestRecord {
  requestId: string;
  started: bigint;
  /** The command as declared (or `login`/`logout`; `unknown` for an unknown one, `none` when absent). */
  command?: string;
  caller?: Caller;
  /** CloudStack's errorcode, 0 for success. */
  errorcode: number;
}

/**
 * Writes the access line of a finished API request and counts it in the metrics. The line names
 * the command, the caller and the outcome only: parameter values (passwords, signatures, session
 * keys, profile details) never reach it.
 */
export function recordApiRequest(app: Pick<App, 'logger' | 'metrics'>, rec: ApiRequestRecord, status: number): void {
  const seconds = Number(process.hrtime.bigint() - rec.started) / 1e9;
  const command = rec.command ?? 'none';
  app.metrics.apiRequests.inc({ command, errorcode: String(rec.errorcode) });
  app.metrics.apiDuration.observe({ command }, seconds);
  withLogContext({ requestId: rec.requestId }, () => app.logger.info('api request', {
    command,
    user: rec.caller?.username || undefined,
    userId: rec.caller?.userUuid || undefined,
    account: rec.caller?.accountName || undefined,
    status,
    errorcode: rec.errorcode,
    durationMs: Math.round(seconds * 10000) / 10,
  }));
}
