import { runAdmin } from '../../src/cli/admin';
import { startTestServer, type TestServer } from '../support/server';
import { adminCall, createActor, createPkcs11Profile, waitForJob } from '../support/actors';
import { createSoftHsmTokens, type SoftHsmToken } from '../support/softhsm';
import { WorkerProcess } from '../support/worker-process';

const VOLUMES = 600;
const KILLS = 3;

/**
 * A rotation of a key with a standby (README "Standby HSM"): primary and standby are two SoftHSM2
 * tokens (two HSMs). The rewrap runs in worker processes SIGKILLed mid-batch; in the end every DEK
 * sits on the new version with both wraps, `verify-keys` opens every primary and every standby
 * blob, and both v1 KEKs (primary and standby) are gone from their tokens.
 */
describe('rotation of a key with a standby HSM under SIGKILL of the rewrap worker (SoftHSM2)', () => {
  let s: TestServer;
  let tokens: SoftHsmToken[];
  let keyId: string;
  let alice: Awaited<ReturnType<typeof createActor>>;
  const secrets = new Map<string, string>();
  const workerEnv = () => ({ SOFTHSM2_CONF: tokens[0]!.confPath, KMS_JOB_LEASE_MS: '1000', KMS_SCHEDULE_POLL_MS: '50', KMS_JOB_SWEEP_MS: '200', KMS_JOB_PICKUP_DELAY_MS: '0' });
  const countOn = async (status: string, extra: (q: any) => any = (q) => q) => Number((await extra(s.app.db('kms_wrapped_key as w').join('kms_kek_versions as v', 'v.id', 'w.kek_version_id')
    .where('v.status', status).whereNull('w.removed')).count({ n: '*' }).first() as any).n);

  beforeAll(async () => {
    tokens = await createSoftHsmTokens(2);
    s = await startTestServer({ KMS_ROLE: 'api' });
    await adminCall(s.client, { command: 'updateConfiguration', name: 'kms.rewrap.interval.ms', value: '0' });
    await adminCall(s.client, { command: 'updateConfiguration', name: 'kms.kek.destroy.delay.days', value: '0' });
    const zone = (await adminCall(s.client, { command: 'createZone', name: 'z' })).zone.id;
    alice = await createActor(s.client, { name: 'alice' });
    const primary = await createPkcs11Profile(s.client, tokens[0]!.details(), 'hsm-a');
    const standby = await createPkcs11Profile(s.client, tokens[1]!.details(), 'hsm-b');
    keyId = (await s.client.signed(alice.keys, { command: 'createKMSKey', name: 'k', zoneid: zone, hsmprofileid: primary, standbyhsmprofileid: standby })).body.kmskey.id;
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
    await tokens[0]!.cleanup();
  });

  it('keeps both wraps of every DEK correct, checked with verify-keys', async () => {
    expect(await countOn('Active', (q) => q.whereNotNull('w.standby_blob'))).toBe(VOLUMES);
    const rotator = await WorkerProcess.start(s, workerEnv());
    const rotate = await s.client.signed(alice.keys, { command: 'rotateKMSKey', id: keyId });
    expect((await waitForJob(s.client, alice.keys, rotate.body.jobid)).jobstatus).toBe(1);
    await rotator.stop();
    expect(await countOn('Previous')).toBe(VOLUMES);
    const v2 = await s.app.db('kms_kek_versions').where({ version_number: 2 }).first('standby_kek_label');
    expect(v2.standby_kek_label).toMatch(/-v2-standby$/);

    await adminCall(s.client, { command: 'updateConfiguration', name: 'kms.rewrap.batch.size', value: '200' });
    await adminCall(s.client, { command: 'updateConfiguration', name: 'kms.rewrap.interval.ms', value: '10' });
    let killedWithClaims = 0;
    for (let i = 0; i < KILLS && (await countOn('Previous')) > 0; i++) {
      const w = await WorkerProcess.start(s, workerEnv());
      const before = await countOn('Previous');
      const deadline = Date.now() + 20000;
      while (Date.now() < deadline && !(await s.app.db('kms_wrapped_key').whereNotNull('claim_owner').first('id'))) {
        if ((await countOn('Previous')) < before) break;
        await new Promise((r) => setTimeout(r, 5));
      }
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 100)));
      if (await s.app.db('kms_wrapped_key').whereNotNull('claim_owner').first('id')) killedWithClaims++;
      await w.kill();
    }
    expect(killedWithClaims).toBeGreaterThan(0);

    const last = await WorkerProcess.start(s, workerEnv());
    const deadline = Date.now() + 90000;
    while ((await s.app.db('kms_kek_versions').where({ status: 'Archived' }).whereNotNull('removed').first('id')) === undefined
      || (await countOn('Active', (q) => q.whereNotNull('w.standby_blob'))) < VOLUMES) {
      if (Date.now() > deadline) throw new Error(`rewrap did not finish: ${await countOn('Previous')} left\n${last.output.join('')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await last.stop();

    expect(await countOn('Previous')).toBe(0);
    expect(await countOn('Active', (q) => q.whereNotNull('w.standby_blob'))).toBe(VOLUMES);
    const lines: string[] = [];
    await runAdmin(['verify-keys', '--rate', '0', '--key', keyId], s.app.env, (l) => lines.push(l));
    expect(lines).toContain(`verified ${VOLUMES} wrapped DEKs, 0 legacy passphrases, 0 master-key values: 0 failed`);
    expect(lines).toContain(`standby wraps: ${VOLUMES} verified, 0 not made yet (the background standby fill makes them)`);

    const admin = (await s.app.directory.loadCaller(1))!;
    for (const [id, secret] of secrets) expect((await s.app.kms.volumes.secretOf(admin, id)).secretBase64).toBe(secret);
    const wk = s.app.kms.wrappedKeys;
    const v1 = (await wk.versionById((await s.app.db('kms_kek_versions').where({ version_number: 1 }).first('id')).id))!;
    expect(await s.app.providers.get('pkcs11').hasKek(await wk.kekRef(v1))).toBe(false);
    expect(await s.app.providers.get('pkcs11').hasKek((await wk.standbyRef(v1))!)).toBe(false);
    const listed = (await s.client.signed(alice.keys, { command: 'listKMSKeys', id: keyId })).body.kmskey[0];
    expect(listed).toMatchObject({ version: 2, standbyhsmprofile: 'hsm-b', standbywrappedkeys: VOLUMES, rewrapremaining: 0 });
  }, 300000);
});
