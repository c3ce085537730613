import knexFactory, { type Knex } from 'knex';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ensureMysqlDatabase, isMysql, knexConfig } from './knex';
import { migrationNames } from './migrations';

/**
 * Logical backups of the whole database (README "Backups and disaster recovery").
 *
 * A backup file is JSON lines: a header (format, schema migrations, the master key versions'
 * check values: they tell a key's version, they are not the key), one line per row
 * (`["table", {column: value}]`, binary columns as `{"$b": base64}`), and a trailer with the row
 * count and the SHA-256 of every line before it, so a truncated or altered file is refused.
 *
 * The snapshot is consistent: on SQLite it is read from a copy made by SQLite's online backup; on
 * MariaDB every table is read in one REPEATABLE READ transaction. Values that are secret are
 * already encrypted under the master key in the database (PINs, API secret keys, passphrases,
 * database-provider KEKs) or wrapped by a KEK (DEKs); transient tables (sessions, locks, node
 * heartbeats) are left out.
 */
export const BACKUP_FORMAT = 'cloudstack-kms-backup';
export const BACKUP_FORMAT_VERSION = 1;

/** Tables never backed up: knex's own, and state that means nothing after a restore (sessions, leases, heartbeats). */
const TRANSIENT_TABLES = new Set(['knex_migrations', 'knex_migrations_lock', 'http_session', 'kms_lock', 'kms_node', 'kms_cluster_lock']);

/** Tables that hold rows once any node has started on a database: a restore target must have none. */
const DEPLOYMENT_TABLES = ['domain', 'account', 'user', 'kms_master_key_versions', 'kms_keys', 'volumes', 'passphrase'];

/** Rows read per statement while dumping. */
const PAGE = 2000;

/** The master key versions a backup was made under, by check value (never the key). */
export interface BackupMasterKeyVersion {
  version: number;
  state: string;
  checkValue: string;
  /** The key wrapped by the HSM seal (base64) when the master key is sealed: only that token can open it. */
  sealedKey: string | null;
}

export interface BackupHeader {
  format: typeof BACKUP_FORMAT;
  formatVersion: number;
  created: string;
  source: 'sqlite' | 'mysql';
  migrations: string[];
  masterKey: BackupMasterKeyVersion[];
  tables: string[];
}

interface BackupTrailer { end: true; rows: number; sha256: string }

export interface BackupSummary { file: string; rows: Record<string, number> }

/** A backup refused at restore, with the reason in one sentence. */
export class BackupRefused extends Error {}

type Row = Record<string, unknown>;

const encode = (row: Row): Row => {
  const out: Row = {};
  for (const [k, v] of Object.entries(row)) {
    out[k] = Buffer.isBuffer(v) ? { $b: v.toString('base64') } : v instanceof Date ? { $d: v.toISOString() } : typeof v === 'bigint' ? String(v) : v;
  }
  return out;
};

const decode = (row: Row): Row => {
  const out: Row = {};
  for (const [k, v] of Object.entries(row)) {
    if (v && typeof v === 'object' && '$b' in v) out[k] = Buffer.from(String((v as { $b: string }).$b), 'base64');
    else if (v && typeof v === 'object' && '$d' in v) out[k] = new Date(String((v as { $d: string }).$d));
    else out[k] = v;
  }
  return out;
};

async function tablesOf(db: Knex): Promise<string[]> {
  if (isMysql(db)) {
    const [rows] = (await db.raw("SELECT table_name AS name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' ORDER BY table_name")) as [Array<{ name: string }>];
    return rows.map((r) => r.name);
  }
  const rows: Array<{ name: string }> = await db('sqlite_master').where({ type: 'table' }).whereNot('name', 'like', 'sqlite_%').orderBy('name').select('name');
  return rows.map((r) => r.name);
}

async function completedMigrations(db: Knex): Promise<string[]> {
  if (!(await db.schema.hasTable('knex_migrations'))) return [];
  return (await db('knex_migrations').orderBy('id').select('name')).map((r: { name: string }) => r.name);
}

/** A writer of one backup file: lines are hashed as they go, the file appears (renamed) only when complete. */
class BackupWriter {
  private readonly fd: number;
  private readonly hash = createHash('sha256');
  private readonly tmp: string;
  rows = 0;

  constructor(private readonly file: string) {
    this.tmp = join(dirname(file), `.${process.pid}.${Date.now()}.backup.tmp`);
    this.fd = openSync(this.tmp, 'wx', 0o600);
  }

