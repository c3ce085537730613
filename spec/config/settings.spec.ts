import { Settings } from '../../src/config/settings';
import { ConfigurationRepository } from '../../src/db/repositories/configuration';
import { createTestDb, type TestDb } from '../support/db';

/**
 * Settings are read on every request and every backend call, so each process caches them for a
 * second; a change made with updateConfiguration is seen at once by the process that made it and
 * within two seconds by every other process of the deployment (here: two Settings over one database).
 */
describe('cached settings', () => {
  let t: TestDb;
  beforeAll(async () => { t = await createTestDb(); });
  afterAll(async () => { await t.drop(); });

  it('serve repeated reads without the database, and a change at once on its own node and within 2 s on another', async () => {
    const here = new Settings(new ConfigurationRepository(t.db));
    const there = new Settings(new ConfigurationRepository(t.db));
    expect(await there.get('kms.retry.count')).toBe('3');

    let queries = 0;
    const count = () => { queries++; };
    t.db.on('query', count);
    for (let i = 0; i < 50; i++) await there.get('kms.retry.count');
    t.db.off('query', count);
    expect(queries).toBe(0);

    await here.set('kms.retry.count', '5');
    expect(await here.get('kms.retry.count')).toBe('5');
    const changedAt = Date.now();
    let seen = await there.get('kms.retry.count');
    while (seen !== '5' && Date.now() - changedAt < 2000) {
      await new Promise((r) => setTimeout(r, 50));
      seen = await there.get('kms.retry.count');
    }
    expect(seen).toBe('5');
  });
});

/**
 * Scoped values (CloudStack's zone, domain and account settings): a value stored for one scope
 * applies only to reads made there, the most specific first; a setting without that scope refuses
 * it. Every setting this server ships is global only (as CloudStack 4.23 declares them), so a
 * setting declared here exercises the scopes.
 */
describe('scoped settings', () => {
  let t: TestDb;
  beforeAll(async () => { t = await createTestDb(); });
  afterAll(async () => { await t.drop(); });

  const scoped = {
    name: 'test.scoped.number', scopes: ['zone', 'domain', 'account'] as const, category: 'Advanced', type: 'Number' as const,
    defaultValue: '7', description: 'a setting with every scope', validate: (v: string) => (/^\d+$/.test(v) ? undefined : 'must be a number'),
  };
  const name = scoped.name as never;

  it('applies a value only in its scope, account before domain before zone before global', async () => {
    const settings = new Settings(new ConfigurationRepository(t.db), 1000, [scoped]);
    await settings.set(scoped.name, '10');
    await settings.set(scoped.name, '20', { scope: 'zone', id: 1 });
    await settings.set(scoped.name, '30', { scope: 'domain', id: 5 });
    await settings.set(scoped.name, '40', { scope: 'account', id: 9 });
    expect(await settings.get(name)).toBe('10');
    expect(await settings.get(name, { zoneId: 2, domainId: 6, accountId: 8 })).toBe('10');
    expect(await settings.get(name, { zoneId: 1 })).toBe('20');
    expect(await settings.get(name, { zoneId: 1, domainId: 5 })).toBe('30');
    expect(await settings.get(name, { zoneId: 1, domainId: 5, accountId: 9 })).toBe('40');
    expect(await settings.get(name, { zoneId: 1, domainId: 5, accountId: 10 })).toBe('30');
    expect((await settings.inScope('domain', { domainId: 5 })).map((v) => v.value)).toEqual(['30']);
    expect((await settings.inScope('domain', { domainId: 6 })).map((v) => v.value)).toEqual(['10']);

    await settings.reset(scoped.name, { scope: 'domain', id: 5 });
    expect(await settings.get(name, { zoneId: 1, domainId: 5 })).toBe('20');
    await settings.reset(scoped.name);
    expect(await settings.get(name)).toBe('7');
    expect(await settings.get(name, { accountId: 9 })).toBe('40');
  });

  it('refuses a scope the setting does not have, and changes nothing', async () => {
    const settings = new Settings(new ConfigurationRepository(t.db));
    await settings.set('kms.retry.count', '3');
    await expect(settings.set('kms.retry.count', '9', { scope: 'domain', id: 1 }))
      .rejects.toMatchObject({ kind: 'param', message: expect.stringMatching(/^Invalid scope id provided for the parameter kms\.retry\.count: it has no domain scope/) });
    await expect(settings.reset('kms.retry.count', { scope: 'account', id: 1 })).rejects.toMatchObject({ kind: 'param' });
    expect(await settings.get('kms.retry.count', { domainId: 1 })).toBe('3');
    expect(await new ConfigurationRepository(t.db).getScoped('kms.retry.count', 'domain', 1)).toBeUndefined();
  });
});
