import { startTestServer, type TestServer } from '../support/server';

describe('session login as the CloudStack UI does it', () => {
  let s: TestServer;
  beforeAll(async () => { s = await startTestServer(); });
  afterAll(async () => { await s.close(); });

  it('logs in, calls with the sessionkey, and logs out', async () => {
    // The UI fires a logout before every login; without a session that is a 431.
    const pre = await fetch(`${s.url}/client/api/`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'command=logout&response=json' });
    expect(pre.status).toBe(431);
    expect(((await pre.json()) as any).logoutresponse).toEqual({ uuidList: [], errorcode: 431, cserrorcode: 9999, errortext: 'Session not found for the logout process.' });

    const session = await s.client.login('admin', 'password');
    expect(session.login).toMatchObject({ username: 'admin', account: 'admin', type: '1', timeout: 1800, registered: 'false', is2faenabled: 'false' });
    // admin has no timezone: the offset is still there, as CloudStack sends it, and parses as JSON.
    expect(session.login.timezone).toBeUndefined();
    expect(session.login.timezoneoffset).toBe('0.0');
    expect(JSON.parse(session.login.timezoneoffset)).toBe(0);
    expect(session.sessionKey).toMatch(/^[A-Za-z0-9_-]{27}$/);
    expect(session.cookies).toMatch(/JSESSIONID=node0[0-9a-f]+\.node0/);
    expect(session.cookies).toContain(`sessionkey=${session.sessionKey}`);

    const users = await session.get({ command: 'listUsers', id: session.login.userid, showicon: true });
    expect(users.status).toBe(200);
    expect(users.body.user[0]).toMatchObject({ id: session.login.userid, roletype: 'Admin', rolename: 'Root Admin', account: 'admin' });
    for (const f of ['firstname', 'lastname', 'accountid', 'domainid', 'domain']) expect(users.body.user[0][f]).toEqual(expect.any(String));

    const apis = await session.get({ command: 'listApis' });
    expect(Array.isArray(apis.body.api)).toBe(true);
    const caps = await session.get({ command: 'listCapabilities' });
    expect(caps.body.capability).toMatchObject({ cloudstackversion: '4.23.0.0', defaultuipagesize: 20, securitygroupsenabled: false });
    expect((await session.get({ command: 'listLdapConfigurations' })).wrapper).toBe('ldapconfigurationresponse');
    expect((await session.get({ command: 'listZones' })).body).toEqual({});
    expect((await session.get({ command: 'cloudianIsEnabled' })).body.cloudianisenabled.enabled).toBe(false);
    expect((await session.get({ command: 'listProjects', listall: true })).body).toEqual({});

    const out = await session.post({ command: 'logout' });
    expect(out.body).toEqual({ description: 'success' });
    expect(out.headers.getSetCookie().sort()).toEqual(['JSESSIONID=; Max-Age=0; Path=/client', 'sessionkey=; Max-Age=0']);
    expect((await session.get({ command: 'listZones' })).status).toBe(401);
  });

  it('answers the pre-login calls of the UI without credentials', async () => {
    expect((await s.client.raw('command=listGuiThemes&response=json')).body).toEqual({});
    // CloudStack without SAML has no listIdps: an anonymous call is a 401, which the UI's request
    // handler lets through for listIdps (its login page then shows no SAML tab).
    const idps = await s.client.raw('command=listIdps&response=json');
    expect(idps.status).toBe(401);
    expect(idps.wrapper).toBe('errorresponse');
    expect((await s.client.raw('command=listOauthProvider&response=json')).body).toEqual({});
    const fp = await fetch(`${s.url}/client/api/`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'command=forgotPassword&response=json' });
    expect(await fp.json()).toEqual({ forgotpasswordresponse: { enabled: false } });
  });

  it('answers listGuiThemes with a session cookie but no sessionkey, keeping the session', async () => {
    const session = await s.client.login('admin', 'password');
    const themes = await s.client.raw('command=listGuiThemes&response=json', { headers: { cookie: session.cookies.split('; ').filter((c) => c.startsWith('JSESSIONID')).join('; ') } });
    expect(themes.status).toBe(200);
    expect((await session.get({ command: 'listZones' })).status).toBe(200);
  });

  it('gives the offset of the user\'s time zone in hours, as CloudStack prints a float', async () => {
    const admin = await s.client.login('admin', 'password');
    const zones: Array<[string, string]> = [['Asia/Kolkata', '5.5'], ['UTC', '0.0'], ['Asia/Tokyo', '9.0']];
    for (const [i, [timezone, offset]] of zones.entries()) {
      const created = await admin.post({ command: 'createAccount', username: `tz${i}`, password: 'pw-tz-12345', firstname: 'T', lastname: 'Z', accounttype: 0, timezone });
      expect(created.status).toBe(200);
      const login = (await s.client.login(`tz${i}`, 'pw-tz-12345')).login;
      expect({ timezone: login.timezone, timezoneoffset: login.timezoneoffset }).toEqual({ timezone, timezoneoffset: offset });
    }
  });

  it('takes the domain as a path, a uuid or a numeric id', async () => {
    const root = (await (await s.client.login('admin', 'password')).get({ command: 'listDomains' })).body.domain[0];
    const domains: Array<Record<string, string>> = [{ domain: '/' }, { domainid: root.id }, { domainid: '1' }];
    for (const domain of domains) {
      const res = await fetch(`${s.url}/client/api/`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ command: 'login', username: 'admin', password: 'password', response: 'json', ...domain }).toString() });
      expect(res.status).toBe(200);
    }
  });

  it('refuses a GET login with 405 in plain text', async () => {
    const res = await fetch(`${s.url}/client/api?command=login&username=admin&password=password&response=json`);
    expect(res.status).toBe(405);
    expect(await res.text()).toBe('Please use HTTP POST to authenticate using this API');
  });

  it('refuses a wrong password with 531 and no session', async () => {
    const res = await fetch(`${s.url}/client/api/`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'command=login&username=admin&password=nope&domain=/&response=json' });
    expect(res.status).toBe(531);
    const body = (await res.json()) as any;
    expect(body.loginresponse).toEqual({ uuidList: [], errorcode: 531, errortext: expect.stringMatching(/^Failed to authenticate user admin in domain \d+; please provide valid credentials$/) });
    expect(res.headers.getSetCookie()).toEqual([]);
  });

  it('needs both cookie and parameter by default, and takes either with CookieOrParameter', async () => {
    const session = await s.client.login('admin', 'password');
    const cookieOnly = session.cookies.split('; ').filter((c) => c.startsWith('JSESSIONID')).join('; ');
    // Parameter without the sessionkey cookie: refused under CookieAndParameter, and the session is gone.
    const r1 = await s.client.raw(`command=listZones&response=json&sessionkey=${session.sessionKey}`, { headers: { cookie: cookieOnly } });
    expect(r1.status).toBe(401);
    expect((await session.get({ command: 'listZones' })).status).toBe(401);

    const admin = await s.client.login('admin', 'password');
    expect((await admin.get({ command: 'updateConfiguration', name: 'api.sessionkey.check.locations', value: 'CookieOrParameter' })).status).toBe(200);
    const older = await s.client.login('admin', 'password');
    const res = await s.client.raw('command=listZones&response=json', { headers: { cookie: older.cookies } });
    expect(res.status).toBe(200);
    const wrongKey = await s.client.raw('command=listZones&response=json&sessionkey=wrong', { headers: { cookie: older.cookies } });
    expect(wrongKey.status).toBe(401);
    const again = await s.client.login('admin', 'password');
    await again.get({ command: 'updateConfiguration', name: 'api.sessionkey.check.locations', value: 'CookieAndParameter' });
  });
});
