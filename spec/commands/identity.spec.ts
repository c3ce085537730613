import { startTestServer, ADMIN_KEYS, type TestServer } from '../support/server';
import { adminCall, createActor, type Keys } from '../support/actors';

describe('identity commands and CloudStack list visibility', () => {
  let s: TestServer;
  let sub: { id: string };
  let child: { id: string };
  let subAdmin: Awaited<ReturnType<typeof createActor>>;
  let subUser: Awaited<ReturnType<typeof createActor>>;
  let childUser: Awaited<ReturnType<typeof createActor>>;
  let rootUser: Awaited<ReturnType<typeof createActor>>;
  const names = (body: any, key: string, field = 'name') => (body[key] ?? []).map((x: any) => x[field]).sort();
  const call = (keys: Keys, p: Record<string, string | number | boolean>) => s.client.signed(keys, p);

  beforeAll(async () => {
    s = await startTestServer();
    sub = (await adminCall(s.client, { command: 'createDomain', name: 'sub' })).domain;
    child = (await adminCall(s.client, { command: 'createDomain', name: 'child', parentdomainid: sub.id })).domain;
    subAdmin = await createActor(s.client, { name: 'subadmin', domainId: sub.id, accountType: 2 });
    subUser = await createActor(s.client, { name: 'subuser', domainId: sub.id });
    childUser = await createActor(s.client, { name: 'childuser', domainId: child.id });
    rootUser = await createActor(s.client, { name: 'rootuser' });
  });
  afterAll(async () => { await s.close(); });

  it('shows domains with their CloudStack paths', async () => {
    const body = await adminCall(s.client, { command: 'listDomains', listall: true });
    expect(body.domain.map((d: any) => d.path).sort()).toEqual(['ROOT', 'ROOT/sub', 'ROOT/sub/child']);
    expect(body.domain.find((d: any) => d.name === 'sub')).toMatchObject({ level: 1, haschild: true, parentdomainname: 'ROOT' });
  });

  it('lets a user see only its own account, whatever it asks', async () => {
    expect(names((await call(subUser.keys, { command: 'listAccounts', listall: true })).body, 'account')).toEqual(['subuser']);
    expect(names((await call(subUser.keys, { command: 'listUsers', listall: true })).body, 'user', 'username')).toEqual(['subuser']);
    const other = await call(subUser.keys, { command: 'listAccounts', domainid: child.id });
    expect(other.status).toBe(531);
  });

  it('lets a domain admin see its subtree with listall, and nothing outside it', async () => {
    const all = (await call(subAdmin.keys, { command: 'listAccounts', listall: true })).body;
    expect(names(all, 'account')).toEqual(['childuser', 'subadmin', 'subuser']);
    const own = (await call(subAdmin.keys, { command: 'listAccounts' })).body;
    expect(names(own, 'account')).toEqual(['subadmin', 'subuser']);
    const recursive = (await call(subAdmin.keys, { command: 'listUsers', domainid: sub.id, isrecursive: true })).body;
    expect(names(recursive, 'user', 'username')).toEqual(['childuser', 'subadmin', 'subuser']);
    const outside = await call(subAdmin.keys, { command: 'listAccounts', domainid: (await adminCall(s.client, { command: 'listDomains' })).domain[0].id });
    expect(outside.status).toBe(531);
    const byName = (await call(subAdmin.keys, { command: 'listAccounts', account: 'childuser', domainid: child.id })).body;
    expect(names(byName, 'account')).toEqual(['childuser']);
  });

  it('lets a domain admin create accounts only inside its subtree and never root admins', async () => {
    const inside = await call(subAdmin.keys, { command: 'createAccount', username: 'made-by-sub', password: 'pw-123456', firstname: 'M', lastname: 'S', domainid: child.id });
    expect(inside.status).toBe(200);
    expect(inside.body.account).toMatchObject({ name: 'made-by-sub', domainpath: 'ROOT/sub/child', roletype: 'User' });
    const root = await call(subAdmin.keys, { command: 'createAccount', username: 'evil', password: 'pw-123456', firstname: 'E', lastname: 'V', accounttype: 1 });
    expect(root.status).toBe(531);
    const outside = await call(subAdmin.keys, { command: 'createAccount', username: 'out', password: 'pw-123456', firstname: 'O', lastname: 'U', domainid: (await adminCall(s.client, { command: 'listDomains' })).domain[0].id });
    expect(outside.status).toBe(531);
  });

  it('lets the root admin see everything with listall, and its own account without', async () => {
    const all = (await call(ADMIN_KEYS, { command: 'listUsers', listall: true })).body;
    expect(all.count).toBeGreaterThanOrEqual(6);
    expect(names((await call(ADMIN_KEYS, { command: 'listAccounts' })).body, 'account')).toEqual(['admin', 'rootuser']);
  });

  it('keeps API keys per user: getUserKeys for the user itself and admins, refused to others', async () => {
    const own = await call(childUser.keys, { command: 'getUserKeys', id: childUser.userId });
    expect(own.body.userkeys).toEqual({ apikey: childUser.keys.apiKey, secretkey: childUser.keys.secretKey });
    expect((await call(subAdmin.keys, { command: 'getUserKeys', id: childUser.userId })).status).toBe(200);
    expect((await call(subUser.keys, { command: 'getUserKeys', id: childUser.userId })).status).toBe(531);
    expect((await call(rootUser.keys, { command: 'registerUserKeys', id: childUser.userId })).status).toBe(531);
    const row = await s.app.db('user').where({ uuid: childUser.userId }).first();
    expect(String(row.secret_key)).not.toContain(childUser.keys.secretKey);
  });

  describe('paging, as CloudStack BaseListCmd', () => {
    it('counts the total and returns the page', async () => {
      const page = (await call(ADMIN_KEYS, { command: 'listUsers', listall: true, page: 2, pagesize: 2 })).body;
      const all = (await call(ADMIN_KEYS, { command: 'listUsers', listall: true })).body;
      expect(page.count).toBe(all.count);
      expect(page.user.map((u: any) => u.id)).toEqual(all.user.slice(2, 4).map((u: any) => u.id));
    });

    it.each([
      [{ pagesize: 2 }, '"page" parameter is required when "pagesize" is specified'],
      [{ page: 1 }, '"pagesize" parameter is required when "page" is specified'],
      [{ page: 1, pagesize: 501 }, "Page size can't exceed max allowed page size value: 500"],
    ])('refuses %j with a 431', async (paging, text) => {
      const res = await call(ADMIN_KEYS, { command: 'listUsers', ...paging });
      expect(res.status).toBe(431);
      expect(res.body.errortext).toBe(text);
    });

    it('answers an empty list as {}', async () => {
      expect((await call(ADMIN_KEYS, { command: 'listUsers', username: 'nobody' })).body).toEqual({});
    });

    it('answers a page past the end with the count only', async () => {
      const res = (await call(ADMIN_KEYS, { command: 'listUsers', listall: true, page: 50, pagesize: 10 })).body;
      expect(Object.keys(res)).toEqual(['count']);
    });
  });
});