  line(value: unknown): void {
    const text = `${JSON.stringify(value)}\n`;
    this.hash.update(text);
    writeSync(this.fd, text);
  }

  finish(): void {
    const trailer: BackupTrailer = { end: true, rows: this.rows, sha256: this.hash.digest('hex') };
    writeSync(this.fd, `${JSON.stringify(trailer)}\n`);
    fsyncSync(this.fd);
    closeSync(this.fd);
    renameSync(this.tmp, this.file);
  }

  abort(): void {
    try { closeSync(this.fd); } catch { /* closed */ }
    rmSync(this.tmp, { force: true });
  }
}

async function dumpFrom(db: Knex, out: BackupWriter, source: BackupHeader['source'], masterKey: BackupMasterKeyVersion[]): Promise<Record<string, number>> {
  const tables = (await tablesOf(db)).filter((t) => !TRANSIENT_TABLES.has(t));
  const header: BackupHeader = {
    format: BACKUP_FORMAT, formatVersion: BACKUP_FORMAT_VERSION, created: new Date().toISOString(), source,
    migrations: await completedMigrations(db), masterKey, tables,
  };
  out.line(header);
  const counts: Record<string, number> = {};
  for (const table of tables) {
    counts[table] = 0;
    for (let offset = 0; ; offset += PAGE) {
      const rows: Row[] = await db(table).select('*').orderByRaw('1').limit(PAGE).offset(offset);
      for (const r of rows) out.line([table, encode(r)]);
      counts[table] += rows.length;
      out.rows += rows.length;
      if (rows.length < PAGE) break;
    }
  }
  return counts;
}

async function masterKeyOf(db: Knex): Promise<BackupMasterKeyVersion[]> {
  if (!(await db.schema.hasTable('kms_master_key_versions'))) return [];
  const rows: Row[] = await db('kms_master_key_versions').orderBy('version').select('version', 'state', 'check_value', 'sealed_key');
  return rows.map((r) => ({ version: Number(r.version), state: String(r.state), checkValue: String(r.check_value), sealedKey: (r.sealed_key as string | null) ?? null }));
}

/**
 * Writes a consistent snapshot of the database to `file` (mode 0600; refused if it exists). SQLite:
 * the online backup API copies the database beside the file while the server keeps writing, and the
 * copy is read and removed. MariaDB: every table is read inside one REPEATABLE READ transaction.
 */
export async function writeBackup(db: Knex, file: string): Promise<BackupSummary> {
  if (existsSync(file)) throw new Error(`${file} exists; choose a new file name`);
  const out = new BackupWriter(file);
  try {
    let rows: Record<string, number>;
    if (isMysql(db)) {
      const trx = await db.transaction({ isolationLevel: 'repeatable read' });
      try {
        rows = await dumpFrom(trx, out, 'mysql', await masterKeyOf(trx));
      } finally {
        await trx.rollback().catch(() => undefined);
      }
    } else {
      const copy = join(dirname(file), `.${process.pid}.${Date.now()}.snapshot.sqlite`);
      closeSync(openSync(copy, 'wx', 0o600)); // the copy is owner-only from its first byte
      const conn = (await (db.client as { acquireConnection(): Promise<{ backup(to: string): Promise<unknown> }> }).acquireConnection());
      try {
        await conn.backup(copy);
      } finally {
        await (db.client as { releaseConnection(c: unknown): Promise<void> }).releaseConnection(conn);
      }
      const snap = knexFactory({ client: 'better-sqlite3', connection: { filename: copy, readonly: true } as Knex.Sqlite3ConnectionConfig, useNullAsDefault: true });
      try {
        rows = await dumpFrom(snap, out, 'sqlite', await masterKeyOf(snap));
      } finally {
        await snap.destroy();
        for (const f of [copy, `${copy}-wal`, `${copy}-shm`]) rmSync(f, { force: true });
      }
    }
    out.finish();
    return { file, rows };
  } catch (e) {
    out.abort();
    throw e;
  }
}

/** A backup file read and checked: its header and its rows by table. */
export interface ParsedBackup {
  header: BackupHeader;
  rows: Map<string, Row[]>;
  count: number;
}

