import { randomBytes, randomUUID } from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { gcmSeal } from '../../src/providers/database/gcm';
import { secretAad } from '../../src/identity/directory';
import { detailAad, loadProfileConfig } from '../../src/kms/hsm-profile-details';
import { passphraseAad } from '../../src/kms/passphrases';
import { countNotOn } from '../../src/kms/master-key-rotation';
import { mapLimit } from '../../src/kms/concurrency';
import { acquireModule, releaseModule } from '../../src/providers/pkcs11/module';
import type { HsmProfileConfig } from '../../src/providers/provider';
import { adminCall, waitForJob } from '../support/actors';
import { createSoftHsmToken, type SoftHsmToken } from '../support/softhsm';
import { ADMIN_KEYS, startTestServer, type TestServer } from '../support/server';
import { waitFor } from '../support/wait';
import { WorkerProcess } from '../support/worker-process';

/** 20,000 protected values of the four kinds. */
const PINS = 1000;
const API_KEYS = 5000;
const PASSPHRASES = 8000;
const KEKS = 6000;
const KILLS = 5;

const NODE_ENV = { KMS_NODE_HEARTBEAT_MS: '200', KMS_NODE_STALE_SEC: '2' };

/**
 * The master-key rotation job runs in separate worker processes (the API node runs no jobs) and
 * each is SIGKILLed mid-way, five times. Afterwards every secret reads back unchanged through the
 * path that uses it, and no value is left on the old version. Values are seeded in bulk through SQL.
 */
