import { randomBytes } from 'node:crypto';
import { MasterKey } from '../../src/config/master-key';
import { SecretBytes } from '../../src/core/secret-bytes';
import { silentLogger } from '../../src/core/logger';
import { createDatabaseProvider } from '../../src/providers/database/database-provider';
import { DatabaseKekRepository } from '../../src/db/repositories/database-keks';
import type { HsmProfileConfig } from '../../src/providers/provider';
import { createTestDb, type TestDb } from '../support/db';
import { kekProviderContract, rejection } from './kek-provider-contract';

const profile = (name: string): HsmProfileConfig => ({ id: `p-${randomBytes(4).toString('hex')}`, name, protocol: 'database', details: {} });

kekProviderContract('database', async () => {
  const t = await createTestDb();
  const provider = createDatabaseProvider({ keks: new DatabaseKekRepository(t.db), masterKey: new MasterKey(randomBytes(32)), logger: silentLogger });
  return {
    provider,
    profile: profile('db-a'),
    otherProfile: profile('db-b'),
    teardown: async () => {
      await provider.close();
      await t.drop();
    },
  };
});

describe('database provider', () => {
  let t: TestDb;
  const masterKey = new MasterKey(randomBytes(32));
  beforeAll(async () => {
    t = await createTestDb();
  });
  afterAll(async () => {
    await t.drop();
  });

  it('stores the KEK only encrypted under the master key, bound to its label', async () => {
    const provider = createDatabaseProvider({ keks: new DatabaseKekRepository(t.db), masterKey, logger: silentLogger, cacheMax: 0 });
    const kek = { profile: profile('db'), label: `kek-${randomBytes(4).toString('hex')}` };
    await provider.createKek(kek, 256);
    const row = await t.db('kms_database_kek_objects').where({ label: kek.label }).first();
    expect(row.key_material).toMatch(/^mk1:/);
    expect(Number(row.key_bits)).toBe(256);
    expect(typeof Number(row.created)).toBe('number');
    const raw = masterKey.decrypt(row.key_material, kek.label);
    expect(raw.length).toBe(32);
    expect(() => masterKey.decrypt(row.key_material, 'another-label')).toThrow();
    raw.fill(0);

    const other = { profile: kek.profile, label: `kek-${randomBytes(4).toString('hex')}` };
    await t.db('kms_database_kek_objects').insert({ uuid: randomBytes(8).toString('hex'), label: other.label, key_material: row.key_material, key_bits: 256, created: Date.now() });
    const err = await rejection(provider.generateAndWrap({ kek: other, bytes: 32, aad: Buffer.alloc(0) }));
    expect(err.kind).toBe('integrity');
    await provider.close();
  });

  it('soft-deletes on destroy (removed is an epoch-ms time), wipes the material, and allows the label again afterwards', async () => {
    const provider = createDatabaseProvider({ keks: new DatabaseKekRepository(t.db), masterKey, logger: silentLogger });
    const kek = { profile: profile('db'), label: `kek-${randomBytes(4).toString('hex')}` };
    await provider.createKek(kek, 128);
    const before = Date.now();
    await provider.destroyKek(kek);
    const rows = await t.db('kms_database_kek_objects').where({ label: kek.label });
    expect(rows).toHaveLength(1);
    expect(Number(rows[0].removed)).toBeGreaterThanOrEqual(before);
    expect(rows[0].key_material).toBe('');
    await provider.createKek(kek, 128);
    expect(await provider.hasKek(kek)).toBe(true);
    await provider.close();
  });

  it('stops using a cached KEK once it is destroyed', async () => {
    const provider = createDatabaseProvider({ keks: new DatabaseKekRepository(t.db), masterKey, logger: silentLogger });
    const kek = { profile: profile('db'), label: `kek-${randomBytes(4).toString('hex')}` };
    await provider.createKek(kek, 256);
    const dek = SecretBytes.random(32);
    await provider.wrap({ kek, dek, aad: Buffer.alloc(0) });
    await provider.destroyKek(kek);
    expect((await rejection(provider.wrap({ kek, dek, aad: Buffer.alloc(0) }))).message).toBe(`KEK not found: ${kek.label}`);
    dek.dispose();
    await provider.close();
  });

  it('takes no profile details', () => {
    const provider = createDatabaseProvider({ keks: new DatabaseKekRepository(t.db), masterKey, logger: silentLogger });
    expect(provider.validateProfile({})).toEqual([]);
    expect(provider.validateProfile({ pin: 'x' })).toEqual(["Unknown detail 'pin': the database provider takes no profile details"]);
    expect(provider.capabilities.inBackendRewrap).toBe(false);
  });

  it('reports a closed database as unavailable and retryable', async () => {
    const t2 = await createTestDb();
    const provider = createDatabaseProvider({ keks: new DatabaseKekRepository(t2.db), masterKey, logger: silentLogger });
    await t2.drop();
    const err = await rejection(provider.hasKek({ profile: profile('db'), label: 'x' }));
    expect(err.kind).toBe('unavailable');
    expect(err.retryable).toBe(true);
  });
});
