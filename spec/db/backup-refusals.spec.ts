/**
 * A backup file is not trusted: its checksum is unkeyed, so anyone can write one. restore writes
 * only the rows of this schema's own tables and columns, refuses everything else (saying which
 * table or column) and writes nothing then; bad lines, a malformed header and over-long lines are
 * refused, not crashed on; rows whose foreign keys point nowhere are refused before commit. The
 * recorded migrations are compared as a set (branches land out of number order).
 */
import knexFactory, { type Knex } from 'knex';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestDb, type TestDb } from '../support/db';
import { BackupRefused, readBackup, restoreBackup, writeBackup, type ParsedBackup } from '../../src/db/backup';
import { knexConfig } from '../../src/db/knex';
import { migrationNames } from '../../src/db/migrations';
import { backupMasterKeyVersions } from '../../src/cli/admin';

/** A new, never-migrated target database (SQLite dir or a MariaDB name that does not exist yet). */
function newTarget(): { opts: { databaseUrl?: string; dataDir: string }; drop(): Promise<void> } {
  const dataDir = mkdtempSync(join(tmpdir(), 'kms-restore-'));
  const base = process.env.KMS_TEST_DATABASE_URL;
  if (!base) return { opts: { dataDir }, drop: async () => rmSync(dataDir, { recursive: true, force: true }) };
  const url = new URL(base);
  const name = `kms_test_${randomBytes(5).toString('hex')}`;
  url.pathname = `/${name}`;
  return {
    opts: { databaseUrl: url.toString(), dataDir },
    drop: async () => {
      const u = new URL(base);
      const a = knexFactory({ client: 'mysql2', connection: { host: u.hostname, port: Number(u.port || 3306), user: decodeURIComponent(u.username || 'root'), password: decodeURIComponent(u.password) } });
      await a.raw(`DROP DATABASE IF EXISTS \`${name}\``);
      await a.destroy();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Writes lines as a backup file with a correct (unkeyed) checksum trailer, as an attacker could. */
function craft(file: string, header: unknown, rows: unknown[], rawLines: string[] = []): string {
  const lines = [JSON.stringify(header), ...rows.map((r) => JSON.stringify(r)), ...rawLines];
  const text = lines.map((l) => `${l}\n`).join('');
  const sha256 = createHash('sha256').update(text).digest('hex');
  writeFileSync(file, `${text}${JSON.stringify({ end: true, rows: lines.length - 1, sha256 })}\n`);
  return file;
}

describe('restore of a crafted backup file', () => {
  let src: TestDb;
  let dir: string;
  let genuine: string;
  let header: any;
  let lines: any[];
  const targets: Array<{ drop(): Promise<void> }> = [];
  const target = () => { const t = newTarget(); targets.push(t); return t.opts; };
  const count = async (opts: { databaseUrl?: string; dataDir: string }, table: string): Promise<number> => {
    const db: Knex = knexFactory(knexConfig(opts));
    try {
      if (!(await db.schema.hasTable(table))) return 0;
      return Number(((await db(table).count({ n: '*' }).first()) as { n: number | string }).n);
    } catch (e) {
      if ((e as { code?: string }).code === 'ER_BAD_DB_ERROR') return 0; // refused before the database was created
      throw e;
    } finally {
      await db.destroy();
    }
  };

  beforeAll(async () => {
    src = await createTestDb();
    dir = mkdtempSync(join(tmpdir(), 'kms-crafted-'));
    await src.db('domain').insert({ uuid: 'd-root', name: 'ROOT', path: '/', level: 0, created: 1 });
    genuine = (await writeBackup(src.db, join(dir, 'genuine.backup'))).file;
    const all = readFileSync(genuine, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
    header = all[0];
    lines = all.slice(1, -1);
  });
  afterAll(async () => {
    for (const t of targets) await t.drop();
    await src.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it.each([
    ['http_session', { id: 'planted', user_id: 1 }],
    ['knex_migrations', { id: 99, name: 'x' }],
    ['kms_lock', { name: 'x' }],
    ['kms_node', { id: 1 }],
    ['otherdb.secrets', { id: 1 }],
    ['no_such_table', { id: 1 }],
  ])('refuses a file naming table %s, and writes nothing', async (table, row) => {
    const file = craft(join(dir, `t-${table}.backup`), { ...header, tables: [...header.tables, table] }, [...lines, [table, row]]);
    const parsed = await readBackup(file);
    const opts = target();
    await expect(restoreBackup(opts, parsed)).rejects.toThrow(new BackupRefused(`The backup is refused: table ${table} is not a table of this schema`));
    expect(await count(opts, 'domain')).toBe(0);
    expect(await count(opts, 'http_session')).toBe(0);
  });

  it('refuses a row with a column its table does not have, and writes nothing; the genuine file then restores', async () => {
    const file = craft(join(dir, 'col.backup'), header, [...lines, ['domain', { id: 7, uuid: 'd7', name: 'x', path: '/x/', level: 1, created: 1, evil: 1 }]]);
    const opts = target();
    await expect(restoreBackup(opts, await readBackup(file))).rejects.toThrow(/^The backup is refused: column evil is not a column of table domain$/);
    expect(await count(opts, 'domain')).toBe(0);
    const counts = await restoreBackup(opts, await readBackup(genuine));
    expect(counts.domain).toBe(1);
  });

  it('refuses rows whose foreign key names no row, before anything commits', async () => {
    const file = craft(join(dir, 'fk.backup'), header, [...lines, ['domain', { id: 8, uuid: 'd8', name: 'orphan', path: '/o/', level: 1, parent_id: 4242, created: 1 }]]);
    const opts = target();
    await expect(restoreBackup(opts, await readBackup(file))).rejects.toThrow(/^The backup is refused: .*table domain.* refer.*domain.*nothing was restored$/);
    expect(await count(opts, 'domain')).toBe(0);
  });

  it.each([
    ['a line that is not JSON', ['{"not json']],
    ['a line that is not a row', ['[1, 2]']],
    ['a row of an array', ['["domain", [1]]']],
  ])('refuses %s as a BackupRefused', async (_what, raw) => {
    const file = craft(join(dir, `bad-${raw[0]!.length}.backup`), header, lines, raw);
    await expect(readBackup(file)).rejects.toThrow(/line \d+ is not a row of a backup/);
    await expect(readBackup(file)).rejects.toBeInstanceOf(BackupRefused);
  });

  it('refuses a header whose structure is wrong, and a line longer than the cap', async () => {
    await expect(readBackup(craft(join(dir, 'h1.backup'), { ...header, tables: 'domain' }, []))).rejects.toThrow(/malformed header: tables is not a list of names/);
    await expect(readBackup(craft(join(dir, 'h2.backup'), { ...header, tables: [1] }, []))).rejects.toThrow(/malformed header: tables is not a list of names/);
    await expect(readBackup(craft(join(dir, 'h3.backup'), { ...header, migrations: null }, []))).rejects.toThrow(/malformed header: migrations/);
    await expect(readBackup(craft(join(dir, 'h4.backup'), { ...header, masterKey: [{ version: 'x' }] }, []))).rejects.toThrow(/malformed header: masterKey/);
    await expect(readBackup(craft(join(dir, 'h5.backup'), { ...header, tables: ['domain', 'domain'] }, []))).rejects.toThrow(/malformed header: tables names a table twice/);
    await expect(readBackup(genuine, { maxLine: 64 })).rejects.toThrow(/has a line longer than 64 bytes/);
  });

  it('refuses a migration this server does not know, and restores an out-of-order history to exactly its set', async () => {
    const known = migrationNames();
    const unknown = craft(join(dir, 'm1.backup'), { ...header, migrations: [...known, '010_from_another_branch'] }, lines);
    await expect(restoreBackup(target(), await readBackup(unknown))).rejects.toThrow(/its schema migration 010_from_another_branch is not this server's/);

    // A deployment that ran the last migration before an earlier-numbered one had landed, then that one later (or not yet).
    const skipped = '006_async_job_request_id';
    const made = [...known.filter((m) => m !== skipped)].reverse();
    const file = craft(join(dir, 'm2.backup'), { ...header, migrations: made }, lines);
    const opts = target();
    const counts = await restoreBackup(opts, await readBackup(file));
    expect(counts.domain).toBe(1);
    const db: Knex = knexFactory(knexConfig(opts));
    try {
      const ran = (await db('knex_migrations').orderBy('id').select('name')).map((r: { name: string }) => r.name);
      expect(new Set(ran)).toEqual(new Set(known));
      // The backup's set first (the rows were loaded into it), the missing one after the load.
      expect(ran.at(-1)).toBe(skipped);
      expect(await db.schema.hasColumn('async_job', 'request_id')).toBe(true);
    } finally {
      await db.destroy();
    }
  });

  it('takes the master key versions from the rows: a header that differs or no live version with protected values is refused', () => {
    const mk = { version: 1, state: 'Active', check_value: 'cv', sealed_key: null, seal_key_label: null, created: 1 };
    const parsed = (masterKey: unknown[], rows: Record<string, unknown[]>): ParsedBackup => ({
      header: { ...header, masterKey }, rows: new Map(Object.entries(rows)) as ParsedBackup['rows'], count: 0,
    });
    const v1 = { version: 1, state: 'Active', checkValue: 'cv', sealedKey: null };
    expect(backupMasterKeyVersions(parsed([v1], { kms_master_key_versions: [mk], user: [{ id: 1 }] }))).toEqual([v1]);
    expect(() => backupMasterKeyVersions(parsed([], { kms_master_key_versions: [mk], user: [{ id: 1 }] }))).toThrow(/master key versions of its header differ from those of its rows/);
    expect(() => backupMasterKeyVersions(parsed([{ ...v1, state: 'Retired' }], { kms_master_key_versions: [mk] }))).toThrow(/differ from those of its rows/);
    expect(() => backupMasterKeyVersions(parsed([{ ...v1, state: 'Retired' }], { kms_master_key_versions: [{ ...mk, state: 'Retired' }], user: [{ id: 1 }] })))
      .toThrow(/holds protected values but no live master key version/);
    expect(() => backupMasterKeyVersions(parsed([], { user: [{ id: 1 }] }))).toThrow(/holds protected values but no live master key version/);
  });
});