describe('master key rotation over 20,000 values under SIGKILL of its worker', () => {
  let s: TestServer;
  let token: SoftHsmToken;
  let next: string;
  const apiKeys: Array<{ apiKey: string; secretKey: string }> = [];
  const passphrases = new Map<string, string>(); // volume uuid -> base64 of the passphrase bytes
  const deks: Array<{ label: string; blob: Buffer; aad: Buffer; dek: Buffer }> = [];
  const workerEnv = () => ({
    ...NODE_ENV, SOFTHSM2_CONF: token.confPath, KMS_MASTER_KEY_NEXT: next, KMS_MASTER_KEY_ROTATION_BATCH: '100',
    KMS_JOB_LEASE_MS: '1000', KMS_JOB_SWEEP_MS: '200', KMS_JOB_PICKUP_DELAY_MS: '0', KMS_JOB_MAX_ATTEMPTS: '20',
  });
  const onVersion = async (v: number): Promise<number> => {
    let n = 0;
    for (const [t, c] of [['user', 'secret_key'], ['kms_hsm_profile_details', 'value'], ['passphrase', 'passphrase'], ['kms_database_kek_objects', 'key_material']]) {
      n += Number((await s.app.db(t!).where(c!, 'like', `mk${v}:%`).count({ n: '*' }).first())!.n);
    }
    return n;
  };

  beforeAll(async () => {
    token = await createSoftHsmToken();
    next = randomBytes(32).toString('base64');
    s = await startTestServer({ KMS_ROLE: 'api', KMS_MASTER_KEY_NEXT: next, ...NODE_ENV });
    const { db, masterKey } = s.app;
    const zone = (await adminCall(s.client, { command: 'createZone', name: 'z' })).zone.id;
    const zoneId = (await db('data_center').where({ uuid: zone }).first('id')).id;
    const owner = (await adminCall(s.client, { command: 'createAccount', username: 'owner', password: 'pw-owner-123', firstname: 'o', lastname: 'o' })).account;
    const account = await db('account').where({ uuid: owner.id }).first('id', 'domain_id');
    const now = Date.now();

    const users = Array.from({ length: API_KEYS }, (_, i) => {
      const uuid = randomUUID();
      const keys = { apiKey: randomBytes(32).toString('base64url'), secretKey: randomBytes(64).toString('base64url') };
      apiKeys.push(keys);
      return {
        uuid, username: `u${i}`, username_key: `u${i}`, password: 'not-used', account_id: account.id, firstname: 'u', lastname: 'u', state: 'enabled',
        api_key: keys.apiKey, secret_key: masterKey.encryptString(keys.secretKey, secretAad(uuid)), created: now,
      };
    });
    await db.batchInsert('user', users, 400);

    const profiles = Array.from({ length: PINS }, (_, i) => ({ uuid: randomUUID(), name: `hsm-${i}`, protocol: 'pkcs11', enabled: true, is_public: false, created: now }));
    await db.batchInsert('kms_hsm_profiles', profiles, 400);
    const profileIds = new Map((await db('kms_hsm_profiles').whereIn('uuid', profiles.map((p) => p.uuid)).select('id', 'uuid')).map((r) => [r.uuid, r.id]));
    await db.batchInsert('kms_hsm_profile_details', profiles.flatMap((p) => [
      { profile_id: profileIds.get(p.uuid), name: 'library', value: token.library },
      { profile_id: profileIds.get(p.uuid), name: 'token_label', value: token.tokenLabel },
      { profile_id: profileIds.get(p.uuid), name: 'pin', value: masterKey.encryptString(token.pin, detailAad(p.uuid, 'pin')) },
    ]), 400);

    const phrases = Array.from({ length: PASSPHRASES }, () => {
      const uuid = randomUUID();
      const text = Buffer.from(randomBytes(48).toString('base64'), 'ascii');
      return { row: { uuid, passphrase: masterKey.encrypt(text, passphraseAad(uuid)), created: now }, text };
    });
    await db.batchInsert('passphrase', phrases.map((p) => p.row), 400);
    const phraseIds = new Map((await db('passphrase').select('id', 'uuid')).map((r) => [r.uuid, r.id]));
    const volumes = phrases.map((p, i) => {
      const uuid = randomUUID();
      passphrases.set(uuid, p.text.toString('base64'));
      return { uuid, name: `legacy-${i}`, account_id: account.id, domain_id: account.domain_id, zone_id: zoneId, state: 'Ready', encrypt_format: 'LUKS', passphrase_id: phraseIds.get(p.row.uuid), created: now };
    });
    await db.batchInsert('volumes', volumes, 400);

    const keks = Array.from({ length: KEKS }, (_, i) => {
      const label = `rotation-kek-${i}`;
      const kek = randomBytes(32);
      const dek = randomBytes(32);
      const aad = Buffer.from(`dek-of-${label}`);
      deks.push({ label, blob: gcmSeal(kek, dek, aad), aad, dek });
      const row = { uuid: randomUUID(), label, key_material: masterKey.encrypt(kek, label), key_bits: 256, created: now };
      kek.fill(0);
      return row;
    });
    await db.batchInsert('kms_database_kek_objects', keks, 400);
    expect(await onVersion(1)).toBe(PINS + API_KEYS + PASSPHRASES + KEKS + 1); // + the bootstrap admin's secret key
    await waitFor(async () => (await db('kms_master_key_versions').where({ version: 2, state: 'Pending' }).first('version')), 10_000, 'the pending version');
  }, 300_000);

  afterAll(async () => {
    await s.close();
    await token.cleanup();
  });

  it('loses nothing: every PIN logs in, every API key signs, every passphrase and DEK reads back, no value on version 1', async () => {
    const total = await onVersion(1);
    let worker = await WorkerProcess.start(s, workerEnv());
    const started = await s.client.signed(ADMIN_KEYS, { command: 'rotateMasterKey' });
    expect(started.status).toBe(200);
    const jobId: string = started.body.jobid;
    const again = await s.client.signed(ADMIN_KEYS, { command: 'rotateMasterKey' });
    expect(again.status).toBe(431);
    expect(again.body.errortext).toBe(`A master key rotation is already running: poll job ${jobId} with queryAsyncJobResult`);

    const killedWithWorkLeft: number[] = [];
    const progressSeen: number[] = [];
    let done = 0;
    for (let i = 0; i < KILLS; i++) {
      // Kill once this worker has committed at least one batch, at a random moment after.
      await waitFor(async () => (await onVersion(2)) > done, 60_000, `progress of worker ${i + 1}\n${worker.output.join('')}`);
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 100)));
      await worker.kill();
      done = await onVersion(2);
      killedWithWorkLeft.push(total - done);
      progressSeen.push(Number((await s.app.db('async_job').where({ uuid: jobId }).first('process_status')).process_status));
      worker = await WorkerProcess.start(s, workerEnv());
    }
    const result = await waitForJob(s.client, ADMIN_KEYS, jobId, 240_000);
    await worker.stop();

    // Every kill came mid-way: values were left on the old version each time.
    expect(killedWithWorkLeft).toHaveLength(KILLS);
    for (const left of killedWithWorkLeft) expect(left).toBeGreaterThan(0);
    expect(Math.max(...progressSeen)).toBeGreaterThan(0);
    expect(result.jobstatus).toBe(1);
    expect(result.jobresult.masterkey).toMatchObject({ version: 2, previousversion: 1, retiredversions: [1] });
    expect(Number((await s.app.db('async_job').where({ uuid: jobId }).first('attempts')).attempts)).toBeGreaterThan(KILLS);

    // No row left on the old version, in any format.
    expect(Object.values(await countNotOn(s.app.repos, 2))).toEqual([0, 0, 0, 0]);
    expect(await onVersion(1)).toBe(0);
    expect(await onVersion(2)).toBe(total);
    expect(await s.app.db('kms_master_key_versions').orderBy('version').pluck('state')).toEqual(['Retired', 'Active']);
    await waitFor(async () => !s.app.masterKey.holds(1), 10_000, 'the API node forgets version 1');

    // Every PIN logs in to its token.
    const module = acquireModule(token.library);
    try {
      const slot = module.lib.C_GetSlotList(true).find((sl) => module.lib.C_GetTokenInfo(sl).label.trim() === token.tokenLabel)!;
      const login = (pin: string): boolean => {
        const session = module.lib.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
        try {
          module.lib.C_Login(session, pkcs11js.CKU_USER, pin);
          module.lib.C_Logout(session);
          return true;
        } catch {
          return false;
        } finally {
          module.lib.C_CloseSession(session);
        }
      };
      expect(login('not-the-pin')).toBe(false);
      const rows = await s.app.db('kms_hsm_profiles').where('name', 'like', 'hsm-%').select('id', 'uuid', 'name', 'protocol', 'enabled');
      expect(rows).toHaveLength(PINS);
      let loggedIn = 0;
      for (const r of rows) if (login(String((await loadProfileConfig(s.app.repos, s.app.masterKey, r)).details.pin))) loggedIn++;
      expect(loggedIn).toBe(PINS);
    } finally {
      releaseModule(module);
    }

    // Every API key still signs.
    const signed = await mapLimit(apiKeys, 16, async (k) => (await s.client.signed(k, { command: 'listZones' })).status);
    expect(signed.filter((st) => st === 200)).toHaveLength(API_KEYS);

    // Every legacy volume's passphrase reads back unchanged.
    const admin = (await s.app.directory.loadCaller(1))!;
    const volumes = s.app.kms.volumes;
    const read = await mapLimit([...passphrases], 16, async ([uuid, want]) => (await volumes.secretOf(admin, uuid)).secretBase64 === want);
    expect(read.filter(Boolean)).toHaveLength(PASSPHRASES);

    // Every database-provider DEK unwraps unchanged under its re-encrypted KEK.
    const provider = s.app.providers.get('database');
    const profile: HsmProfileConfig = { id: 'rotation-check', name: 'rotation-check', protocol: 'database', details: {} };
    const same = await mapLimit(deks, 16, async (d) => {
      const dek = await provider.unwrap({ kek: { profile, label: d.label }, blob: d.blob, aad: d.aad });
      try {
        return dek.reveal().equals(d.dek);
      } finally {
        dek.dispose();
      }
    });
    expect(same.filter(Boolean)).toHaveLength(KEKS);
  }, 600_000);
});
