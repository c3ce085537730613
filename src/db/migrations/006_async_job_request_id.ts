import type { Knex } from 'knex';

/** The API request that submitted a job, so the job's log lines can be traced back to it. */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('async_job', (t) => {
    t.string('request_id', 64).nullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('async_job', (t) => {
    t.dropColumn('request_id');
  });
}
