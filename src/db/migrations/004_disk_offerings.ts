import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';

/**
 * Disk offerings (CloudStack's `disk_offering`): in CloudStack encryption is a property of the
 * offering, and createVolume names one. Volumes remember their offering, and which migration job
 * moved them to KMS (so a job taken over by another worker still reports every volume it migrated).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('disk_offering', (t) => {
    t.increments('id');
    t.string('uuid', 40).notNullable().unique();
    t.string('name', 255).notNullable();
    t.string('display_text', 4096).notNullable();
    t.bigInteger('disk_size_gb').notNullable().defaultTo(0); // 0 when customized
    t.boolean('customized').notNullable().defaultTo(false);
    t.boolean('encrypt').notNullable().defaultTo(false);
    t.string('state', 16).notNullable().defaultTo('Active');
    t.string('storage_type', 16).notNullable().defaultTo('shared');
    t.string('provisioning_type', 16).notNullable().defaultTo('thin');
    t.string('cache_mode', 32).notNullable().defaultTo('none');
    t.boolean('disk_size_strictness').notNullable().defaultTo(false);
    t.string('tags', 4096).nullable();
    t.text('qos').nullable(); // JSON: IOPS and byte-rate limits as given (not enforced: no hypervisor here)
    t.text('domain_ids').nullable(); // comma-separated domain ids; null = every domain
    t.text('zone_ids').nullable(); // comma-separated zone ids; null = every zone
    t.bigInteger('created').notNullable();
    t.bigInteger('removed').nullable();
    t.index(['state', 'removed']);
  });
  await knex.schema.alterTable('volumes', (t) => {
    t.integer('disk_offering_id').unsigned().nullable(); // disk_offering.id (no FK: SQLite cannot add one to an existing table)
    t.string('kms_migration_job', 40).nullable();
    t.index(['kms_migration_job']);
  });
  // CloudStack's four default offerings, so a fresh server's create-volume form has choices.
  const now = Date.now();
  await knex('disk_offering').insert([
    { name: 'Small', display_text: 'Small Disk, 5 GB', disk_size_gb: 5, customized: false },
    { name: 'Medium', display_text: 'Medium Disk, 20 GB', disk_size_gb: 20, customized: false },
    { name: 'Large', display_text: 'Large Disk, 100 GB', disk_size_gb: 100, customized: false },
    { name: 'Custom', display_text: 'Custom Disk', disk_size_gb: 0, customized: true },
  ].map((o) => ({ ...o, uuid: randomUUID(), created: now })));
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('volumes', (t) => {
    t.dropIndex(['kms_migration_job']);
    t.dropColumn('disk_offering_id');
    t.dropColumn('kms_migration_job');
  });
  await knex.schema.dropTable('disk_offering');
}
