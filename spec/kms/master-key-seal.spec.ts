import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createApp } from '../../src/app';
import { readEnv } from '../../src/config/env';
import { runAdmin } from '../../src/cli/admin';
import type { Db } from '../../src/db/knex';
import { MasterKeySeal } from '../../src/kms/master-key-seal';
import { silentLogger } from '../../src/core/logger';
import { adminCall, createActor, enableDefaultProfile, waitForJob } from '../support/actors';
import { createTestDb, type TestDb } from '../support/db';
import { ADMIN_KEYS, startTestServer } from '../support/server';
import { createSoftHsmToken, type SoftHsmToken } from '../support/softhsm';

const SEAL_KEY_LABEL = 'kms-master-seal';

/** Every file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

/** Every value of every table, as bytes (strings as UTF-8, blobs as they are). */
async function databaseBytes(db: Db): Promise<Buffer> {
  const tables: string[] = db.client.config.client === 'mysql2'
    ? ((await db.raw('SHOW TABLES'))[0] as Array<Record<string, string>>).map((r) => Object.values(r)[0]!)
    : (await db('sqlite_master').where({ type: 'table' }).pluck('name'));
  const parts: Buffer[] = [];
  for (const t of tables) {
    for (const row of await db(t).select()) {
      for (const v of Object.values(row)) parts.push(Buffer.isBuffer(v) ? v : Buffer.from(String(v), 'utf8'));
    }
  }
  return Buffer.concat(parts);
}

/** The forms a leaked key could take: raw bytes, base64, base64url, hex. */
const needles = (key: Buffer): Buffer[] => [key, Buffer.from(key.toString('base64')), Buffer.from(key.toString('base64url')), Buffer.from(key.toString('hex'))];

