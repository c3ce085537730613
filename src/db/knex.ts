import knexFactory, { type Knex } from 'knex';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../core/logger';
import { LockWaitError, withDbLock } from './db-lock';
import { attachSelector, firstLiveHost, HostSelector, parseMysqlUrl, poolHooks } from './cluster';
import { migrationSource } from './migrations';

export type Db = Knex;

/** Where a MySQL config keeps the holder of its pool's host selector (set by openDb, read by the pool hooks). */
const SELECTOR = Symbol('kms.db.selector');
type SelectorHolder = { current?: HostSelector };

/** SQLite in `dataDir` by default; MySQL/MariaDB when `databaseUrl` is a mysql:// URL. */
export function knexConfig(opts: { databaseUrl?: string; dataDir: string }): Knex.Config {
  if (opts.databaseUrl) {
    // One host or several (`mysql://u:p@h1:3306,h2:3306/kms`): connections go to the first that
    // answers (src/db/cluster.ts HostSelector moves them when it dies, and back when it returns).
    const url = parseMysqlUrl(opts.databaseUrl);
    const first = url.hosts[0]!;
    const holder: SelectorHolder = {};
    const hooks = poolHooks(() => holder.current);
    const config: Knex.Config & { [SELECTOR]?: SelectorHolder } = {
      client: 'mysql2',
      connection: {
        host: first.host,
        port: first.port,
        user: url.user,
        password: url.password,
        database: url.database,
        charset: 'utf8mb4',
        supportBigNumbers: true,
        connectTimeout: 3000,
      },
      // A dead host fails acquisition at once (propagated create error) instead of after 60 s.
      pool: {
        min: 0, max: 10, acquireTimeoutMillis: 10_000, afterCreate: hooks.afterCreate, validate: hooks.validate,
      } as Knex.PoolConfig,
      migrations: { migrationSource, tableName: 'knex_migrations' },
    };
    config[SELECTOR] = holder;
    return config;
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

/**
 * knex prints pool errors with their stacks on the console by itself; they go to our logger as
 * one debug line instead (the error that matters reaches the caller anyway).
 */
function knexLog(logger?: Logger): Knex.Logger {
  const line = (m: unknown) => (m instanceof Error ? m.message : String(m)).split('\n')[0];
  return {
    warn: (m: unknown) => logger?.debug('knex', { message: line(m) }),
    error: (m: unknown) => logger?.debug('knex', { message: line(m) }),
    deprecate: () => undefined,
    debug: () => undefined,
  };
}

/** Creates the MySQL database of DATABASE_URL when it is missing (and the user may). */
export async function ensureMysqlDatabase(config: Knex.Config): Promise<void> {
  const { database, ...server } = config.connection as { database: string } & Record<string, unknown>;
  const admin = knexFactory({ client: 'mysql2', connection: server, pool: { min: 0, max: 1 }, log: config.log });
  try {
    await admin.raw('CREATE DATABASE IF NOT EXISTS ?? CHARACTER SET utf8mb4', [database]);
  } catch {
    // No privilege to create it: the migration below says clearly that it is missing.
  } finally {
    await admin.destroy();
  }
}

/** Options of openDb. */
export interface OpenDbOptions {
  databaseUrl?: string;
  dataDir: string;
  /** How long to wait for another process that is migrating the same database. @defaultValue 120 */
  lockWaitSec?: number;
  logger?: Logger;
}

const isKnexMigrationLock = (e: unknown): boolean => e instanceof Error && (e.name === 'MigrationLocked' || /Migration table is already locked/.test(e.message));

/**
 * Brings the schema up to date. On MySQL the whole migration runs under a named lock, so processes
 * started together wait their turn (and then find nothing left to do). knex's own lock row is
 * still checked: when it stays taken past the wait, a process died while migrating.
 */
async function migrateLatest(db: Db, opts: OpenDbOptions): Promise<void> {
  const waitSec = opts.lockWaitSec ?? 120;
  const deadline = Date.now() + waitSec * 1000;
  await withDbLock(db, 'kms.migrations', { waitSec, logger: opts.logger, what: 'migration' }, async () => {
    for (let logged = false; ; logged = true) {
      try {
        await db.migrate.latest();
        return;
      } catch (e) {
        if (!isKnexMigrationLock(e)) throw e;
        if (Date.now() > deadline) {
          throw new LockWaitError(
            `the migration table stayed locked for ${waitSec}s: a process may have died while migrating; ` +
              'when no other node is starting, clear it with UPDATE knex_migrations_lock SET is_locked = 0',
          );
        }
        if (!logged) opts.logger?.info('waiting for the migration lock held by another process', { waitSec });
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  });
}

/** Opens the database (creating a missing MySQL database) and brings its schema up to date. */
export async function openDb(opts: OpenDbOptions): Promise<Db> {
  const config = { ...knexConfig(opts), log: knexLog(opts.logger) };
  if (opts.databaseUrl) {
    // Start on the first host that answers (the preferred one when it does).
    const url = parseMysqlUrl(opts.databaseUrl);
    const live = await firstLiveHost(url);
    if (live) Object.assign(config.connection as { host: string; port: number }, live);
    await ensureMysqlDatabase(config);
  }
  const db = knexFactory(config);
  if (opts.databaseUrl) {
    const settings = (db.client as unknown as { connectionSettings: { host: string; port: number } }).connectionSettings;
    const selector = new HostSelector(parseMysqlUrl(opts.databaseUrl), (h) => Object.assign(settings, { host: h.host, port: h.port }), opts.logger, settings);
    (config as { [SELECTOR]?: SelectorHolder })[SELECTOR]!.current = selector;
    attachSelector(db, selector);
  }
  try {
    await migrateLatest(db, opts);
  } catch (e) {
    await db.destroy().catch(() => undefined);
    throw e;
  }
  return db;
}

export const isMysql = (db: Db): boolean => db.client.config.client === 'mysql2';
