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

/**
 * Scopes as CloudStack's updateConfiguration/listConfigurations/resetConfiguration have them: every
 * setting here is global only (CloudStack 4.23 declares the kms.* keys Global), so a zone, domain or
 * account value is refused with CloudStack's 431 and the global value never changes.
 */
describe('configuration scopes', () => {
  let s: TestServer;
  let rootDomainId: string;
  beforeAll(async () => {
    s = await startTestServer();
    rootDomainId = (await s.client.signed(ADMIN_KEYS, { command: 'listDomains', listall: true })).body.domain[0].id;
  });
  afterAll(async () => { await s.close(); });

  const global = async (name: string) => (await s.client.signed(ADMIN_KEYS, { command: 'listConfigurations', name })).body.configuration[0];

  it('refuses a domain value of a global-only setting and leaves the global value as it was', async () => {
    expect((await s.client.signed(ADMIN_KEYS, { command: 'updateConfiguration', name: 'kms.retry.count', value: '4' })).status).toBe(200);
    const res = await s.client.signed(ADMIN_KEYS, { command: 'updateConfiguration', name: 'kms.retry.count', value: '9', domainid: rootDomainId });
    expect(res.status).toBe(431);
    expect(res.body).toMatchObject({ errorcode: 431, cserrorcode: 4350 });
    expect(res.body.errortext).toMatch(/^Invalid scope id provided for the parameter kms\.retry\.count: it has no domain scope/);
    expect(await global('kms.retry.count')).toMatchObject({ value: '4', scope: 'global' });
    const account = (await s.client.signed(ADMIN_KEYS, { command: 'listAccounts', listall: true })).body.account[0].id;
    expect((await s.client.signed(ADMIN_KEYS, { command: 'updateConfiguration', name: 'kms.dek.size.bits', value: '128', accountid: account })).status).toBe(431);
    expect((await s.client.signed(ADMIN_KEYS, { command: 'resetConfiguration', name: 'kms.retry.count', domainid: rootDomainId })).status).toBe(431);
    expect(await global('kms.retry.count')).toMatchObject({ value: '4' });
    expect(await global('kms.dek.size.bits')).toMatchObject({ value: '256' });
  });

  it('lists only the settings of the scope asked for (none here), refuses two scopes at once and unknown ids', async () => {
    expect((await s.client.signed(ADMIN_KEYS, { command: 'listConfigurations', domainid: rootDomainId })).body).toEqual({});
    const both = await s.client.signed(ADMIN_KEYS, { command: 'listConfigurations', domainid: rootDomainId, accountid: rootDomainId });
    expect(both.status).toBe(431);
    expect(both.body.errortext).toBe('cannot handle multiple IDs, provide only one ID corresponding to the scope');
    const unknown = await s.client.signed(ADMIN_KEYS, { command: 'updateConfiguration', name: 'kms.retry.count', value: '2', zoneid: '00000000-0000-4000-8000-000000000000' });
    expect(unknown.status).toBe(431);
    expect(await global('kms.retry.count')).toMatchObject({ value: '4' });
  });

  it('resets the global value to the default', async () => {
    const res = await s.client.signed(ADMIN_KEYS, { command: 'resetConfiguration', name: 'kms.retry.count' });
    expect(res.status).toBe(200);
    expect(res.body.configuration).toMatchObject({ name: 'kms.retry.count', value: '3', scope: 'global' });
    expect(await global('kms.retry.count')).toMatchObject({ value: '3' });
  });
});
