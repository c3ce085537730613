import { startTestServer, ADMIN_KEYS, type TestServer } from '../support/server';
import { adminCall, createActor } from '../support/actors';

describe('domains: the tree the UI shows at #/domain, and paths too long for the database', () => {
  let s: TestServer;
  let sub: { id: string };
  let child: { id: string };
  beforeAll(async () => {
    s = await startTestServer();
    sub = (await adminCall(s.client, { command: 'createDomain', name: 'sub' })).domain;
    child = (await adminCall(s.client, { command: 'createDomain', name: 'child', parentdomainid: sub.id })).domain;
    await adminCall(s.client, { command: 'createDomain', name: 'other' });
  });
  afterAll(async () => { await s.close(); });

  it('lists the children of a domain as the tree view asks (listAll, id, showicon)', async () => {
    const root = (await adminCall(s.client, { command: 'listDomains', listall: true, name: 'ROOT' })).domain[0];
    const first = await s.client.signed(ADMIN_KEYS, { command: 'listDomainChildren', listAll: true, id: root.id, showicon: true });
    expect(first.wrapper).toBe('listdomainchildrenresponse');
    expect(first.body.count).toBe(2);
    expect(first.body.domain.map((d: any) => d.name)).toEqual(['other', 'sub']);
    expect(first.body.domain.find((d: any) => d.name === 'sub')).toMatchObject({ id: sub.id, haschild: true, level: 1, parentdomainid: root.id, parentdomainname: 'ROOT', path: 'ROOT/sub', state: 'Active' });
    const all = await adminCall(s.client, { command: 'listDomainChildren', id: root.id, isrecursive: true });
    expect(all.domain.map((d: any) => d.path)).toEqual(['ROOT/other', 'ROOT/sub', 'ROOT/sub/child']);
    expect(await adminCall(s.client, { command: 'listDomainChildren', id: child.id })).toEqual({});
  });

  it('keeps a domain admin inside its tree, and is not for users', async () => {
    const subAdmin = await createActor(s.client, { name: 'subadmin', domainId: sub.id, accountType: 2 });
    expect((await s.client.signed(subAdmin.keys, { command: 'listDomainChildren' })).body.domain.map((d: any) => d.name)).toEqual(['child']);
    const root = (await adminCall(s.client, { command: 'listDomains', listall: true, name: 'ROOT' })).domain[0];
    expect((await s.client.signed(subAdmin.keys, { command: 'listDomainChildren', id: root.id })).status).toBe(531);
    const user = await createActor(s.client, { name: 'plainuser' });
    expect((await s.client.signed(user.keys, { command: 'listDomainChildren' })).status).toBe(432);
  });

  it('refuses a domain whose path would not fit, with a 431 naming the length, and creates nothing', async () => {
    const a = (await adminCall(s.client, { command: 'createDomain', name: 'a'.repeat(250) })).domain;
    const b = (await adminCall(s.client, { command: 'createDomain', name: 'b'.repeat(250), parentdomainid: a.id })).domain;
    const res = await s.client.signed(ADMIN_KEYS, { command: 'createDomain', name: 'c'.repeat(20), parentdomainid: b.id });
    expect(res.status).toBe(431);
    expect(res.body).toMatchObject({ errorcode: 431, cserrorcode: 4350 });
    // "/" + 250 + "/" + 250 + "/" + 20 + "/" = 524 characters
    expect(res.body.errortext).toBe(`Domain path too long: the path of domain ${'c'.repeat(20)} under ${'b'.repeat(250)} would be 524 characters, more than the maximum of 512; use a shorter name`);
    expect(await s.app.db('domain').where('name', 'c'.repeat(20)).first()).toBeUndefined();
    // A name that still fits is fine.
    expect((await s.client.signed(ADMIN_KEYS, { command: 'createDomain', name: 'c'.repeat(8), parentdomainid: b.id })).status).toBe(200);
  });
});
