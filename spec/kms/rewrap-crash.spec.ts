import { startTestServer, type TestServer } from '../support/server';
import { adminCall, createActor, createPkcs11Profile, waitForJob } from '../support/actors';
import { createSoftHsmToken, type SoftHsmToken } from '../support/softhsm';
import { WorkerProcess } from '../support/worker-process';

const VOLUMES = 3000;
const KILLS = 4;

/**
 * The rewrap runs in separate worker processes (the API node runs no jobs); each is SIGKILLed
 * mid-work several times. In the end every secret must read back unchanged and every DEK must sit
 * on the Active version, with the old KEK archived and gone from the token.
 */
describe('background rewrap under SIGKILL of its worker (SoftHSM2)', () => {
  let s: TestServer;
  let token: SoftHsmToken;
  let keyId: string;
  let alice: Awaited<ReturnType<typeof createActor>>;
  const secrets = new Map<string, string>();
  const workerEnv = () => ({ SOFTHSM2_CONF: token.confPath, KMS_JOB_LEASE_MS: '1000', KMS_SCHEDULE_POLL_MS: '50', KMS_JOB_SWEEP_MS: '200', KMS_JOB_PICKUP_DELAY_MS: '0' });
  const countOn = async (status: string) => Number((await s.app.db('kms_wrapped_key as w').join('kms_kek_versions as v', 'v.id', 'w.kek_version_id')
    .where('v.status', status).whereNull('w.removed').count({ n: '*' }).first() as any).n);

  beforeAll(async () => {
    token = await createSoftHsmToken();
    s = await startTestServer({ KMS_ROLE: 'api' });
    await adminCall(s.client, { command: 'updateConfiguration', name: 'kms.rewrap.interval.ms', value: '0' });
    await adminCall(s.client, { command: 'updateConfiguration', name: 'kms.kek.destroy.delay.days', value: '0' }); // destroyed at once, as CloudStack
    const zone = (await adminCall(s.client, { command: 'createZone', name: 'z' })).zone.id;
    alice = await createActor(s.client, { name: 'alice' });
    const profileId = await createPkcs11Profile(s.client, token.details());
    keyId = (await s.client.signed(alice.keys, { command: 'createKMSKey', name: 'k', zoneid: zone, hsmprofileid: profileId })).body.kmskey.id;
    const owner = (await s.app.directory.loadCaller((await s.app.db('user').where({ uuid: alice.userId }).first()).id))!;
    const admin = (await s.app.directory.loadCaller(1))!;
    const volumes = s.app.kms.volumes;
    for (let i = 0; i < VOLUMES; i++) {
      const v = await volumes.create(owner, { name: `v${i}`, zoneUuid: zone, encrypt: true, kmsKeyUuid: keyId });
      secrets.set(v.uuid, (await volumes.secretOf(admin, v.uuid)).secretBase64);
    }
  }, 240000);

  afterAll(async () => {
    await s.close();
    await token.cleanup();
  });

  it('ends with every secret unchanged and every key on the active version', async () => {
    const rotator = await WorkerProcess.start(s, workerEnv());
    const rotate = await s.client.signed(alice.keys, { command: 'rotateKMSKey', id: keyId });
    expect((await waitForJob(s.client, alice.keys, rotate.body.jobid)).jobstatus).toBe(1);
    await rotator.stop();
    expect(await countOn('Previous')).toBe(VOLUMES);

    await adminCall(s.client, { command: 'updateConfiguration', name: 'kms.rewrap.batch.size', value: '1000' });
    await adminCall(s.client, { command: 'updateConfiguration', name: 'kms.rewrap.interval.ms', value: '10' });
    let killedWithClaims = 0;
    for (let i = 0; i < KILLS && (await countOn('Previous')) > 0; i++) {
      const w = await WorkerProcess.start(s, workerEnv());
      const before = await countOn('Previous');
      const deadline = Date.now() + 20000;
      // Kill once this worker has claimed a batch (a tick is under way), at a random moment after.
      while (Date.now() < deadline && !(await s.app.db('kms_wrapped_key').whereNotNull('claim_owner').first('id'))) {
        if ((await countOn('Previous')) < before) break;
        await new Promise((r) => setTimeout(r, 5));
      }
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 150)));
      if (await s.app.db('kms_wrapped_key').whereNotNull('claim_owner').first('id')) killedWithClaims++;
      await w.kill();
    }
    // A kill with claims outstanding is a kill mid-batch; at least one must have happened.
    expect(killedWithClaims).toBeGreaterThan(0);

    const last = await WorkerProcess.start(s, workerEnv());
    const deadline = Date.now() + 90000;
    while ((await s.app.db('kms_kek_versions').where({ status: 'Archived' }).whereNotNull('removed').first('id')) === undefined) {
      if (Date.now() > deadline) throw new Error(`rewrap did not finish: ${await countOn('Previous')} left\n${last.output.join('')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await last.stop();

    expect(await countOn('Previous')).toBe(0);
    expect(await countOn('Active')).toBe(VOLUMES);
    const admin = (await s.app.directory.loadCaller(1))!;
    const volumes = s.app.kms.volumes;
    for (const [id, secret] of secrets) expect((await volumes.secretOf(admin, id)).secretBase64).toBe(secret);
    const wk = s.app.kms.wrappedKeys;
    const v1 = await s.app.db('kms_kek_versions').where({ version_number: 1 }).first('id');
    const kek1 = await wk.kekRef((await wk.versionById(v1.id))!);
    expect(await s.app.providers.get('pkcs11').hasKek(kek1)).toBe(false);
  }, 300000);
});
