import type { Knex } from 'knex';

/**
 * Identity, zones, sessions, events, settings and async jobs. Times are epoch milliseconds
 * (bigint) so SQLite and MySQL read back the same values; booleans are 0/1.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('domain', (t) => {
    t.increments('id');
    t.string('uuid', 40).notNullable().unique();
    t.string('name', 255).notNullable();
    t.string('path', 512).notNullable();
    t.integer('parent_id').unsigned().nullable().references('id').inTable('domain');
    t.integer('level').notNullable().defaultTo(0);
    t.string('network_domain', 255).nullable();
    t.bigInteger('created').notNullable();
    t.bigInteger('removed').nullable();
    t.index(['path']);
  });
  await knex.schema.createTable('account', (t) => {
    t.increments('id');
    t.string('uuid', 40).notNullable().unique();
    t.string('account_name', 255).notNullable();
    t.integer('type').notNullable(); // 0 user, 1 root admin, 2 domain admin (CloudStack Account.Type ordinal)
    t.integer('domain_id').unsigned().notNullable().references('id').inTable('domain');
    t.string('state', 16).notNullable().defaultTo('enabled');
    t.bigInteger('created').notNullable();
    t.bigInteger('removed').nullable();
    t.index(['domain_id', 'account_name']);
  });
  await knex.schema.createTable('user', (t) => {
    t.increments('id');
    t.string('uuid', 40).notNullable().unique();
    t.string('username', 255).notNullable();
    t.string('password', 255).notNullable(); // scrypt hash, never the password
    t.integer('account_id').unsigned().notNullable().references('id').inTable('account');
    t.string('firstname', 255).notNullable().defaultTo('');
    t.string('lastname', 255).notNullable().defaultTo('');
    t.string('email', 255).nullable();
    t.string('state', 16).notNullable().defaultTo('enabled');
    t.string('api_key', 255).nullable().unique();
    t.text('secret_key').nullable(); // encrypted under the master key
    t.string('timezone', 64).nullable();
    t.bigInteger('created').notNullable();
    t.bigInteger('removed').nullable();
    t.index(['username']);
  });
  await knex.schema.createTable('data_center', (t) => {
    t.increments('id');
    t.string('uuid', 40).notNullable().unique();
    t.string('name', 255).notNullable();
    t.string('description', 255).nullable();
    t.string('networktype', 16).notNullable().defaultTo('Advanced');
    t.string('allocation_state', 16).notNullable().defaultTo('Enabled');
    t.string('dns1', 255).nullable();
    t.string('internal_dns1', 255).nullable();
    t.integer('domain_id').unsigned().nullable().references('id').inTable('domain');
    t.bigInteger('created').notNullable();
    t.bigInteger('removed').nullable();
  });
  await knex.schema.createTable('http_session', (t) => {
    t.string('id', 64).primary(); // the JSESSIONID value before its ".node0" suffix
    t.string('session_key_hash', 64).notNullable(); // sha256 of the sessionkey, hex
    t.integer('user_id').unsigned().notNullable().references('id').inTable('user');
    t.bigInteger('created').notNullable();
    t.bigInteger('last_access').notNullable();
    t.integer('timeout_sec').notNullable();
  });
  await knex.schema.createTable('event', (t) => {
    t.increments('id');
    t.string('uuid', 40).notNullable().unique();
    t.string('type', 64).notNullable();
    t.string('state', 16).notNullable().defaultTo('Completed');
    t.string('level', 8).notNullable().defaultTo('INFO');
    t.string('description', 1024).notNullable();
    t.integer('user_id').unsigned().nullable();
    t.integer('account_id').unsigned().nullable();
    t.integer('domain_id').unsigned().nullable();
    t.string('resource_type', 32).nullable();
    t.string('resource_id', 40).nullable();
    t.bigInteger('created').notNullable();
    t.index(['account_id', 'created']);
    t.index(['type']);
  });
  await knex.schema.createTable('configuration', (t) => {
    t.string('name', 255).primary();
    t.string('value', 4096).nullable();
    t.bigInteger('updated').nullable();
  });
  await knex.schema.createTable('async_job', (t) => {
    t.increments('id');
    t.string('uuid', 40).notNullable().unique();
    t.integer('user_id').unsigned().notNullable();
    t.integer('account_id').unsigned().notNullable();
    t.integer('domain_id').unsigned().notNullable();
    t.string('cmd', 255).notNullable(); // the API command name
    t.string('job_kind', 64).notNullable(); // the handler, e.g. kms.rotate
    t.text('cmd_info', 'mediumtext').notNullable(); // JSON of non-secret job arguments
    t.string('instance_type', 32).nullable();
    t.string('instance_id', 40).nullable();
    t.integer('status').notNullable().defaultTo(0); // 0 in progress, 1 succeeded, 2 failed
    t.integer('process_status').notNullable().defaultTo(0);
    t.integer('result_code').notNullable().defaultTo(0);
    t.string('result_type', 16).nullable();
    t.text('result', 'mediumtext').nullable();
    t.string('lease_owner', 64).nullable();
    t.bigInteger('lease_expires').nullable();
    t.integer('attempts').notNullable().defaultTo(0);
    t.bigInteger('created').notNullable();
    t.bigInteger('completed').nullable();
    t.bigInteger('last_updated').notNullable();
    t.index(['status', 'lease_expires']);
    t.index(['account_id', 'created']);
  });
  await knex.schema.createTable('kms_lock', (t) => {
    t.string('name', 64).primary();
    t.string('owner', 64).notNullable();
    t.bigInteger('expires').notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const t of ['kms_lock', 'async_job', 'configuration', 'event', 'http_session', 'data_center', 'user', 'account', 'domain']) {
    await knex.schema.dropTableIfExists(t);
  }
}