describe('a master key sealed by a PKCS#11 token (SoftHSM2)', () => {
  let token: SoftHsmToken;
  let secretsDir: string;
  let pinFile: string;
  const sealEnv = (tokenLabel = token.tokenLabel) => ({
    KMS_MASTER_KEY: '', KMS_MASTER_KEY_SEAL_LIBRARY: token.library, KMS_MASTER_KEY_SEAL_TOKEN_LABEL: tokenLabel,
    KMS_MASTER_KEY_SEAL_KEY_LABEL: SEAL_KEY_LABEL, KMS_MASTER_KEY_SEAL_PIN_FILE: pinFile,
  });
  const dbEnv = (t: TestDb) => ({ KMS_DATA_DIR: t.dataDir, ...(t.databaseUrl ? { DATABASE_URL: t.databaseUrl } : {}) });
  const unsealedKey = async (db: Db, version = 1): Promise<Buffer> => {
    const row = await db('kms_master_key_versions').where({ version }).first('sealed_key');
    const seal = MasterKeySeal.open({ library: token.library, tokenLabel: token.tokenLabel, keyLabel: SEAL_KEY_LABEL, pinFile });
    try {
      return seal.unwrap(Buffer.from(row.sealed_key, 'base64'));
    } finally {
      seal.close();
    }
  };

  beforeAll(async () => {
    token = await createSoftHsmToken();
    secretsDir = mkdtempSync(join(tmpdir(), 'kms-seal-pin-'));
    pinFile = join(secretsDir, 'seal.pin');
    writeFileSync(pinFile, `${token.pin}\n`, { mode: 0o600 });
  });

  afterAll(async () => {
    rmSync(secretsDir, { recursive: true, force: true });
    await token.cleanup();
  });

  it('starts sealed: the key is made and kept only wrapped by the token, and neither the data directory nor the database holds it in plaintext', async () => {
    const s = await startTestServer(sealEnv());
    try {
      const alice = await createActor(s.client, { name: 'alice' });
      const zone = (await adminCall(s.client, { command: 'createZone', name: 'z' })).zone.id;
      const profile = await enableDefaultProfile(s.client);
      const key = (await s.client.signed(alice.keys, { command: 'createKMSKey', name: 'k', zoneid: zone, hsmprofileid: profile })).body.kmskey.id;
      const owner = (await s.app.directory.loadCaller((await s.app.db('user').where({ uuid: alice.userId }).first('id')).id))!;
      const volumes = s.app.kms.volumes;
      await volumes.create(owner, { name: 'legacy', zoneUuid: zone, encrypt: true });
      await volumes.create(owner, { name: 'kms', zoneUuid: zone, encrypt: true, kmsKeyUuid: key });
      expect((await s.client.signed(alice.keys, { command: 'listKMSKeys' })).status).toBe(200);

      const rows = await s.app.db('kms_master_key_versions').select('version', 'state', 'sealed_key', 'seal_key_label');
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ version: 1, state: 'Active', seal_key_label: SEAL_KEY_LABEL });
      expect(existsSync(join(s.testDb.dataDir, 'master.key'))).toBe(false);

      const master = await unsealedKey(s.app.db);
      expect(master).toHaveLength(32);
      const files = filesUnder(s.testDb.dataDir);
      for (const f of files) {
        const bytes = readFileSync(f);
        for (const n of needles(master)) expect(bytes.indexOf(n)).toBe(-1);
      }
      const dump = await databaseBytes(s.app.db);
      expect(dump.length).toBeGreaterThan(1000);
      for (const n of needles(master)) expect(dump.indexOf(n)).toBe(-1);
      // The dump does hold the secrets, only encrypted: the scan would see a leak.
      expect(dump.indexOf(Buffer.from('mk1:'))).toBeGreaterThan(-1);
      master.fill(0);

      // A second node (a restart) unseals the same key in the token and reads what the first wrote.
      const env = readEnv({ ...dbEnv(s.testDb), ...sealEnv() });
      const again = await createApp(env, { logger: silentLogger });
      expect((await again.app.directory.findByApiKey(alice.keys.apiKey))?.secretKey).toBe(alice.keys.secretKey);
      await again.app.close();

      // Without the seal configuration, or with the token missing, the start is refused, saying why.
      await expect(createApp(readEnv({ ...dbEnv(s.testDb) }), { logger: silentLogger })).rejects.toThrow(
        'The master key of this database is sealed by an HSM: set KMS_MASTER_KEY_SEAL_LIBRARY, KMS_MASTER_KEY_SEAL_TOKEN_LABEL, KMS_MASTER_KEY_SEAL_KEY_LABEL and KMS_MASTER_KEY_SEAL_PIN_FILE (or run npm run admin -- unseal-master-key)',
      );
      const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
        cwd: join(__dirname, '..', '..'),
        env: { PATH: process.env.PATH ?? '', SOFTHSM2_CONF: token.confPath, PORT: '0', ...dbEnv(s.testDb), ...sealEnv('absent-token') },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      proc.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
      const code = await new Promise<number | null>((resolve) => proc.once('exit', resolve));
      expect(code).toBe(1);
      // One JSON line on stderr, as every refused start (spec/ops/startup-failures.spec.ts).
      expect(stderr.trim().split('\n')).toHaveLength(1);
      expect(JSON.parse(stderr)).toMatchObject({
        level: 'error', msg: `cannot start: The master key is sealed by an HSM, but no token labelled 'absent-token' (KMS_MASTER_KEY_SEAL_TOKEN_LABEL) is present in ${token.library}`,
      });
    } finally {
      await s.close();
    }
  }, 120_000);

  it('rotates online when sealed: the new version is made and sealed by the node, the old one retired', async () => {
    const s = await startTestServer({ ...sealEnv(), KMS_NODE_HEARTBEAT_MS: '200', KMS_NODE_STALE_SEC: '2' });
    try {
      const alice = await createActor(s.client, { name: 'alice' });
      const start = await s.client.signed(ADMIN_KEYS, { command: 'rotateMasterKey' });
      expect(start.status).toBe(200);
      expect((await waitForJob(s.client, ADMIN_KEYS, start.body.jobid, 60_000)).jobstatus).toBe(1);
      const rows = await s.app.db('kms_master_key_versions').orderBy('version').select('version', 'state', 'sealed_key');
      expect(rows.map((r) => [r.version, r.state, r.sealed_key !== null])).toEqual([[1, 'Retired', false], [2, 'Active', true]]);
      expect((await s.client.signed(alice.keys, { command: 'listZones' })).status).toBe(200);
      const master = await unsealedKey(s.app.db, 2);
      const dump = await databaseBytes(s.app.db);
      for (const n of needles(master)) expect(dump.indexOf(n)).toBe(-1);
      master.fill(0);
    } finally {
      await s.close();
    }
  }, 120_000);

  it('refuses to start with a wrong PIN or a partial seal configuration, naming what to fix and never the PIN', async () => {
    const t = await createTestDb();
    await t.db.destroy();
    const wrongPin = join(secretsDir, 'wrong.pin');
    writeFileSync(wrongPin, 'not-the-pin\n', { mode: 0o600 });
    try {
      const attempt = createApp(readEnv({ ...dbEnv(t), ...sealEnv(), KMS_MASTER_KEY_SEAL_PIN_FILE: wrongPin }), { logger: silentLogger });
      await expect(attempt).rejects.toThrow(`Cannot log in to token '${token.tokenLabel}' with the PIN in ${wrongPin} (KMS_MASTER_KEY_SEAL_PIN_FILE)`);
      expect(() => readEnv({ ...dbEnv(t), KMS_MASTER_KEY_SEAL_LIBRARY: token.library })).toThrow(
        'A sealed master key needs KMS_MASTER_KEY_SEAL_TOKEN_LABEL, KMS_MASTER_KEY_SEAL_KEY_LABEL, KMS_MASTER_KEY_SEAL_PIN_FILE (set with KMS_MASTER_KEY_SEAL_LIBRARY)',
      );
      await expect(createApp(readEnv({ ...dbEnv(t), ...sealEnv(), KMS_MASTER_KEY: 'AAAA' }), { logger: silentLogger })).rejects.toThrow(/^Set either KMS_MASTER_KEY/);
    } finally {
      await t.drop().catch(() => undefined);
    }
  }, 60_000);

  it('moves an unsealed deployment to sealed with one command, and back with another', async () => {
    const t = await createTestDb();
    await t.db.destroy();
    const base = { ...dbEnv(t), KMS_ADMIN_API_KEY: ADMIN_KEYS.apiKey, KMS_ADMIN_SECRET_KEY: ADMIN_KEYS.secretKey };
    const keyFile = join(t.dataDir, 'master.key');
    const readsAdmin = async (env: Record<string, string>) => {
      const { app } = await createApp(readEnv(env), { logger: silentLogger });
      try {
        return (await app.directory.findByApiKey(ADMIN_KEYS.apiKey))?.secretKey === ADMIN_KEYS.secretKey;
      } finally {
        await app.close();
      }
    };
    try {
      expect(await readsAdmin(base)).toBe(true); // first start: generates master.key
      const original = readFileSync(keyFile, 'utf8').trim();

      const out: string[] = [];
      await runAdmin(['seal-master-key'], readEnv({ ...base, ...sealEnv(), KMS_MASTER_KEY: '' }), (l) => out.push(l));
      expect(out).toContain('sealed master key version 1 (Active)');
      expect(out).toContain(`removed ${keyFile}`);
      expect(out.join('\n')).not.toContain(original);
      expect(existsSync(keyFile)).toBe(false);
      expect(await readsAdmin({ ...base, ...sealEnv() })).toBe(true);
      await expect(readsAdmin(base)).rejects.toThrow(/sealed by an HSM/);

      out.length = 0;
      await runAdmin(['unseal-master-key'], readEnv({ ...base, ...sealEnv() }), (l) => out.push(l));
      expect(out[0]).toBe(`wrote master key version 1 to ${keyFile} (mode 0600) and removed the seal`);
      expect(statSync(keyFile).mode & 0o777).toBe(0o600);
      expect(readFileSync(keyFile, 'utf8').trim()).toBe(original);
      expect(await readsAdmin(base)).toBe(true);
      const db = (await createTestDbHandle(t)).db;
      expect(await db('kms_master_key_versions').whereNotNull('sealed_key').first('version')).toBeUndefined();
      await db.destroy();
    } finally {
      await t.drop().catch(() => undefined);
    }
  }, 120_000);
});

/** A fresh connection to a test database whose first handle was closed. */
async function createTestDbHandle(t: TestDb): Promise<{ db: Db }> {
  const { openDb } = await import('../../src/db/knex');
  return { db: await openDb({ databaseUrl: t.databaseUrl, dataDir: t.dataDir }) };
}
