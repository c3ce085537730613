import type { Knex } from 'knex';

/**
 * A standby backend per KMS key (README "Standby HSM").
 *
 * - `kms_keys.standby_hsm_profile_id`: the second HSM profile of a key (null: no standby).
 * - `kms_kek_versions.standby_hsm_profile_id`, `standby_kek_label`: the standby KEK of a version,
 *   made in the standby profile when the version is made (or when a standby is added to its key).
 * - `kms_wrapped_key.standby_blob`: the same DEK wrapped by the standby KEK of the row's version,
 *   with the same AAD as `wrapped_blob` (null until the background fill reaches the row).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('kms_keys', (t) => {
    t.integer('standby_hsm_profile_id').unsigned().nullable();
  });
  await knex.schema.alterTable('kms_kek_versions', (t) => {
    t.integer('standby_hsm_profile_id').unsigned().nullable();
    t.string('standby_kek_label', 255).nullable();
  });
  await knex.schema.alterTable('kms_wrapped_key', (t) => {
    t.binary('standby_blob', 4096).nullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('kms_wrapped_key', (t) => t.dropColumn('standby_blob'));
  await knex.schema.alterTable('kms_kek_versions', (t) => {
    t.dropColumn('standby_kek_label');
    t.dropColumn('standby_hsm_profile_id');
  });
  await knex.schema.alterTable('kms_keys', (t) => t.dropColumn('standby_hsm_profile_id'));
}