/** Reads a backup file whole, refusing anything that is not a complete, unaltered backup (BackupRefused, saying why). */
export function readBackup(file: string): ParsedBackup {
  if (!existsSync(file)) throw new BackupRefused(`${file} does not exist`);
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const parse = (line: string | undefined): unknown => {
    try {
      return line === undefined ? undefined : JSON.parse(line);
    } catch {
      return undefined;
    }
  };
  const header = parse(lines[0]) as Partial<BackupHeader> | undefined;
  if (!header || typeof header !== 'object' || header.format !== BACKUP_FORMAT) {
    throw new BackupRefused(`${file} is not a backup of this server: its first line is not a ${BACKUP_FORMAT} header (make one with npm run admin -- backup FILE)`);
  }
  if (header.formatVersion !== BACKUP_FORMAT_VERSION) throw new BackupRefused(`${file} has backup format version ${String(header.formatVersion)}; this server reads version ${BACKUP_FORMAT_VERSION}`);
  const trailer = parse(lines.at(-1)) as Partial<BackupTrailer> | undefined;
  if (lines.length < 2 || !trailer || trailer.end !== true) throw new BackupRefused(`${file} is incomplete: it has no end line (the backup was cut short or the file truncated)`);
  const hash = createHash('sha256');
  for (const l of lines.slice(0, -1)) hash.update(`${l}\n`);
  if (hash.digest('hex') !== trailer.sha256) throw new BackupRefused(`${file} was altered or damaged: its content does not match the checksum of its end line`);
  const rows = new Map<string, Row[]>((header.tables ?? []).map((t) => [t, []]));
  for (const l of lines.slice(1, -1)) {
    const [table, row] = JSON.parse(l) as [string, Row];
    const list = rows.get(table);
    if (!list) throw new BackupRefused(`${file} has a row of table ${table}, which its header does not list`);
    list.push(decode(row));
  }
  const count = lines.length - 2;
  if (count !== trailer.rows) throw new BackupRefused(`${file} holds ${count} rows but its end line says ${String(trailer.rows)}`);
  return { header: header as BackupHeader, rows, count };
}

/** Columns per INSERT statement at most (SQLite's bound-variable limit is far above; MariaDB's packet too). */
const MAX_VALUES_PER_INSERT = 900;

/**
 * Loads a parsed backup into the database of `opts`, which must be new or empty: the schema is
 * brought to the backup's migrations, the rows inserted in one transaction (foreign keys checked at
 * its end), then the schema migrated to this server's latest. Refuses (BackupRefused) a database
 * holding rows, a backup made by a newer server, or a database at a newer schema than the backup.
 */
export async function restoreBackup(opts: { databaseUrl?: string; dataDir: string }, backup: ParsedBackup): Promise<Record<string, number>> {
  const known = migrationNames();
  const made = backup.header.migrations;
  const unknown = made.find((m, i) => known[i] !== m);
  if (unknown) throw new BackupRefused(`The backup was made by another version of the server (its schema migration ${unknown} is not this server's); restore it with that version`);
  const config = knexConfig(opts);
  if (opts.databaseUrl) await ensureMysqlDatabase(config);
  const db = knexFactory(config);
  try {
    let done = await completedMigrations(db);
    if (done.length > made.length || done.some((m, i) => made[i] !== m)) {
      throw new BackupRefused('The target database has a newer schema than the backup; restore into a new, empty database');
    }
    // New: no node has set it up (migrations seed a few rows, e.g. disk offerings, which the backup's replace).
    const present = new Set(await tablesOf(db));
    for (const t of DEPLOYMENT_TABLES) {
      if (!present.has(t)) continue;
      const n = Number(((await db(t).count({ n: '*' }).first()) as { n: number | string }).n);
      if (n > 0) throw new BackupRefused(`The target database is not empty (table ${t} has ${n} rows); restore into a new, empty database`);
    }
    while (done.length < made.length) {
      await db.migrate.up();
      done = await completedMigrations(db);
    }
    const counts: Record<string, number> = {};
    await db.transaction(async (trx) => {
      if (isMysql(trx)) await trx.raw('SET FOREIGN_KEY_CHECKS = 0');
      else await trx.raw('PRAGMA defer_foreign_keys = ON');
      for (const table of backup.header.tables) await trx(table).delete();
      for (const table of backup.header.tables) {
        const rows = backup.rows.get(table) ?? [];
        counts[table] = rows.length;
        if (!rows.length) continue;
        const per = Math.max(1, Math.floor(MAX_VALUES_PER_INSERT / Object.keys(rows[0]!).length));
        for (let i = 0; i < rows.length; i += per) await trx(table).insert(rows.slice(i, i + per));
      }
      if (isMysql(trx)) await trx.raw('SET FOREIGN_KEY_CHECKS = 1');
    });
    await db.migrate.latest();
    return counts;
  } finally {
    await db.destroy();
  }
}
