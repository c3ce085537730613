import knexFactory, { type Knex } from 'knex';
import { createHash } from 'node:crypto';
import { closeSync, createReadStream, existsSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
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

/** The longest line a backup may hold (a row is far below; a longer line is refused, not buffered). */
export const MAX_BACKUP_LINE = 16 * 1024 * 1024;

const isPlainObject = (v: unknown): v is Row => !!v && typeof v === 'object' && !Array.isArray(v);
const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

/** The header's structure, checked before any of it is used. */
function checkHeader(file: string, header: Partial<BackupHeader>): BackupHeader {
  const bad = (what: string): never => { throw new BackupRefused(`${file} has a malformed header: ${what}`); };
  if (typeof header.created !== 'string') bad('created is not a string');
  if (header.source !== 'sqlite' && header.source !== 'mysql') bad('source is neither sqlite nor mysql');
  if (!isStrings(header.migrations)) bad('migrations is not a list of names');
  if (!isStrings(header.tables)) bad('tables is not a list of names');
  if (new Set(header.tables).size !== header.tables!.length) bad('tables names a table twice');
  if (!Array.isArray(header.masterKey) || !header.masterKey.every((v: unknown) => isPlainObject(v)
    && Number.isInteger(v.version) && typeof v.state === 'string' && typeof v.checkValue === 'string' && (v.sealedKey === null || typeof v.sealedKey === 'string'))) {
    bad('masterKey is not a list of versions');
  }
  return header as BackupHeader;
}

/** The lines of a file, streamed (never the whole file in one string), each at most MAX_BACKUP_LINE bytes. */
async function* linesOf(file: string, maxLine: number): AsyncGenerator<string> {
  let pending: Buffer[] = [];
  let pendingLen = 0;
  for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) {
    let from = 0;
    for (let nl = chunk.indexOf(10, from); nl !== -1; nl = chunk.indexOf(10, from)) {
      if (pendingLen + nl - from > maxLine) throw new BackupRefused(`${file} has a line longer than ${maxLine} bytes: it is not a backup of this server`);
      pending.push(chunk.subarray(from, nl));
      yield Buffer.concat(pending).toString('utf8');
      pending = [];
      pendingLen = 0;
      from = nl + 1;
    }
    pending.push(chunk.subarray(from));
    pendingLen += chunk.length - from;
    if (pendingLen > maxLine) throw new BackupRefused(`${file} has a line longer than ${maxLine} bytes: it is not a backup of this server`);
  }
  if (pendingLen) yield Buffer.concat(pending).toString('utf8');
}

/**
 * Reads a backup file line by line (each hashed as it comes), refusing anything that is not a
 * complete, unaltered, well-formed backup (BackupRefused, saying why).
 */
