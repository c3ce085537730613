import type { Knex } from 'knex';

/**
 * The KMS tables of CloudStack 4.23 (reference/cloudstack-kms-4.23.md §2), plus the legacy
 * passphrase table and volumes. Wrapped keys carry their owner's uuid, which is part of the AAD.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('kms_hsm_profiles', (t) => {
    t.increments('id');
    t.string('uuid', 40).notNullable().unique();
    t.string('name', 255).notNullable();
    t.string('protocol', 32).notNullable();
    t.integer('account_id').unsigned().nullable().references('id').inTable('account');
    t.integer('domain_id').unsigned().nullable().references('id').inTable('domain');
    t.integer('zone_id').unsigned().nullable().references('id').inTable('data_center');
    t.string('vendor_name', 64).nullable();
    t.boolean('enabled').notNullable().defaultTo(true);
    t.boolean('is_public').notNullable().defaultTo(false);
    t.bigInteger('created').notNullable();
    t.bigInteger('removed').nullable();
    t.index(['protocol', 'enabled', 'removed']);
    t.index(['account_id', 'domain_id', 'zone_id', 'removed']);
  });
  await knex.schema.createTable('kms_hsm_profile_details', (t) => {
    t.increments('id');
    t.integer('profile_id').unsigned().notNullable().references('id').inTable('kms_hsm_profiles').onDelete('CASCADE');
    t.string('name', 255).notNullable();
    t.text('value').notNullable(); // sensitive values encrypted under the master key
    t.unique(['profile_id', 'name']);
  });
  await knex.schema.createTable('kms_keys', (t) => {
    t.increments('id');
    t.string('uuid', 40).notNullable().unique();
    t.string('name', 255).notNullable();
    t.string('description', 1024).nullable();
    t.string('kek_label', 255).notNullable();
    t.string('purpose', 32).notNullable().defaultTo('volume');
    t.integer('account_id').unsigned().notNullable().references('id').inTable('account');
    t.integer('domain_id').unsigned().notNullable().references('id').inTable('domain');
    t.integer('zone_id').unsigned().notNullable().references('id').inTable('data_center');
    t.string('algorithm', 64).notNullable().defaultTo('AES/GCM/NoPadding');
    t.integer('key_bits').notNullable().defaultTo(256);
    t.boolean('enabled').notNullable().defaultTo(true);
    t.integer('hsm_profile_id').unsigned().notNullable().references('id').inTable('kms_hsm_profiles');
    t.bigInteger('created').notNullable();
    t.bigInteger('removed').nullable();
    t.index(['account_id', 'purpose', 'enabled']);
    t.index(['domain_id', 'purpose', 'enabled']);
    t.index(['zone_id', 'enabled']);
  });
  await knex.schema.createTable('kms_kek_versions', (t) => {
    t.increments('id');
    t.string('uuid', 40).notNullable().unique();
    t.integer('kms_key_id').unsigned().notNullable().references('id').inTable('kms_keys');
    t.integer('version_number').notNullable();
    t.string('kek_label', 255).notNullable();
    t.string('status', 32).notNullable().defaultTo('Active'); // Active | Previous | Archived
    t.integer('key_bits').notNullable().defaultTo(256);
    t.integer('hsm_profile_id').unsigned().notNullable().references('id').inTable('kms_hsm_profiles');
    t.bigInteger('created').notNullable();
    t.bigInteger('archived').nullable();
    t.bigInteger('removed').nullable();
    t.unique(['kms_key_id', 'version_number']);
    t.index(['kms_key_id', 'status']);
    t.index(['kek_label']);
  });
  await knex.schema.createTable('kms_wrapped_key', (t) => {
    t.increments('id');
    t.string('uuid', 40).notNullable().unique();
    t.integer('kms_key_id').unsigned().notNullable().references('id').inTable('kms_keys');
    t.integer('kek_version_id').unsigned().notNullable().references('id').inTable('kms_kek_versions');
    t.integer('zone_id').unsigned().notNullable().references('id').inTable('data_center');
    t.string('owner_uuid', 40).notNullable(); // the volume this DEK belongs to; part of the AAD
    t.binary('wrapped_blob', 4096).notNullable();
    t.string('claim_owner', 64).nullable(); // rewrap worker lease
    t.bigInteger('claim_expires').nullable();
    t.bigInteger('created').notNullable();
    t.bigInteger('updated').nullable();
    t.bigInteger('removed').nullable();
    t.index(['kek_version_id', 'removed']);
    t.index(['kms_key_id', 'removed']);
  });
  await knex.schema.createTable('passphrase', (t) => {
    t.increments('id');
    t.string('uuid', 40).notNullable().unique();
    t.text('passphrase').notNullable(); // encrypted under the master key, aad = "passphrase:<uuid>"
    t.bigInteger('created').notNullable();
  });
  await knex.schema.createTable('volumes', (t) => {
    t.increments('id');
    t.string('uuid', 40).notNullable().unique();
    t.string('name', 255).notNullable();
    t.integer('account_id').unsigned().notNullable().references('id').inTable('account');
    t.integer('domain_id').unsigned().notNullable().references('id').inTable('domain');
    t.integer('zone_id').unsigned().notNullable().references('id').inTable('data_center');
    t.bigInteger('size').notNullable().defaultTo(0);
    t.string('state', 32).notNullable().defaultTo('Allocated');
    t.string('encrypt_format', 16).nullable();
    t.integer('passphrase_id').unsigned().nullable().references('id').inTable('passphrase');
    t.integer('kms_key_id').unsigned().nullable().references('id').inTable('kms_keys');
    t.integer('kms_wrapped_key_id').unsigned().nullable().references('id').inTable('kms_wrapped_key');
    t.bigInteger('created').notNullable();
    t.bigInteger('removed').nullable();
    t.index(['account_id', 'removed']);
    t.index(['zone_id', 'removed']);
    t.index(['kms_key_id', 'removed']);
    t.index(['passphrase_id']);
  });
  await knex.schema.createTable('kms_database_kek_objects', (t) => {
    t.increments('id');
    t.string('uuid', 40).notNullable().unique();
    t.string('object_class', 32).notNullable().defaultTo('CKO_SECRET_KEY');
    t.string('label', 255).notNullable();
    t.string('key_type', 32).notNullable().defaultTo('CKK_AES');
    t.text('key_material').notNullable(); // the KEK encrypted under the master key, aad = label
    t.integer('key_bits').notNullable();
    t.boolean('is_sensitive').notNullable().defaultTo(true);
    t.boolean('is_extractable').notNullable().defaultTo(false);
    t.string('purpose', 32).notNullable().defaultTo('volume');
    t.bigInteger('created').notNullable();
    t.bigInteger('last_used').nullable();
    t.bigInteger('removed').nullable();
    t.index(['label', 'removed']);
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const t of ['kms_database_kek_objects', 'volumes', 'passphrase', 'kms_wrapped_key', 'kms_kek_versions', 'kms_keys', 'kms_hsm_profile_details', 'kms_hsm_profiles']) {
    await knex.schema.dropTableIfExists(t);
  }
}
