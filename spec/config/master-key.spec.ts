import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { MasterKey } from '../../src/config/master-key';

describe('the server master key', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'kms-mk-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('is generated once into a 0600 file that every later start (and every node given it) reuses', () => {
    const file = join(dir, 'sub', 'master.key');
    const first = MasterKey.load({ file });
    expect(first.generated).toBe(true);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const again = MasterKey.load({ file });
    expect(again.generated).toBe(false);
    const fromEnv = MasterKey.load({ file: join(dir, 'unused'), fromEnv: readFileSync(file, 'utf8') });
    const sealed = first.key.encryptString('pin-1234', 'ctx');
    expect(again.key.decryptString(sealed, 'ctx')).toBe('pin-1234');
    expect(fromEnv.key.decryptString(sealed, 'ctx')).toBe('pin-1234');
  });

  it('binds a ciphertext to its place and to its key', () => {
    const key = new MasterKey(randomBytes(32));
    const sealed = key.encryptString('secret', 'passphrase:a');
    expect(sealed).not.toContain('secret');
    expect(() => key.decryptString(sealed, 'passphrase:b')).toThrow(/failed authentication/);
    expect(() => new MasterKey(randomBytes(32)).decryptString(sealed, 'passphrase:a')).toThrow(/failed authentication/);
  });

  it('refuses a KMS_MASTER_KEY that is not 32 bytes of base64, saying how to make one', () => {
    expect(() => MasterKey.load({ file: join(dir, 'x'), fromEnv: 'short' })).toThrow(/32 bytes encoded in base64/);
  });

  it('never prints its bytes', () => {
    expect(String(new MasterKey(randomBytes(32)))).toBe('MasterKey(1 version, active 1)');
  });
});

describe('starting on a database set up with another master key', () => {
  it('fails with a sentence saying every node needs the same key', async () => {
    const { createTestDb } = await import('../support/db');
    const { createApp } = await import('../../src/app');
    const { readEnv } = await import('../../src/config/env');
    const { silentLogger } = await import('../../src/core/logger');
    const t = await createTestDb();
    await t.db.destroy();
    const env = (key: string) => readEnv({ KMS_DATA_DIR: t.dataDir, KMS_MASTER_KEY: key, ...(t.databaseUrl ? { DATABASE_URL: t.databaseUrl } : {}) });
    const first = await createApp(env(randomBytes(32).toString('base64')), { logger: silentLogger });
    await first.app.close();
    await expect(createApp(env(randomBytes(32).toString('base64')), { logger: silentLogger }))
      .rejects.toThrow('The master key does not match this database: it was set up with another KMS_MASTER_KEY (or master.key file). Every node of a deployment needs the same master key.');
    await t.drop();
  });
});
