import { startTestServer, ADMIN_KEYS, type TestServer } from '../support/server';

/** cmk's hard type assertions on `cmk sync` (reference/cloudstack-api-protocol.md §5.2). */
function assertCmkCompatible(body: any): void {
  expect(Array.isArray(body.api)).toBe(true);
  expect(body.api.length).toBeGreaterThan(0);
  expect(body.count).toBe(body.api.length);
  for (const api of body.api) {
    expect(typeof api.name).toBe('string');
    expect(typeof api.description).toBe('string');
    expect(typeof api.isasync).toBe('boolean');
    expect(Array.isArray(api.params)).toBe(true);
    expect(Array.isArray(api.response)).toBe(true);
    if (api.related !== undefined) expect(typeof api.related).toBe('string');
    for (const p of api.params) {
      expect(typeof p.name).toBe('string');
      expect(typeof p.type).toBe('string');
      expect(['boolean', 'date', 'float', 'double', 'integer', 'short', 'list', 'long', 'object', 'map', 'string', 'uuid']).toContain(p.type);
      expect(typeof p.description).toBe('string');
      expect(typeof p.required).toBe('boolean');
      expect(p.length).toBe(typeof p.length === 'number' ? p.length : 255);
      if (p.related !== undefined) expect(typeof p.related).toBe('string');
    }
    for (const r of api.response) {
      expect(typeof r.name).toBe('string');
      expect(typeof r.type).toBe('string');
    }
  }
}

describe('listApis', () => {
  let s: TestServer;
  beforeAll(async () => { s = await startTestServer(); });
  afterAll(async () => { await s.close(); });

  it('meets every type cmk asserts on `cmk sync listall=true`', async () => {
    const res = await s.client.signed(ADMIN_KEYS, { command: 'listApis', listall: true });
    expect(res.status).toBe(200);
    assertCmkCompatible(res.body);
    const names = res.body.api.map((a: any) => a.name);
    expect(names).toEqual(expect.arrayContaining(['listZones', 'createZone', 'login', 'logout', 'listApis', 'updateConfiguration']));
  });

  it('points zoneid-like parameters at list commands so cmk can complete them', async () => {
    const res = await s.client.signed(ADMIN_KEYS, { command: 'listApis', name: 'listZones' });
    expect(res.body.count).toBe(1);
    const id = res.body.api[0].params.find((p: any) => p.name === 'id');
    expect(id).toMatchObject({ type: 'uuid', related: 'listZones', required: false, length: 255 });
  });

  it('shows a normal user only the APIs its role may call', async () => {
    const acct = await s.client.signed(ADMIN_KEYS, { command: 'createAccount', username: 'u1', password: 'secret-pw-1', firstname: 'U', lastname: 'One' });
    const keys = (await s.client.signed(ADMIN_KEYS, { command: 'registerUserKeys', id: acct.body.account.user[0].id })).body.userkeys;
    const res = await s.client.signed({ apiKey: keys.apikey, secretKey: keys.secretkey }, { command: 'listApis' });
    assertCmkCompatible(res.body);
    const names = res.body.api.map((a: any) => a.name);
    expect(names).toContain('listZones');
    expect(names).not.toContain('createZone');
    expect(names).not.toContain('updateConfiguration');
    const denied = await s.client.signed({ apiKey: keys.apikey, secretKey: keys.secretkey }, { command: 'createZone', name: 'z' });
    expect(denied.status).toBe(432);
    expect(denied.body.errortext).toMatch(/^The API \[createZone\] does not exist or is not available for the account for user id \[/);
  });

  it('answers 530 for an unknown api name', async () => {
    const res = await s.client.signed(ADMIN_KEYS, { command: 'listApis', name: 'noSuchApi' });
    expect(res.status).toBe(530);
  });
});
