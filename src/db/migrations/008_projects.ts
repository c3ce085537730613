import type { Knex } from 'knex';

/**
 * CloudStack projects (README "Projects").
 *
 * - `projects`: one row per project. `project_account_id` is the project's own account (type 5,
 *   PROJECT) in the project's domain: it owns every key, volume and profile made for the project.
 * - `project_account`: the members of a project, with their role (Admin or Regular). A member
 *   reaches the project account (src/identity/access.ts); an Admin member also manages membership.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('projects', (t) => {
    t.increments('id').primary();
    t.string('uuid', 40).notNullable().unique();
    t.string('name', 255).notNullable();
    t.string('display_text', 255).nullable();
    t.integer('domain_id').unsigned().notNullable().references('id').inTable('domain');
    t.integer('project_account_id').unsigned().notNullable().references('id').inTable('account');
    t.string('state', 16).notNullable(); // Active (Disabled, Suspended are CloudStack states this server never sets)
    t.bigInteger('created').notNullable();
    t.bigInteger('removed').nullable();
    t.index(['domain_id', 'name']);
  });
  await knex.schema.createTable('project_account', (t) => {
    t.increments('id').primary();
    t.integer('project_id').unsigned().notNullable().references('id').inTable('projects');
    t.integer('account_id').unsigned().notNullable().references('id').inTable('account');
    t.string('account_role', 16).notNullable(); // Admin | Regular
    t.bigInteger('created').notNullable();
    t.unique(['project_id', 'account_id']);
    t.index(['account_id']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('project_account');
  await knex.schema.dropTableIfExists('projects');
}