export async function readBackup(file: string, opts: { maxLine?: number } = {}): Promise<ParsedBackup> {
  if (!existsSync(file)) throw new BackupRefused(`${file} does not exist`);
  const parse = (line: string | undefined): unknown => {
    try {
      return line === undefined ? undefined : JSON.parse(line);
    } catch {
      return undefined;
    }
  };
  const hash = createHash('sha256');
  let header: BackupHeader | undefined;
  let rows = new Map<string, Row[]>();
  let count = 0;
  let n = 0;
  let last: string | undefined;
  // Each line is used once the next one is read: the last is the end line, outside the checksum.
  const take = (line: string): void => {
    hash.update(`${line}\n`);
    n++;
    if (n === 1) {
      const h = parse(line) as Partial<BackupHeader> | undefined;
      if (!isPlainObject(h) || h.format !== BACKUP_FORMAT) {
        throw new BackupRefused(`${file} is not a backup of this server: its first line is not a ${BACKUP_FORMAT} header (make one with npm run admin -- backup FILE)`);
      }
      if (h.formatVersion !== BACKUP_FORMAT_VERSION) throw new BackupRefused(`${file} has backup format version ${String(h.formatVersion)}; this server reads version ${BACKUP_FORMAT_VERSION}`);
      header = checkHeader(file, h);
      rows = new Map(header.tables.map((t) => [t, []]));
      return;
    }
    const r = parse(line);
    if (!Array.isArray(r) || r.length !== 2 || typeof r[0] !== 'string' || !isPlainObject(r[1])) {
      throw new BackupRefused(`${file} line ${n} is not a row of a backup (["table", {column: value}])`);
    }
    const list = rows.get(r[0]);
    if (!list) throw new BackupRefused(`${file} has a row of table ${r[0]}, which its header does not list`);
    list.push(decode(r[1]));
    count++;
  };
  for await (const line of linesOf(file, opts.maxLine ?? MAX_BACKUP_LINE)) {
    if (last !== undefined) take(last);
    last = line;
  }
  if (n === 0) {
    // A one-line file: its only line is the header or nothing at all.
    if (last !== undefined) take(last);
    throw new BackupRefused(`${file} is incomplete: it has no end line (the backup was cut short or the file truncated)`);
  }
  const trailer = parse(last) as Partial<BackupTrailer> | undefined;
  if (!isPlainObject(trailer) || trailer.end !== true) throw new BackupRefused(`${file} is incomplete: it has no end line (the backup was cut short or the file truncated)`);
  if (hash.digest('hex') !== trailer.sha256) throw new BackupRefused(`${file} was altered or damaged: its content does not match the checksum of its end line`);
  if (count !== trailer.rows) throw new BackupRefused(`${file} holds ${count} rows but its end line says ${String(trailer.rows)}`);
  return { header: header!, rows, count };
}

/** Columns per INSERT statement at most (SQLite's bound-variable limit is far above; MariaDB's packet too). */
const MAX_VALUES_PER_INSERT = 900;

/**
 * The tables a backup may write: those of this schema (as migrated to the backup's migrations)
 * minus the transient ones. Any other name (another database's `db.table`, knex's own table, a
 * session table) is refused, and so is a row with a column the table does not have.
 */
async function checkTables(db: Knex, backup: ParsedBackup): Promise<void> {
  const allowed = new Set((await tablesOf(db)).filter((t) => !TRANSIENT_TABLES.has(t)));
  for (const table of backup.header.tables) {
    if (table.includes('.') || !allowed.has(table)) throw new BackupRefused(`The backup is refused: table ${table} is not a table of this schema`);
  }
  for (const table of backup.header.tables) {
    const columns = new Set(Object.keys(await db(table).columnInfo()));
    for (const row of backup.rows.get(table) ?? []) {
      const bad = Object.keys(row).find((c) => !columns.has(c));
      if (bad !== undefined) throw new BackupRefused(`The backup is refused: column ${bad} is not a column of table ${table}`);
    }
  }
}

/** Rows whose foreign key names no row (MariaDB does not re-check rows inserted with FOREIGN_KEY_CHECKS=0; SQLite's deferred check would fail the commit without saying which). */
async function checkForeignKeys(trx: Knex.Transaction): Promise<void> {
  if (!isMysql(trx)) {
    const orphans = (await trx.raw('PRAGMA foreign_key_check')) as Array<{ table: string; parent: string }>;
    if (orphans.length) throw new BackupRefused(`The backup is refused: a row of table ${orphans[0]!.table} refers to a row of ${orphans[0]!.parent} it does not hold (${orphans.length} such rows); nothing was restored`);
    return;
  }
  const [keys] = (await trx.raw(
    `SELECT constraint_name AS name, table_name AS child, column_name AS col, referenced_table_name AS parent, referenced_column_name AS ref
       FROM information_schema.key_column_usage
      WHERE table_schema = DATABASE() AND referenced_table_name IS NOT NULL
      ORDER BY constraint_name, ordinal_position`,
  )) as [Array<{ name: string; child: string; col: string; parent: string; ref: string }>];
  const byName = new Map<string, typeof keys>();
  for (const k of keys) byName.set(`${k.child}.${k.name}`, [...(byName.get(`${k.child}.${k.name}`) ?? []), k]);
  for (const cols of byName.values()) {
    const { child, parent } = cols[0]!;
    const q = trx({ c: child }).leftJoin({ p: parent }, (j) => { for (const k of cols) j.on(`c.${k.col}`, '=', `p.${k.ref}`); });
    for (const k of cols) q.whereNotNull(`c.${k.col}`);
    const n = Number(((await q.whereNull(`p.${cols[0]!.ref}`).count({ n: '*' }).first()) as { n: number | string }).n);
    if (n > 0) throw new BackupRefused(`The backup is refused: ${n} rows of table ${child} refer (${cols.map((k) => k.col).join(', ')}) to rows of ${parent} it does not hold; nothing was restored`);
  }
}

