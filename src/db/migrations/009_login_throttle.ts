import type { Knex } from 'knex';

/**
 * Login throttling and revocation on every node at once.
 * - `login_throttle`: failed logins per key (a user, or a client address; the key is a SHA-256 hex
 *   of it, so a row has a fixed size whatever was sent), the time before which the next attempt is
 *   refused unchecked, and the last failure (rows idle past the window are pruned).
 * - `credential_version`: one row whose number moves with every change of a user's or account's
 *   state or API keys; each API node reads it with each request and drops its cached credentials
 *   when it moved.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('login_throttle', (t) => {
    t.string('throttle_key', 64).primary();
    t.integer('failures').notNullable();
    t.bigInteger('next_allowed').notNullable();
    t.bigInteger('last_failure').notNullable().index();
  });
  await knex.schema.createTable('credential_version', (t) => {
    t.integer('id').primary();
    t.bigInteger('version').notNullable();
  });
  await knex('credential_version').insert({ id: 1, version: 0 });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('credential_version');
  await knex.schema.dropTable('login_throttle');
}
