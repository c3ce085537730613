import type { Knex } from 'knex';
import { NAME_KEY_MAX, nameKey } from '../columns';

/**
 * Two things of CloudStack fidelity, round 3 (issue #24):
 *
 * - `configuration_scoped`: a setting's value in one zone, domain or account (CloudStack keeps
 *   them in data_center_details, domain_details and account_details). A setting has such values only
 *   for the scopes it declares (src/config/settings.ts).
 * - One rule for case on both databases. API keys match exactly (MariaDB: `user.api_key` becomes
 *   utf8mb4_bin; SQLite already compared exactly). Usernames and account names match whatever their
 *   case, as CloudStack does on its MySQL schema (utf8 tables, general_ci): each gets a key column
 *   (`user.username_key`, `account.account_name_key`: the name lower-cased by src/db/columns.ts
 *   `nameKey`, binary on MariaDB, indexed) that every lookup compares, so accents stay distinct and
 *   both databases follow one rule through an index.
 *
 * Existing rows that the new comparison would make equal (two users `alice` and `Alice` of one
 * domain, made on SQLite where names compared exactly) stop the migration with the list: an
 * operator renames one of each pair first, as do names whose key would exceed 255 characters.
 * Nothing is changed then.
 *
 * MariaDB does not roll DDL back: every step is guarded (table, column, index already there), so a
 * run that failed half-way can simply be run again.
 */
export async function up(knex: Knex): Promise<void> {
  await refuseCollisions(knex);
  if (!(await knex.schema.hasTable('configuration_scoped'))) await knex.schema.createTable('configuration_scoped', (t) => {
    t.string('name', 255).notNullable();
    t.string('scope', 16).notNullable(); // zone | domain | account
    t.integer('scope_id').unsigned().notNullable();
    t.string('value', 4096).nullable();
    t.bigInteger('updated').notNullable();
    t.primary(['name', 'scope', 'scope_id']);
  });
  if (!(await knex.schema.hasColumn('user', 'username_key'))) await knex.schema.alterTable('user', (t) => { t.string('username_key', 255).nullable(); });
  if (!(await knex.schema.hasColumn('account', 'account_name_key'))) await knex.schema.alterTable('account', (t) => { t.string('account_name_key', 255).nullable(); });
  if (knex.client.config.client === 'mysql2') {
    await knex.raw('ALTER TABLE `user` MODIFY `api_key` VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL, MODIFY `username_key` VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL');
    await knex.raw('ALTER TABLE `account` MODIFY `account_name_key` VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL');
  }
  for (const u of await knex('user').select('id', 'username') as Array<{ id: number; username: string }>) {
    await knex('user').where({ id: u.id }).update({ username_key: nameKey(u.username) });
  }
  for (const a of await knex('account').select('id', 'account_name') as Array<{ id: number; account_name: string }>) {
    await knex('account').where({ id: a.id }).update({ account_name_key: nameKey(a.account_name) });
  }
  if (!(await hasIndex(knex, 'user', 'user_username_key_index'))) await knex.schema.alterTable('user', (t) => { t.index(['username_key']); });
  if (!(await hasIndex(knex, 'account', 'account_domain_id_account_name_key_index'))) await knex.schema.alterTable('account', (t) => { t.index(['domain_id', 'account_name_key']); });
  // A row without its key could never be found by name: refused loudly on both databases.
  if (knex.client.config.client === 'mysql2') {
    await knex.raw('ALTER TABLE `user` MODIFY `username_key` VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL');
    await knex.raw('ALTER TABLE `account` MODIFY `account_name_key` VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL');
  } else {
    for (const [table, column, name] of KEY_COLUMNS) {
      await knex.raw(`CREATE TRIGGER \`${table}_${column}_required\` BEFORE INSERT ON \`${table}\` WHEN NEW.\`${column}\` IS NULL
        BEGIN SELECT RAISE(ABORT, '${table}.${column} is required (migration 012): the ${name} lower-cased'); END`);
      await knex.raw(`CREATE TRIGGER \`${table}_${column}_kept\` BEFORE UPDATE ON \`${table}\` WHEN NEW.\`${column}\` IS NULL
        BEGIN SELECT RAISE(ABORT, '${table}.${column} is required (migration 012): the ${name} lower-cased'); END`);
    }
  }
}

