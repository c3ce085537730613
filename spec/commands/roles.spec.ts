import { createActor } from '../support/actors';
import { ADMIN_KEYS, startTestServer, type TestServer } from '../support/server';

/**
 * CloudStack's dynamic roles as the UI's Add Account form uses them: listRoles gives the four
 * default roles, createAccount takes roleid (the account type follows from the role), and accounts
 * and users answer roleid, rolename and roletype.
 */
describe('roles', () => {
  let s: TestServer;
  beforeAll(async () => { s = await startTestServer(); });
  afterAll(async () => { await s.close(); });

  const roles = async (keys = ADMIN_KEYS) => (await s.client.signed(keys, { command: 'listRoles' }));

  it('lists the four default roles for the root admin, and the Domain Admin and User roles for a domain admin', async () => {
    const all = (await roles()).body;
    expect(all.count).toBe(4);
    expect(all.role.map((r: any) => [r.name, r.type, r.isdefault])).toEqual([
      ['Root Admin', 'Admin', true], ['Resource Admin', 'ResourceAdmin', true], ['Domain Admin', 'DomainAdmin', true], ['User', 'User', true],
    ]);
    const da = await createActor(s.client, { name: `da${Date.now()}`, accountType: 2 });
    expect((await roles(da.keys)).body.role.map((r: any) => r.name)).toEqual(['Domain Admin', 'User']);
    const user = await createActor(s.client, { name: `u${Date.now()}` });
    expect((await roles(user.keys)).status).toBe(432);
    expect((await s.client.signed(ADMIN_KEYS, { command: 'listRoles', type: 'User' })).body.role.map((r: any) => r.name)).toEqual(['User']);
    // The type matches exactly, as CloudStack's RoleType.fromString.
    expect((await s.client.signed(ADMIN_KEYS, { command: 'listRoles', type: 'user' })).body.role ?? []).toEqual([]);
  });

  it('creates an account under a role: the type follows from the role, and the account and its user name it', async () => {
    const byName = Object.fromEntries((await roles()).body.role.map((r: any) => [r.name, r]));
    const name = `dadmin${Date.now()}`;
    const res = await s.client.signed(ADMIN_KEYS, {
      command: 'createAccount', username: name, password: 'secret-pw', firstname: 'D', lastname: 'A', email: 'd@example.com', roleid: byName['Domain Admin'].id,
    });
    expect(res.status).toBe(200);
    expect(res.body.account).toMatchObject({ accounttype: 2, roleid: byName['Domain Admin'].id, rolename: 'Domain Admin', roletype: 'DomainAdmin' });
    expect(res.body.account.user[0]).toMatchObject({ roleid: byName['Domain Admin'].id, rolename: 'Domain Admin', roletype: 'DomainAdmin' });
    const user = (await s.client.signed(ADMIN_KEYS, { command: 'listUsers', username: name, listall: true })).body.user[0];
    expect(user).toMatchObject({ roleid: byName['Domain Admin'].id, roletype: 'DomainAdmin' });
  });

  it('refuses an unknown role and the Resource Admin role (431), and creates nothing', async () => {
    const byName = Object.fromEntries((await roles()).body.role.map((r: any) => [r.name, r]));
    const before = (await s.client.signed(ADMIN_KEYS, { command: 'listAccounts', listall: true })).body.count;
    const base = { command: 'createAccount', password: 'secret-pw', firstname: 'R', lastname: 'A' };
    const unknown = await s.client.signed(ADMIN_KEYS, { ...base, username: `r1${Date.now()}`, roleid: '00000000-0000-4000-8000-000000000000' });
    expect(unknown.status).toBe(431);
    expect(unknown.body.errortext).toMatch(/^Unable to find role by id/);
    const resource = await s.client.signed(ADMIN_KEYS, { ...base, username: `r2${Date.now()}`, roleid: byName['Resource Admin'].id });
    expect(resource.status).toBe(431);
    expect(resource.body.errortext).toMatch(/Resource Admin is not supported/);
    expect((await s.client.signed(ADMIN_KEYS, { command: 'listAccounts', listall: true })).body.count).toBe(before);
  });
});
