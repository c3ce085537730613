import { startTestServer, ADMIN_KEYS, type TestServer } from '../support/server';

describe('listConfigurations name filter', () => {
  let s: TestServer;
  beforeAll(async () => { s = await startTestServer(); });
  afterAll(async () => { await s.close(); });

  it('matches the name as a substring, as CloudStack does', async () => {
    const res = await s.client.signed(ADMIN_KEYS, { command: 'listConfigurations', name: 'kms.rewrap' });
    expect(res.status).toBe(200);
    expect(res.body.configuration.map((c: any) => c.name).sort()).toEqual(['kms.rewrap.batch.size', 'kms.rewrap.interval.ms']);
    expect(res.body.count).toBe(2);
    const exact = await s.client.signed(ADMIN_KEYS, { command: 'listConfigurations', name: 'kms.retry.count' });
    expect(exact.body.configuration.map((c: any) => c.name)).toEqual(['kms.retry.count']);
    expect((await s.client.signed(ADMIN_KEYS, { command: 'listConfigurations', name: 'no.such.setting' })).body).toEqual({});
  });
});
