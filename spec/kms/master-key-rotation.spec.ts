import { randomBytes } from 'node:crypto';
import { createApp } from '../../src/app';
import { readEnv } from '../../src/config/env';
import { MasterKey, legacyEncrypt } from '../../src/config/master-key';
import { secretAad } from '../../src/identity/directory';
import { silentLogger } from '../../src/core/logger';
import { passphraseAad } from '../../src/kms/passphrases';
import { runAdmin } from '../../src/cli/admin';
import { createActor, createPkcs11Profile, waitForJob } from '../support/actors';
import { createTestDb } from '../support/db';
import { ADMIN_KEYS, startTestServer, type TestServer } from '../support/server';
import { waitFor } from '../support/wait';
import { WorkerProcess } from '../support/worker-process';
import { createSoftHsmToken, type SoftHsmToken } from '../support/softhsm';

/** Fast heartbeats so a node's announcement (and its staleness) is seen within a second or two. */
const NODE_ENV = { KMS_NODE_HEARTBEAT_MS: '200', KMS_NODE_STALE_SEC: '2' };
const WORKER_ENV = { ...NODE_ENV, KMS_JOB_LEASE_MS: '1000', KMS_JOB_SWEEP_MS: '200', KMS_JOB_PICKUP_DELAY_MS: '0', KMS_SCHEDULE_POLL_MS: '50' };

const versionsOf = async (s: TestServer) => (await s.app.db('kms_master_key_versions').orderBy('version').select('version', 'state'))
  .map((r) => `${r.version}:${r.state}`);

