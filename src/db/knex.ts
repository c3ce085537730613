import knexFactory, { type Knex } from 'knex';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { migrationSource } from './migrations';

export type Db = Knex;

/** SQLite in `dataDir` by default; MySQL/MariaDB when `databaseUrl` is a mysql:// URL. */
export function knexConfig(opts: { databaseUrl?: string; dataDir: string }): Knex.Config {
  if (opts.databaseUrl) {
    const url = new URL(opts.databaseUrl);
    if (url.protocol !== 'mysql:' && url.protocol !== 'mariadb:') {
      throw new Error(`DATABASE_URL must start with mysql:// (got ${url.protocol}//)`);
    }
    return {
      client: 'mysql2',
      connection: {
        host: url.hostname,
        port: Number(url.port || 3306),
        user: decodeURIComponent(url.username || 'root'),
        password: decodeURIComponent(url.password || ''),
        database: url.pathname.replace(/^\//, '') || 'kms',
        charset: 'utf8mb4',
        supportBigNumbers: true,
      },
      pool: { min: 0, max: 10 },
      migrations: { migrationSource, tableName: 'knex_migrations' },
    };
  }
  mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  const filename = join(opts.dataDir, 'kms.sqlite');
  ownerOnly(filename, { create: true });
  return {
    client: 'better-sqlite3',
    connection: { filename },
    useNullAsDefault: true,
    pool: {
      min: 1,
      max: 1,
      afterCreate: (conn: SqliteConnection, done: (err: Error | null, conn: unknown) => void) => {
        reusePreparedStatements(conn);
        conn.pragma('journal_mode = WAL');
        // SQLite gives its WAL and shared-memory files the database file's mode; files left by an
        // older version may still be 0644.
        for (const f of [`${filename}-wal`, `${filename}-shm`]) ownerOnly(f, { create: false });
        conn.pragma('busy_timeout = 5000');
        conn.pragma('foreign_keys = ON');
        done(null, conn);
      },
    },
    migrations: { migrationSource, tableName: 'knex_migrations' },
  };
}

interface SqliteConnection {
  pragma(s: string): unknown;
  prepare(sql: string): unknown;
}

/**
 * knex asks better-sqlite3 to prepare every query anew; the same few hundred statements serve every
 * request, so the connection keeps them (statements are re-run, never shared concurrently: the
 * connection is synchronous and the pool has one connection).
 */
function reusePreparedStatements(conn: SqliteConnection): void {
  const prepare = conn.prepare.bind(conn);
  const statements = new Map<string, unknown>();
  conn.prepare = (sql: string) => {
    let statement = statements.get(sql);
    if (statement === undefined) {
      statement = prepare(sql);
      if (statements.size >= 2000) statements.delete(statements.keys().next().value as string);
      statements.set(sql, statement);
    }
    return statement;
  };
}

/** Makes a database file readable and writable by its owner only (mode 0600), creating it when asked. */
function ownerOnly(file: string, opts: { create: boolean }): void {
  if (opts.create) closeSync(openSync(file, 'a', 0o600));
  if (existsSync(file)) chmodSync(file, 0o600);
}

/** Creates the MySQL database of DATABASE_URL when it is missing (and the user may). */
async function ensureMysqlDatabase(config: Knex.Config): Promise<void> {
  const { database, ...server } = config.connection as { database: string } & Record<string, unknown>;
  const admin = knexFactory({ client: 'mysql2', connection: server, pool: { min: 0, max: 1 } });
  try {
    await admin.raw('CREATE DATABASE IF NOT EXISTS ?? CHARACTER SET utf8mb4', [database]);
  } catch {
    // No privilege to create it: the migration below says clearly that it is missing.
  } finally {
    await admin.destroy();
  }
}

/** Opens the database (creating a missing MySQL database) and brings its schema up to date. */
export async function openDb(opts: { databaseUrl?: string; dataDir: string }): Promise<Db> {
  const config = knexConfig(opts);
  if (opts.databaseUrl) await ensureMysqlDatabase(config);
  const db = knexFactory(config);
  await db.migrate.latest();
  return db;
}

export const isMysql = (db: Db): boolean => db.client.config.client === 'mysql2';
