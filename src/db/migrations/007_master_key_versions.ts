import type { Knex } from 'knex';

/**
 * Versioned master keys and the nodes that hold them (README "The master key").
 *
 * - `kms_master_key_versions`: one row per master-key version. `check_value` is a known text
 *   encrypted under that version, so a node can tell which version a key it was given is; the
 *   key itself is never stored, except `sealed_key`: the key wrapped (RFC 5649) by a KEK in a
 *   PKCS#11 token, when the master key is sealed.
 * - `kms_node`: a heartbeat per running API or worker process, announcing the versions it holds
 *   and the one it writes with. Rotation starts only when every live node holds the new version.
 *
 * Values already encrypted under the master key (format `v1:`) are version 1. They are rewritten in
 * place, with the version in their authenticated data, by the first start that holds the key
 * (src/kms/master-key-rotation.ts, `upgradeLegacyValues`): a migration cannot, as it has no key.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('kms_master_key_versions', (t) => {
    t.integer('version').primary();
    t.string('state', 16).notNullable(); // Pending | Active | Previous | Retired
    t.string('check_value', 255).notNullable();
    t.text('sealed_key').nullable(); // base64 of the KWP-wrapped key; null when not sealed
    t.string('seal_key_label', 255).nullable();
    t.bigInteger('created').notNullable();
    t.bigInteger('activated').nullable();
    t.bigInteger('retired').nullable();
  });
  await knex.schema.createTable('kms_node', (t) => {
    t.string('id', 64).primary(); // the process's management-server id
    t.string('role', 16).notNullable();
    t.string('host', 255).notNullable();
    t.integer('pid').notNullable();
    t.string('key_versions', 255).notNullable(); // comma-separated versions held, e.g. "1,2"
    t.integer('write_version').notNullable();
    t.bigInteger('started').notNullable();
    t.bigInteger('last_seen').notNullable();
    t.index(['last_seen']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('kms_node');
  await knex.schema.dropTableIfExists('kms_master_key_versions');
}