/**
 * Loads a parsed backup into the database of `opts`, which must be new or empty: the schema is
 * brought to exactly the backup's migrations (compared as sets: branches may land out of number
 * order), the rows of the schema's own tables inserted in one transaction (every foreign key
 * checked before it commits), then the schema migrated to this server's latest. Refuses
 * (BackupRefused) a database holding rows, a backup with a migration this server does not know,
 * a database with a migration the backup does not have, and a table or column not of the schema.
 */
export async function restoreBackup(opts: { databaseUrl?: string; dataDir: string }, backup: ParsedBackup): Promise<Record<string, number>> {
  const known = migrationNames();
  const made = new Set(backup.header.migrations);
  const unknown = [...made].find((m) => !known.includes(m));
  if (unknown) throw new BackupRefused(`The backup was made by another version of the server (its schema migration ${unknown} is not this server's); restore it with that version`);
  for (const table of backup.header.tables) {
    if (table.includes('.') || TRANSIENT_TABLES.has(table)) throw new BackupRefused(`The backup is refused: table ${table} is not a table of this schema`);
  }
  const config = knexConfig(opts);
  if (opts.databaseUrl) await ensureMysqlDatabase(config);
  const db = knexFactory(config);
  try {
    const done = new Set(await completedMigrations(db));
    if ([...done].some((m) => !made.has(m))) {
      throw new BackupRefused('The target database has a newer schema than the backup; restore into a new, empty database');
    }
    // New: no node has set it up (migrations seed a few rows, e.g. disk offerings, which the backup's replace).
    const present = new Set(await tablesOf(db));
    for (const t of DEPLOYMENT_TABLES) {
      if (!present.has(t)) continue;
      const n = Number(((await db(t).count({ n: '*' }).first()) as { n: number | string }).n);
      if (n > 0) throw new BackupRefused(`The target database is not empty (table ${t} has ${n} rows); restore into a new, empty database`);
    }
    // Exactly the backup's migrations, in this server's order (the one its deployment ran them in may differ).
    for (const name of known) if (made.has(name) && !done.has(name)) await db.migrate.up({ name });
    await checkTables(db, backup);
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
      await checkForeignKeys(trx);
      if (isMysql(trx)) await trx.raw('SET FOREIGN_KEY_CHECKS = 1');
    });
    await db.migrate.latest();
    return counts;
  } finally {
    await db.destroy();
  }
}

/**
 * What a database holds, read without creating, migrating or writing anything (for the admin
 * commands that must only run against an existing, current deployment): whether it exists, its
 * completed migrations, and its live master key versions.
 */
export async function inspectDeployment(opts: { databaseUrl?: string; dataDir: string }): Promise<{ exists: boolean; migrations: string[]; liveMasterKeyVersions: number }> {
  if (!opts.databaseUrl && !existsSync(join(opts.dataDir, 'kms.sqlite'))) return { exists: false, migrations: [], liveMasterKeyVersions: 0 };
  const config = knexConfig(opts);
  const db = knexFactory(config);
  try {
    const migrations = await completedMigrations(db);
    const live = (await db.schema.hasTable('kms_master_key_versions'))
      ? Number(((await db('kms_master_key_versions').whereNot({ state: 'Retired' }).count({ n: '*' }).first()) as { n: number | string }).n)
      : 0;
    return { exists: true, migrations, liveMasterKeyVersions: live };
  } catch (e) {
    if ((e as { code?: string }).code === 'ER_BAD_DB_ERROR') return { exists: false, migrations: [], liveMasterKeyVersions: 0 };
    throw e;
  } finally {
    await db.destroy();
  }
}
