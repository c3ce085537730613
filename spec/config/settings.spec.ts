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
