import type { App } from '../../src/app';
import type { Db } from '../../src/db/knex';
import { asyncParams } from '../../src/commands/async-jobs';
import { defineJob, submitJob } from '../../src/commands/jobs';
import { ALL_ROLES, defineCommand, param, type CommandSpec } from '../../src/commands/define';
import { KmsError, paramError } from '../../src/core/errors';
import type { JobHandler } from '../../src/jobs/types';

/** The test job kind: sleeps `ms` in steps (reporting progress), then records its effect once per job. */
export const TEST_JOB_KIND = 'test.work';

/** Creates the tables the test handler writes: one row per start, one effect row per job. */
export async function ensureTestJobTables(db: Db): Promise<void> {
  if (!(await db.schema.hasTable('test_job_run'))) {
    await db.schema.createTable('test_job_run', (t) => {
      t.increments('id');
      t.string('job_uuid', 40).notNullable();
      t.integer('attempt').notNullable();
      t.integer('pid').notNullable();
    });
  }
  if (!(await db.schema.hasTable('test_job_effect'))) {
    await db.schema.createTable('test_job_effect', (t) => {
      t.string('job_uuid', 40).primary();
      t.string('value', 255).notNullable();
    });
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An idempotent handler: a repeated run finds its effect already written and adds nothing. */
export function testJobHandler(db: Db): JobHandler {
  return async (job) => {
    await db('test_job_run').insert({ job_uuid: job.uuid, attempt: job.attempt, pid: process.pid });
    const ms = Number(job.args.ms ?? 0);
    const steps = Math.max(1, Math.ceil(ms / 100));
    for (let i = 1; i <= steps; i++) {
      await sleep(ms / steps);
      if (job.signal.aborted) throw new Error('interrupted');
      await job.progress(i);
    }
    switch (job.args.fail) {
      case 'param': throw paramError('The test job was given a bad value');
      case 'provider': throw new KmsError('provider', 'the backend refused');
      case 'crash': throw new Error('internal detail at /srv/secret/path.ts:42');
    }
    const value = String(job.args.value ?? '');
    await db('test_job_effect').insert({ job_uuid: job.uuid, value }).onConflict('job_uuid').ignore();
    return { type: 'object', name: 'testwork', value: { value, attempt: job.attempt } };
  };
}

/** Registers the test job kind on an app (API-only servers need no handler). */
export function registerTestJobs(app: App): void {
  app.jobs.register(TEST_JOB_KIND, testJobHandler(app.db));
}

/**
 * The test job's declaration, for submitting it: its handler is registered apart, by
 * registerTestJobs (test servers run it over their own tables).
 */
const testJob = defineJob({
  kind: TEST_JOB_KIND,
  args: { ms: 'number', value: 'string', fail: 'string?' },
  run: () => Promise.reject(new Error('the test job runs through registerTestJobs')),
});

/** The test-only async command `runTestJob`, which submits the test job. */
export const testCommands = [defineCommand({
  name: 'runTestJob',
  description: 'Runs the test job (test servers only)',
  isAsync: true,
  roles: ALL_ROLES,
  params: {
    ms: param.integer({ default: 0, description: 'how long the job works, in milliseconds' }),
    value: param.string({ default: 'done', description: 'the value the job records' }),
    fail: param.string({ allowed: ['param', 'provider', 'crash'], description: 'how the job fails, if it does' }),
    ...asyncParams,
  },
  response: [{ name: 'value', type: 'string', description: 'the recorded value' }],
  async handler(p, ctx) {
    return submitJob(ctx, p, testJob, { ms: p.ms, value: p.value, fail: p.fail }, { instanceType: 'Volume', instanceId: '00000000-0000-4000-8000-000000000001' });
  },
})] as unknown as readonly CommandSpec[];
