import type { Knex } from 'knex';

/**
 * The live wrapped keys of a KEK version are kept as the sum of a few shard rows
 * (`kms_kek_version_counts`), not in one column of the version row: every volume creation raised
 * that one row, a hot row that writers on different Galera nodes conflict on at commit. A writer
 * adds its delta to a shard chosen at random (WRAPPED_KEY_COUNT_SHARDS), so concurrent writers
 * rarely touch the same row, and a reader sums the shards. Shard values may be negative (a removal
 * lands on any shard); only the sum means something. The old column's values move to shard 0.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('kms_kek_version_counts', (t) => {
    t.integer('kek_version_id').unsigned().notNullable().references('id').inTable('kms_kek_versions');
    t.integer('shard').notNullable();
    t.bigInteger('n').notNullable().defaultTo(0);
    t.primary(['kek_version_id', 'shard']);
  });
  await knex.into(knex.raw('?? (??, ??, ??)', ['kms_kek_version_counts', 'kek_version_id', 'shard', 'n']))
    .insert(knex('kms_kek_versions').where('wrapped_keys', '<>', 0).select('id', knex.raw('0'), 'wrapped_keys'));
  await knex.schema.alterTable('kms_kek_versions', (t) => {
    t.dropColumn('wrapped_keys');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('kms_kek_versions', (t) => {
    t.integer('wrapped_keys').notNullable().defaultTo(0);
  });
  await knex('kms_kek_versions').update({
    wrapped_keys: knex('kms_kek_version_counts as c').whereRaw('c.kek_version_id = kms_kek_versions.id').sum('c.n'),
  });
  await knex.schema.dropTable('kms_kek_version_counts');
}
