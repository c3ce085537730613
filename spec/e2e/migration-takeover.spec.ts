import { createRepositories } from '../../src/db/repositories';
import { randomUUID } from 'node:crypto';
import { startTestServer, ADMIN_KEYS, type TestServer } from '../support/server';
import { adminCall, createActor, enableDefaultProfile, waitForJob } from '../support/actors';
import { randomQueuePrefix } from '../support/redis';
import { WorkerProcess } from '../support/worker-process';
import { waitFor } from '../support/wait';
import { Passphrases } from '../../src/kms/passphrases';
import { MIGRATION_BATCH_SIZE } from '../../src/commands/kms-migration';

/** Short leases so the killed worker's job is taken over within seconds. */
const FAST_JOBS = { KMS_JOB_LEASE_MS: '1500', KMS_JOB_SWEEP_MS: '200', KMS_JOB_PICKUP_DELAY_MS: '500' };
const VOLUMES = 3000;

describe('a migration job taken over by another worker', () => {
  let s: TestServer;
  let prefix: string;
  const workers: WorkerProcess[] = [];

  beforeAll(async () => {
    prefix = randomQueuePrefix();
    s = await startTestServer({ KMS_ROLE: 'api', KMS_QUEUE_PREFIX: prefix });
  });
  afterAll(async () => {
    for (const w of workers) await w.kill();
    await s.close();
  });

  /** Legacy passphrase volumes, written straight to the database (thousands through the API would take minutes). */
  async function seedLegacyVolumes(accountUuid: string, zoneUuid: string, n: number): Promise<void> {
    const account = await s.app.db('account').where({ uuid: accountUuid }).first('id', 'domain_id');
    const zone = await s.app.db('data_center').where({ uuid: zoneUuid }).first('id');
    const passphrases = new Passphrases(s.app.masterKey);
    await s.app.db.transaction(async (trx) => {
      const rows = [];
      for (let i = 0; i < n; i++) {
        rows.push({
          uuid: randomUUID(), name: `legacy-${i}`, account_id: account.id, domain_id: account.domain_id, zone_id: zone.id, size: 0, state: 'Allocated',
          encrypt_format: 'LUKS', passphrase_id: await passphrases.create(createRepositories(trx)), created: Date.now(),
        });
      }
      await trx.batchInsert('volumes', rows, 500);
    });
  }

  it('reports every volume of the job, in the result and in the summary event, and resets jobprocstatus', async () => {
    const zone = (await adminCall(s.client, { command: 'createZone', name: 'zone-takeover' })).zone.id;
    const alice = await createActor(s.client, { name: 'alice' });
    const profile = await enableDefaultProfile(s.client);
    const key = (await s.client.signed(alice.keys, { command: 'createKMSKey', name: 'k', zoneid: zone, hsmprofileid: profile })).body.kmskey.id;
    await seedLegacyVolumes(alice.accountId, zone, VOLUMES);

    workers.push(await WorkerProcess.start(s, { KMS_QUEUE_PREFIX: prefix, ...FAST_JOBS }));
    const submitted = await s.client.signed(ADMIN_KEYS, { command: 'migrateVolumesToKMS', kmskeyid: key, zoneid: zone });
    expect(submitted.status).toBe(200);
    const jobid: string = submitted.body.jobid;

    // Kill the first worker once its first batch has committed, while the job is still running.
    const markedBy = async () => Number(((await s.app.db('volumes').where({ kms_migration_job: jobid }).count({ n: '*' }).first()) as any).n);
    await waitFor(async () => (await markedBy()) >= MIGRATION_BATCH_SIZE, 30_000, 'the first batch');
    await workers[0]!.kill();
    const atKill = await markedBy();
    expect(atKill).toBeLessThan(VOLUMES); // the takeover really happens mid-job
    expect((await s.app.db('async_job').where({ uuid: jobid }).first()).status).toBe(0);

    workers.push(await WorkerProcess.start(s, { KMS_QUEUE_PREFIX: prefix, ...FAST_JOBS }));
    const done = await waitForJob(s.client, ADMIN_KEYS, jobid, 120_000);
    expect(done).toMatchObject({ jobstatus: 1, jobresultcode: 0, jobprocstatus: 0 });
    expect(done.jobresult.kmsmigration).toEqual({ kmskeyid: key, migrated: VOLUMES, skipped: 0, failed: 0, failedvolumeids: [] });
    expect(Number((await s.app.db('async_job').where({ uuid: jobid }).first()).attempts)).toBe(2);

    const summary = await s.app.db('event').where({ type: 'VOLUME.MIGRATE.TO.KMS', resource_type: 'KmsKey', resource_id: key });
    expect(summary.map((e) => e.description)).toEqual([`Migrated ${VOLUMES} volumes to KMS key: k (uuid: ${key}). Success: ${VOLUMES}, Skipped: 0, Failures: 0`]);
    // One event per volume, each written with the volume's own change: none lost or doubled by the takeover.
    const perVolume = await s.app.db('event').where({ type: 'VOLUME.MIGRATE.TO.KMS', resource_type: 'Volume' }).count({ n: '*' }).countDistinct({ d: 'resource_id' }).first();
    expect([Number((perVolume as any).n), Number((perVolume as any).d)]).toEqual([VOLUMES, VOLUMES]);
    const left = await s.app.db('volumes').where({ zone_id: (await s.app.db('data_center').where({ uuid: zone }).first()).id }).whereNotNull('passphrase_id').count({ n: '*' }).first();
    expect(Number((left as any).n)).toBe(0);
    const wrapped = await s.app.db('kms_wrapped_key as w').join('kms_keys as k', 'k.id', 'w.kms_key_id').where('k.uuid', key).whereNull('w.removed').count({ n: '*' }).first();
    expect(Number((wrapped as any).n)).toBe(VOLUMES);
  }, 180_000);
});