/** Whether `table` has the index `name` (knex's default names). */
async function hasIndex(knex: Knex, table: string, name: string): Promise<boolean> {
  if (knex.client.config.client === 'mysql2') {
    const [rows] = await knex.raw('SHOW INDEX FROM ?? WHERE Key_name = ?', [table, name]);
    return (rows as unknown[]).length > 0;
  }
  const rows: unknown[] = await knex.raw("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND name = ?", [table, name]);
  return rows.length > 0;
}

const KEY_COLUMNS: ReadonlyArray<[string, string, string]> = [['user', 'username_key', 'username'], ['account', 'account_name_key', 'account name']];

export async function down(knex: Knex): Promise<void> {
  if (knex.client.config.client !== 'mysql2') {
    for (const [table, column] of KEY_COLUMNS) {
      await knex.raw(`DROP TRIGGER IF EXISTS \`${table}_${column}_required\``);
      await knex.raw(`DROP TRIGGER IF EXISTS \`${table}_${column}_kept\``);
    }
  }
  await knex.schema.alterTable('user', (t) => { t.dropIndex(['username_key']); });
  await knex.schema.alterTable('account', (t) => { t.dropIndex(['domain_id', 'account_name_key']); });
  await knex.schema.alterTable('user', (t) => { t.dropColumn('username_key'); });
  await knex.schema.alterTable('account', (t) => { t.dropColumn('account_name_key'); });
  await knex.schema.dropTableIfExists('configuration_scoped');
}

/** Throws, naming every pair, when live names of one domain differ only in case. */
async function refuseCollisions(knex: Knex): Promise<void> {
  const users: Array<{ username: string; domain_id: number }> = await knex('user as u').join('account as a', 'a.id', 'u.account_id')
    .whereNull('u.removed').whereNull('a.removed').select('u.username', 'a.domain_id');
  const accounts: Array<{ account_name: string; domain_id: number }> = await knex('account').whereNull('removed').select('account_name', 'domain_id');
  const tooLong = [
    ...users.map((u) => ({ what: 'username', name: u.username })),
    ...accounts.map((a) => ({ what: 'account name', name: a.account_name })),
  ].filter((r) => nameKey(r.name).length > NAME_KEY_MAX)
    .map((r) => `${r.what} ${JSON.stringify(r.name)} is ${nameKey(r.name).length} characters once lower-cased (at most ${NAME_KEY_MAX})`);
  const problems = [
    ...tooLong,
    ...clashes(users.map((u) => ({ name: u.username, domainId: Number(u.domain_id) })), 'usernames'),
    ...clashes(accounts.map((a) => ({ name: a.account_name, domainId: Number(a.domain_id) })), 'account names'),
  ];
  if (problems.length) {
    throw new Error(`Migration 012 stopped: names that differ only in case would become the same name (CloudStack compares them case-insensitively), or would not fit their key column. Rename one of each pair and each name too long, then start again: ${problems.join('; ')}`);
  }
}

function clashes(rows: ReadonlyArray<{ name: string; domainId: number }>, what: string): string[] {
  const seen = new Map<string, string[]>();
  for (const r of rows) {
    const key = `${r.domainId}\u0000${nameKey(r.name)}`;
    seen.set(key, [...(seen.get(key) ?? []), r.name]);
  }
  return [...seen.entries()].filter(([, names]) => names.length > 1)
    .map(([key, names]) => `${what} ${names.map((n) => JSON.stringify(n)).join(' and ')} in domain id ${key.split('\u0000')[0]}`);
}
