import { openDb } from '../knex';
import { createRepositories, type Repositories } from './index';

/** Opens (and migrates) the database and gives its repositories; for processes without an app (the admin CLI). */
export async function openRepositories(opts: { databaseUrl?: string; dataDir: string }): Promise<{ repos: Repositories; close(): Promise<void> }> {
  const db = await openDb(opts);
  return { repos: createRepositories(db), close: () => db.destroy() };
}
