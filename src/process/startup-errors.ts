import type { Env } from '../config/env';
import { LockWaitError } from '../db/db-lock';
import { StartupError } from '../ops/preflight';

/** Where DATABASE_URL points, without its password. */
function databaseTarget(env: Env): string {
  if (!env.databaseUrl) return `SQLite in ${env.dataDir}`;
  try {
    const u = new URL(env.databaseUrl);
    return `${u.hostname}:${u.port || 3306}${u.pathname} as user '${decodeURIComponent(u.username || 'root')}'`;
  } catch {
    return 'DATABASE_URL';
  }
}

/**
 * One line saying why a start failed and what to fix, never a stack trace and never a password.
 * Known causes (a port in use, a database that refuses the login or is not there, a lock held too
 * long, a bad setting) get their own sentence; anything else its message's first line.
 */
export function describeStartupError(err: unknown, env?: Env): string {
  if (err instanceof StartupError || err instanceof LockWaitError) return err.message;
  const e = err as { code?: string; errno?: number; message?: string };
  const db = env ? databaseTarget(env) : 'the database';
  switch (e?.code) {
    case 'ER_ACCESS_DENIED_ERROR':
    case 'ER_DBACCESS_DENIED_ERROR':
      return `the database refused the login (${db}): check the user and password in DATABASE_URL`;
    case 'ER_BAD_DB_ERROR':
      return `the database does not exist and could not be created (${db}): create it, or grant CREATE to the user`;
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
      return `cannot reach the database (${db}): ${e.code}`;
    case 'SQLITE_CANTOPEN':
      return `cannot open the SQLite database in ${env?.dataDir ?? 'KMS_DATA_DIR'}: check that the directory is writable`;
    default:
      break;
  }
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0]!.slice(0, 500);
}