describe('rotating the master key across a cluster (API node + worker process)', () => {
  let s: TestServer;
  let next: string;
  let alice: Awaited<ReturnType<typeof createActor>>;
  let profileId: string;
  let token: SoftHsmToken;
  const workerEnv = () => ({ ...WORKER_ENV, SOFTHSM2_CONF: token.confPath });

  beforeAll(async () => {
    token = await createSoftHsmToken();
    next = randomBytes(32).toString('base64');
    s = await startTestServer({ KMS_ROLE: 'api', KMS_MASTER_KEY_NEXT: next, ...NODE_ENV });
    alice = await createActor(s.client, { name: 'alice' });
    profileId = await createPkcs11Profile(s.client, token.details());
    await waitFor(async () => (await versionsOf(s)).join() === '1:Active,2:Pending', 10_000, 'the pending version');
  }, 60_000);

  afterAll(async () => {
    await s.close();
    await token.cleanup();
  });

  it('answers 431 while a live node lacks the new key, naming it, and changes nothing', async () => {
    const lacking = await WorkerProcess.start(s, workerEnv()); // no KMS_MASTER_KEY_NEXT
    try {
      await waitFor(async () => Number((await s.app.db('kms_node').count({ n: '*' }).first())!.n) === 2, 10_000, 'two nodes announced');
      const res = await s.client.signed(ADMIN_KEYS, { command: 'rotateMasterKey' });
      expect(res.status).toBe(431);
      expect(res.body.errorcode).toBe(431);
      expect(res.body.errortext).toMatch(/^Not every node holds the new master key \(version 2\) yet: worker node .+ pid \d+ lack it; give them the key in KMS_MASTER_KEY_NEXT and restart them$/);
      expect(await versionsOf(s)).toEqual(['1:Active', '2:Pending']);
      expect(await s.app.db('async_job').where({ cmd: 'rotateMasterKey' }).first('id')).toBeUndefined();
    } finally {
      await lacking.stop();
    }
  }, 60_000);

  it('is refused to callers other than root admins, as an unknown command (432)', async () => {
    const res = await s.client.signed(alice.keys, { command: 'rotateMasterKey' });
    expect(res.status).toBe(432);
  });

  it('re-encrypts every value under the new version in a worker, retires the old one, and everything still works', async () => {
    const worker = await WorkerProcess.start(s, { ...workerEnv(), KMS_MASTER_KEY_NEXT: next });
    try {
      const start = await s.client.signed(ADMIN_KEYS, { command: 'rotateMasterKey' });
      expect(start.status).toBe(200);
      const done = await waitForJob(s.client, ADMIN_KEYS, start.body.jobid, 60_000);
      expect(done.jobstatus).toBe(1);
      expect(done.cmd).toBe('rotateMasterKey');
      expect(done.jobresult.masterkey).toMatchObject({ version: 2, previousversion: 1, retiredversions: [1], state: 'Active' });
      expect(await versionsOf(s)).toEqual(['1:Retired', '2:Active']);
      const rows = [
        ...(await s.app.db('user').whereNotNull('secret_key').pluck('secret_key')),
        ...(await s.app.db('kms_hsm_profile_details').where({ name: 'pin' }).pluck('value')),
      ];
      expect(rows.length).toBeGreaterThan(2);
      for (const v of rows) expect(v).toMatch(/^mk2:/);
      // The job record holds no key material.
      const job = JSON.stringify(await s.app.db('async_job').where({ uuid: start.body.jobid }).first());
      expect(job).not.toContain(next);
      expect(job).not.toContain(s.masterKey);
      // Nodes forget version 1; API keys still sign, the PIN still reads back.
      await waitFor(async () => !s.app.masterKey.holds(1), 10_000, 'version 1 forgotten');
      expect((await s.client.signed(alice.keys, { command: 'listZones' })).status).toBe(200);
      const config = await (await import('../../src/kms/hsm-profiles')).profileConfigFor(s.app, (await s.app.db('kms_hsm_profiles').where({ uuid: profileId }).first('id')).id);
      expect(config.details.pin).toBe(token.pin);
    } finally {
      await worker.stop();
    }
  }, 120_000);

  it('binds each value to its version: relabelled with another version it does not decrypt', async () => {
    const row = await s.app.db('user').whereNotNull('secret_key').first('uuid', 'secret_key');
    const relabelled = String(row.secret_key).replace(/^mk2:/, 'mk1:');
    const both = new MasterKey(Buffer.from(next, 'base64'), 2);
    both.add(1, Buffer.from(next, 'base64'));
    expect(() => both.decryptString(relabelled, secretAad(row.uuid))).toThrow(/failed authentication/);
    expect(both.decryptString(row.secret_key, secretAad(row.uuid))).toHaveLength(86);
    both.destroy();
  });

  it('lets a restarted node with only the retired key refuse to start, saying which key it needs', async () => {
    const env = readEnv({ KMS_DATA_DIR: s.testDb.dataDir, KMS_MASTER_KEY: s.masterKey, ...(s.testDb.databaseUrl ? { DATABASE_URL: s.testDb.databaseUrl } : {}) });
    await expect(createApp(env, { logger: silentLogger })).rejects.toThrow('This node was given only retired master key version 1; the active version is 2: give it the active key in KMS_MASTER_KEY (see README "The master key")');
    const good = await createApp({ ...env, masterKey: `${s.masterKey},${next}` }, { logger: silentLogger });
    await good.app.close();
  }, 30_000);

  it('refuses a second rotation without a new key (431)', async () => {
    const res = await s.client.signed(ADMIN_KEYS, { command: 'rotateMasterKey' });
    expect(res.status).toBe(431);
    expect(res.body.errortext).toMatch(/^There is no new master key to rotate to: give every node the new key in KMS_MASTER_KEY_NEXT/);
  });
});

describe('values written before master keys had versions', () => {
  it('are version 1 and are rewritten in place, readable, at the first start', async () => {
    const t = await createTestDb();
    const raw = randomBytes(32);
    const env = readEnv({ KMS_DATA_DIR: t.dataDir, KMS_MASTER_KEY: raw.toString('base64'), ...(t.databaseUrl ? { DATABASE_URL: t.databaseUrl } : {}) });
    await t.db.destroy();
    const first = await createApp(env, { logger: silentLogger });
    // An old server's row: the legacy `v1:` format, no version in its authenticated data.
    await first.app.db('passphrase').insert({ uuid: 'p-legacy', passphrase: legacyEncrypt(raw, Buffer.from('legacy-secret'), passphraseAad('p-legacy')), created: Date.now() });
    await first.app.close();
    const again = await createApp(env, { logger: silentLogger });
    const row = await again.app.db('passphrase').where({ uuid: 'p-legacy' }).first('passphrase');
    expect(row.passphrase).toMatch(/^mk1:/);
    expect(again.app.masterKey.decryptString(row.passphrase, passphraseAad('p-legacy'))).toBe('legacy-secret');
    await again.app.close();
    await t.drop();
  }, 30_000);
});

