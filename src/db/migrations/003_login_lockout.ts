import type { Knex } from 'knex';

/**
 * Login lockout (`incorrect.login.attempts.allowed`): consecutive failed logins per user. On
 * MySQL, domain names and paths compare byte for byte, as on SQLite, so `Sales` and `sales` are
 * two domains on both databases and one can never be mistaken for the other.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('user', (t) => {
    t.integer('login_attempts').notNullable().defaultTo(0);
  });
  if (knex.client.config.client === 'mysql2') {
    await knex.raw('ALTER TABLE `domain` MODIFY `name` VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, MODIFY `path` VARCHAR(512) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL');
  }
}

export async function down(knex: Knex): Promise<void> {
  if (knex.client.config.client === 'mysql2') {
    await knex.raw('ALTER TABLE `domain` MODIFY `name` VARCHAR(255) NOT NULL, MODIFY `path` VARCHAR(512) NOT NULL');
  }
  await knex.schema.alterTable('user', (t) => {
    t.dropColumn('login_attempts');
  });
}
