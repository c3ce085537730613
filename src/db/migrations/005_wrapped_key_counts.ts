import type { Knex } from 'knex';

/**
 * Live wrapped keys per KEK version, kept in the same transactions that add, move or remove them
 * (src/kms/wrapped-keys.ts adjustWrappedKeyCount), so listKMSKeys and rewrap progress read a
 * number instead of counting a table that grows with the fleet. Filled from the table once here.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('kms_kek_versions', (t) => {
    t.integer('wrapped_keys').notNullable().defaultTo(0);
  });
  await knex('kms_kek_versions').update({
    wrapped_keys: knex('kms_wrapped_key as w').whereRaw('w.kek_version_id = kms_kek_versions.id').whereNull('w.removed').count('*'),
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('kms_kek_versions', (t) => {
    t.dropColumn('wrapped_keys');
  });
}
