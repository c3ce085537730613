import knexFactory from 'knex';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { openDb, type Db } from '../../src/db/knex';

/**
 * A fresh, migrated database for one test file: SQLite in a temp dir by default, or a new
 * MariaDB database when KMS_TEST_DATABASE_URL is set (mysql://root@127.0.0.1:3306). Drop it in afterAll.
 */
export interface TestDb {
  db: Db;
  databaseUrl?: string;
  dataDir: string;
  drop(): Promise<void>;
}

export async function createTestDb(opts: { mysqlUrl?: string } = {}): Promise<TestDb> {
  const dataDir = mkdtempSync(join(tmpdir(), 'kms-test-'));
  // `mysqlUrl`: a spec of MySQL-only behaviour (deadlocks, leases) uses MariaDB in both passes.
  const base = opts.mysqlUrl ?? process.env.KMS_TEST_DATABASE_URL;
  if (!base) {
    const db = await openDb({ dataDir });
    return { db, dataDir, drop: async () => { await db.destroy(); rmSync(dataDir, { recursive: true, force: true }); } };
  }
  const name = `kms_test_${randomBytes(5).toString('hex')}`;
  const url = new URL(base);
  const admin = knexFactory({
    client: 'mysql2',
    connection: { host: url.hostname, port: Number(url.port || 3306), user: decodeURIComponent(url.username || 'root'), password: decodeURIComponent(url.password) },
  });
  await admin.raw(`CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4`);
  await admin.destroy();
  url.pathname = `/${name}`;
  const databaseUrl = url.toString();
  const db = await openDb({ databaseUrl, dataDir });
  return {
    db,
    databaseUrl,
    dataDir,
    drop: async () => {
      await db.destroy();
      const a = knexFactory({ client: 'mysql2', connection: { host: url.hostname, port: Number(url.port || 3306), user: decodeURIComponent(url.username || 'root'), password: decodeURIComponent(url.password) } });
      await a.raw(`DROP DATABASE IF EXISTS \`${name}\``);
      await a.destroy();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
