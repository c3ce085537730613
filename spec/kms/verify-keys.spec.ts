/**
 * `npm run admin -- verify-keys`: every secret it cannot open is named (volume, key and version, or
 * the table and row) with the reason, the exit is an error when any failed, it can be limited to a
 * key, a profile or a zone, and nothing of a secret is printed.
 */
import { startTestServer, type TestServer } from '../support/server';
import { adminCall, createActor, enableDefaultProfile } from '../support/actors';
import { runAdmin } from '../../src/cli/admin';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { readEnv } from '../../src/config/env';
import { createTestDb } from '../support/db';

describe('verify-keys', () => {
  let s: TestServer;
  let keyA: string;
  let keyB: string;
  let zone2: string;
  let profile: string;
  const volumesA: string[] = [];
  const secrets: string[] = [];

  const verify = async (args: string[] = []) => {
    const lines: string[] = [];
    const error = await runAdmin(['verify-keys', '--rate', '0', ...args], s.app.env, (l) => lines.push(l)).then(() => undefined, (e: Error) => e);
    return { lines, error };
  };

  beforeAll(async () => {
    s = await startTestServer();
    await adminCall(s.client, { command: 'updateConfiguration', name: 'kms.rewrap.interval.ms', value: '0' });
    const zone1 = (await adminCall(s.client, { command: 'createZone', name: 'z1' })).zone.id;
    zone2 = (await adminCall(s.client, { command: 'createZone', name: 'z2' })).zone.id;
    const alice = await createActor(s.client, { name: 'alice' });
    profile = await enableDefaultProfile(s.client);
    keyA = (await s.client.signed(alice.keys, { command: 'createKMSKey', name: 'a', zoneid: zone1, hsmprofileid: profile })).body.kmskey.id;
    keyB = (await s.client.signed(alice.keys, { command: 'createKMSKey', name: 'b', zoneid: zone2, hsmprofileid: profile })).body.kmskey.id;
    const owner = (await s.app.directory.loadCaller((await s.app.db('user').where({ uuid: alice.userId }).first()).id))!;
    const admin = (await s.app.directory.loadCaller(1))!;
    for (let i = 0; i < 3; i++) volumesA.push((await s.app.kms.volumes.create(owner, { name: `a${i}`, zoneUuid: zone1, encrypt: true, kmsKeyUuid: keyA })).uuid);
    for (let i = 0; i < 2; i++) await s.app.kms.volumes.create(owner, { name: `b${i}`, zoneUuid: zone2, encrypt: true, kmsKeyUuid: keyB });
    const legacy = await s.app.kms.volumes.create(owner, { name: 'legacy', zoneUuid: zone1, encrypt: true });
    for (const v of [...volumesA, legacy.uuid]) secrets.push((await s.app.kms.volumes.secretOf(admin, v)).secretBase64);
  });
  afterAll(async () => { await s.close(); });

  it('reports 0 failures on a healthy deployment, with a progress line', async () => {
    const { lines, error } = await verify();
    expect(error).toBeUndefined();
    expect(lines[0]).toMatch(/^checked \d+\/\d+ \(\d+%\), 0 failed$/);
    expect(lines.at(-1)).toMatch(/^verified 5 wrapped DEKs, 1 legacy passphrases, [1-9]\d* master-key values: 0 failed$/);
  });

  it('names an altered DEK by volume and key, an altered passphrase by volume, and exits with an error; no secret is printed', async () => {
    const wk = await s.app.db('kms_wrapped_key').where({ owner_uuid: volumesA[1] }).first();
    const blob = Buffer.from(wk.wrapped_blob);
    blob[blob.length - 1] ^= 1;
    await s.app.db('kms_wrapped_key').where({ id: wk.id }).update({ wrapped_blob: blob });
    const pass = await s.app.db('passphrase').first();
    // The legacy volume's passphrase under another authenticated place: it no longer opens.
    await s.app.db('passphrase').where({ id: pass.id }).update({ uuid: 'not-its-uuid' });

    const { lines, error } = await verify();
    expect(error?.message).toMatch(/^2 of \d+ secrets cannot be opened \(listed above\)$/);
    const failed = lines.filter((l) => l.startsWith('FAILED'));
    expect(failed).toEqual([
      expect.stringMatching(new RegExp(`^FAILED dek: volume a1 \\(${volumesA[1]}\\), KMS key ${keyA} v1: .+`)),
      expect.stringMatching(/^FAILED passphrase: volume legacy \([0-9a-f-]{36}\), passphrase \d+: .+/),
    ]);
    for (const secret of secrets) expect(lines.join('\n')).not.toContain(secret);

    // Limited to key B (or its zone) the check covers only its 2 DEKs, which are fine.
    for (const args of [['--key', keyB], ['--zone', zone2]]) {
      const r = await verify(args);
      expect(r.error).toBeUndefined();
      expect(r.lines.at(-1)).toBe('verified 2 wrapped DEKs, 0 legacy passphrases, 0 master-key values: 0 failed');
    }
    const byProfile = await verify(['--profile', profile]);
    expect(byProfile.lines.at(-1)).toBe('verified 5 wrapped DEKs, 0 legacy passphrases, 0 master-key values: 1 failed');

    await s.app.db('passphrase').where({ id: pass.id }).update({ uuid: pass.uuid });
    await s.app.db('kms_wrapped_key').where({ id: wk.id }).update({ wrapped_blob: wk.wrapped_blob });
    expect((await verify()).error).toBeUndefined();
  });

  it('refuses an unknown key, profile, zone or option, saying which', async () => {
    expect((await verify(['--key', 'nope'])).error?.message).toBe('KMS key nope not found');
    expect((await verify(['--zone', 'nope'])).error?.message).toBe('Zone nope not found');
    expect((await verify(['--profile', 'nope'])).error?.message).toBe('HSM profile nope not found');
    expect((await verify(['--rate', 'fast'])).error?.message).toBe('--rate must be a whole number (got fast)');
    expect((await verify(['--color', 'red'])).error?.message).toMatch(/^unknown or incomplete option --color\nusage: npm run admin/);
  });

  it('refuses, creating nothing, a mistyped KMS_DATA_DIR / DATABASE_URL, a database with no deployment, and no master key', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'kms-typo-'));
    const base = process.env.KMS_TEST_DATABASE_URL;
    const typoUrl = base ? Object.assign(new URL(base), { pathname: `/kms_typo_${randomBytes(4).toString('hex')}` }).toString() : undefined;
    const empty = await createTestDb(); // migrated, but no node ever started on it
    try {
      const typo = readEnv({ KMS_DATA_DIR: join(dataDir, 'kms-dat'), ...(typoUrl ? { DATABASE_URL: typoUrl } : {}) });
      for (const cmd of ['verify-keys', 'purge-archived-keks']) {
        await expect(runAdmin([cmd], typo, () => undefined)).rejects.toThrow(new RegExp(`^${cmd}: there is no database at (KMS_DATA_DIR|DATABASE_URL)`));
        await expect(runAdmin([cmd], readEnv({ KMS_DATA_DIR: empty.dataDir, KMS_MASTER_KEY: s.masterKey, ...(empty.databaseUrl ? { DATABASE_URL: empty.databaseUrl } : {}) }), () => undefined))
          .rejects.toThrow(/holds no deployment \(no master key version\)/);
      }
      // Nothing was created: no database file, no master key file, no MariaDB database.
      expect(existsSync(join(dataDir, 'kms-dat'))).toBe(false);
      expect(readdirSync(empty.dataDir).filter((f) => f.includes('master'))).toEqual([]);
      if (typoUrl) await expect(runAdmin(['verify-keys'], typo, () => undefined)).rejects.toThrow(/there is no database at DATABASE_URL/);
      // The live deployment without its master key: refused, no key file generated.
      const noKey = { ...s.app.env, masterKey: undefined, masterKeySeal: undefined, masterKeyFile: join(dataDir, 'master.key') };
      await expect(runAdmin(['verify-keys'], noKey, () => undefined)).rejects.toThrow(/^verify-keys: no master key given/);
      expect(existsSync(join(dataDir, 'master.key'))).toBe(false);
    } finally {
      await empty.drop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('exits with an error when it finds no secret to check', async () => {
    const { lines, error } = await verify(['--key', keyA, '--zone', zone2]);
    expect(lines.at(-1)).toMatch(/^verified 0 wrapped DEKs, 0 legacy passphrases, 0 master-key values: 0 failed$/);
    expect(error?.message).toMatch(/^verify-keys found no secret to check: is DATABASE_URL \/ KMS_DATA_DIR/);
  });
});