describe('npm run admin -- master-key-status', () => {
  it('lists versions and live nodes without printing a key', async () => {
    const s = await startTestServer(NODE_ENV);
    const lines: string[] = [];
    await runAdmin(['master-key-status'], readEnv({ KMS_DATA_DIR: s.testDb.dataDir, KMS_MASTER_KEY: s.masterKey, ...NODE_ENV, ...(s.testDb.databaseUrl ? { DATABASE_URL: s.testDb.databaseUrl } : {}) }), (l) => lines.push(l));
    expect(lines[0]).toBe('version 1: Active');
    expect(lines.join('\n')).toMatch(/node all .+ holds 1, writes 1/);
    expect(lines.join('\n')).not.toContain(s.masterKey);
    await s.close();
  }, 30_000);
});

describe('npm run admin -- discard-pending-master-key', () => {
  it('drops a wrong pending key: nodes stop announcing it, so no rotation can start on it', async () => {
    const s = await startTestServer({ ...NODE_ENV, KMS_MASTER_KEY_NEXT: randomBytes(32).toString('base64') });
    try {
      await waitFor(async () => (await s.app.db('kms_node').first('key_versions'))?.key_versions === '1,2', 10_000, 'the node announcing version 2');
      const lines: string[] = [];
      const env = readEnv({ KMS_DATA_DIR: s.testDb.dataDir, KMS_MASTER_KEY: s.masterKey, ...(s.testDb.databaseUrl ? { DATABASE_URL: s.testDb.databaseUrl } : {}) });
      await runAdmin(['discard-pending-master-key'], env, (l) => lines.push(l));
      expect(lines[0]).toMatch(/^discarded pending master key version 2;/);
      await waitFor(async () => (await s.app.db('kms_node').first('key_versions'))?.key_versions === '1', 10_000, 'the node dropping version 2');
      expect(s.app.masterKey.holds(2)).toBe(false);
      const res = await s.client.signed(ADMIN_KEYS, { command: 'rotateMasterKey' });
      expect(res.status).toBe(431);
      expect(res.body.errortext).toMatch(/^There is no new master key to rotate to/);
    } finally {
      await s.close();
    }
  }, 30_000);
});

describe('npm run admin -- rotate-master-key', () => {
  it('starts the rotation from the command line and follows its job to the end', async () => {
    const next = randomBytes(32).toString('base64');
    const s = await startTestServer({ ...NODE_ENV, KMS_MASTER_KEY_NEXT: next, KMS_JOB_SWEEP_MS: '200', KMS_JOB_PICKUP_DELAY_MS: '0' });
    try {
      await waitFor(async () => (await s.app.db('kms_node').first('key_versions'))?.key_versions === '1,2', 10_000, 'the node announcing version 2');
      const lines: string[] = [];
      const env = readEnv({ KMS_DATA_DIR: s.testDb.dataDir, KMS_MASTER_KEY: s.masterKey, KMS_MASTER_KEY_NEXT: next, ...NODE_ENV, ...(s.testDb.databaseUrl ? { DATABASE_URL: s.testDb.databaseUrl } : {}) });
      await runAdmin(['rotate-master-key'], env, (l) => lines.push(l));
      expect(lines[0]).toMatch(/^rotating the master key from version 1 to 2: job [0-9a-f-]{36} \(queryAsyncJobResult jobid=[0-9a-f-]{36}\)$/);
      expect(lines.at(-1)).toMatch(/^done: every value is on version 2; older versions are retired\./);
      expect(lines.join('\n')).not.toContain(next);
      expect(await s.app.db('kms_master_key_versions').orderBy('version').pluck('state')).toEqual(['Retired', 'Active']);
      expect((await s.app.directory.findByApiKey(ADMIN_KEYS.apiKey))?.secretKey).toBe(ADMIN_KEYS.secretKey);
    } finally {
      await s.close();
    }
  }, 60_000);
});
