/**
 * The authorization findings, each as a scenario a user would run: a domain admin taking over a
 * root-admin account, domain scope leaking through LIKE patterns, unlimited password guessing,
 * and database files readable by other users. Plus the identity state commands that answer them.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDb } from '../../src/db/knex';
import { hashPassword } from '../../src/identity/password';
import { createActor, enableDefaultProfile, type Keys } from '../support/actors';
import { finishedJob, ok, suffix } from '../support/kms-world';
import { ADMIN_KEYS, startTestServer, type TestServer } from '../support/server';

let ts: TestServer;
let zoneId: string;

const root = (params: Record<string, string | number | boolean>) => ok(ts.client, ADMIN_KEYS, params);
const domain = async (name: string, parent?: string): Promise<string> =>
  (await root({ command: 'createDomain', name, ...(parent ? { parentdomainid: parent } : {}) })).domain.id;

beforeAll(async () => {
  ts = await startTestServer();
  zoneId = (await root({ command: 'createZone', name: `z-${suffix()}` })).zone.id;
  await enableDefaultProfile(ts.client);
});

afterAll(async () => {
  await ts?.close();
});

describe('finding 1: a domain admin cannot take over a root-admin account in its domain', () => {
  let d1: string;
  let da: Keys;
  let rootAdminUser: string;
  let otherVolume: string;

  beforeAll(async () => {
    d1 = await domain(`d1-${suffix()}`);
    da = (await createActor(ts.client, { name: `da-${suffix()}`, domainId: d1, accountType: 2 })).keys;
    // A root-admin account inside D1, as servers before this fix let root create it.
    const db = ts.app.db;
    const dom = await db('domain').where({ uuid: d1 }).first('id');
    const raName = `ra-${suffix()}`;
    const [accountId] = await db('account').insert({ uuid: randomUUID(), account_name: raName, account_name_key: raName.toLowerCase(), type: 1, domain_id: dom.id, state: 'enabled', created: Date.now() });
    rootAdminUser = randomUUID();
    await db('user').insert({
      uuid: rootAdminUser, username: raName, username_key: raName.toLowerCase(), password: await hashPassword('x-pw-1'), account_id: Number(accountId), firstname: 'R', lastname: 'A',
      email: null, state: 'enabled', api_key: null, secret_key: null, timezone: null, created: Date.now(),
    });
    await root({ command: 'registerUserKeys', id: rootAdminUser });
    const d2 = await domain(`d2-${suffix()}`);
    const c = await createActor(ts.client, { name: `c-${suffix()}`, domainId: d2 });
    const profile = (await root({ command: 'listHSMProfiles', name: 'default', listall: true })).hsmprofile[0].id;
    const key = (await ok(ts.client, c.keys, { command: 'createKMSKey', name: 'k', zoneid: zoneId, hsmprofileid: profile })).kmskey.id;
    const v = await ok(ts.client, c.keys, { command: 'createVolume', name: 'v', zoneid: zoneId, kmskeyid: key });
    await finishedJob(ts, c.keys, v.jobid);
    otherVolume = v.id;
  });

  it('refuses getUserKeys and registerUserKeys on the root-admin user with CloudStack\'s role-type answer', async () => {
    for (const command of ['getUserKeys', 'registerUserKeys']) {
      const res = await ts.client.signed(da, { command, id: rootAdminUser });
      expect([command, res.status, res.body.errortext]).toEqual([command, 531, expect.stringMatching(/has a lower role type than the user account/)]);
      expect(res.raw).not.toMatch(/secretkey/);
    }
  });

  it('refuses createUser into the root-admin account, and its keys still do not reach other domains through the domain admin', async () => {
    const account = (await root({ command: 'listUsers', id: rootAdminUser })).user[0];
    const res = await ts.client.signed(da, { command: 'createUser', username: `in-${suffix()}`, password: 'pw-123456', firstname: 'a', lastname: 'b', account: account.account, domainid: d1 });
    expect(res.status).toBe(531);
    expect((await root({ command: 'listUsers', domainid: d1, account: account.account })).user).toHaveLength(1);
    // The domain admin itself cannot read another domain's volume secret either.
    expect((await ts.client.signed(da, { command: 'getVolumeEncryptionKey', id: otherVolume })).status).toBe(432);
  });

  it('refuses to create a root-admin account outside ROOT, as CloudStack does', async () => {
    const res = await ts.client.signed(ADMIN_KEYS, { command: 'createAccount', username: `ra-${suffix()}`, password: 'pw-123456', firstname: 'a', lastname: 'b', accounttype: 1, domainid: d1 });
    expect([res.status, res.body.errortext]).toEqual([431, 'Unable to create user of admin role type in non-ROOT domain']);
  });

  it('lets a domain admin manage another domain admin of its subtree (CloudStack\'s same-role-type default)', async () => {
    const other = await createActor(ts.client, { name: `da2-${suffix()}`, domainId: await domain(`sub-${suffix()}`, d1), accountType: 2 });
    expect((await ts.client.signed(da, { command: 'getUserKeys', id: other.userId })).status).toBe(200);
  });
});

describe('finding 2: domain scope follows domain ids, not name patterns', () => {
  it('a domain admin of "%", "a_b" or "Ab" sees its own subtree only', async () => {
    const s = suffix();
    const names = ['%', `a_b${s}`, `axb${s}`, `Ab${s}`, `ab${s}`];
    const ids: Record<string, string> = {};
    for (const n of names) ids[n] = await domain(n);
    const admins: Record<string, Keys> = {};
    const users: Record<string, string> = {};
    for (const n of names) {
      admins[n] = (await createActor(ts.client, { name: `da-${suffix()}`, domainId: ids[n]!, accountType: 2 })).keys;
      users[n] = (await createActor(ts.client, { name: `u-${suffix()}`, domainId: ids[n]! })).account;
    }
    for (const n of ['%', `a_b${s}`, `Ab${s}`]) {
      const listed = (await ok(ts.client, admins[n]!, { command: 'listAccounts', listall: true })).account.map((a: { name: string }) => a.name);
      const others = names.filter((m) => m !== n).map((m) => users[m]);
      expect([n, others.filter((u) => listed.includes(u))]).toEqual([n, []]);
      expect(listed).toContain(users[n]);
      const domains = (await ok(ts.client, admins[n]!, { command: 'listDomains', listall: true })).domain.map((d: { id: string }) => d.id);
      expect([n, domains]).toEqual([n, [ids[n]]]);
      const children = await ok(ts.client, admins[n]!, { command: 'listDomainChildren', isrecursive: true });
      expect([n, children.domain ?? []]).toEqual([n, []]);
    }
  });
});

describe('finding 3: login lockout (incorrect.login.attempts.allowed) and the identity state commands', () => {
  // These tests count the lockout's own checks, many of them from one address in a few seconds:
  // login throttling is off here (spec/authz/login-throttle.spec.ts tests the two together).
  const THROTTLE = { 'kms.login.throttle.attempts': '3', 'kms.login.throttle.address.attempts': '20' };
  beforeAll(async () => { for (const name of Object.keys(THROTTLE)) await root({ command: 'updateConfiguration', name, value: '0' }); });
  afterAll(async () => { for (const [name, value] of Object.entries(THROTTLE)) await root({ command: 'updateConfiguration', name, value }); });
  const login = async (username: string, password: string, domainPath = '/') => {
    const res = await fetch(`${ts.url}/client/api`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ command: 'login', username, password, domain: domainPath, response: 'json' }).toString(),
    });
    const json = (await res.json()) as { loginresponse: Record<string, any> };
    return { status: res.status, body: json.loginresponse };
  };

  it('disables a user after 5 wrong passwords in a row; the right one is then refused; enableUser lets it in again', async () => {
    const name = `lock-${suffix()}`;
    const u = await createActor(ts.client, { name });
    for (let i = 0; i < 5; i++) expect((await login(name, 'wrong')).status).toBe(531);
    // Locked out, even the right password gets the generic answer: a guess confirms nothing.
    const refused = await login(name, `pw-${name}-123`);
    expect([refused.status, refused.body.errortext]).toEqual([531, `Failed to authenticate user ${name} in domain 1; please provide valid credentials`]);
    expect((await root({ command: 'listUsers', id: u.userId })).user[0].state).toBe('disabled');
    expect((await ts.client.signed(u.keys, { command: 'listZones' })).status).toBe(401);
    const events = (await root({ command: 'listEvents', type: 'USER.DISABLE', resourceid: u.userId, listall: true })).event;
    expect(events[0].description).toMatch(/disabled due to multiple failed login attempts/);
    expect((await root({ command: 'enableUser', id: u.userId })).user.state).toBe('enabled');
    expect((await login(name, `pw-${name}-123`)).status).toBe(200);
    // The counter starts again from zero after enableUser.
    for (let i = 0; i < 4; i++) await login(name, 'wrong');
    expect((await login(name, `pw-${name}-123`)).status).toBe(200);
  });

  it('checks no more than the allowed number of guesses when they arrive at once', async () => {
    const name = `burst-${suffix()}`;
    const u = await createActor(ts.client, { name });
    const answers = await Promise.all(Array.from({ length: 20 }, () => login(name, 'wrong')));
    expect(answers.every((a) => a.status === 531)).toBe(true);
    expect((await login(name, `pw-${name}-123`)).status).toBe(531);
    const row = await ts.app.db('user').where({ uuid: u.userId }).first('state', 'login_attempts');
    expect([row.state, Number(row.login_attempts)]).toEqual(['disabled', 5]);
  });

  it('a user an admin disabled learns so only with the right password, and its sessions end at once', async () => {
    const name = `sess-${suffix()}`;
    const u = await createActor(ts.client, { name });
    const session = await ts.client.login(name, `pw-${name}-123`);
    expect((await session.get({ command: 'listZones' })).status).toBe(200);
    await finishedJob(ts, ADMIN_KEYS, (await root({ command: 'disableUser', id: u.userId })).jobid);
    const right = await login(name, `pw-${name}-123`);
    expect([right.status, right.body.errortext]).toEqual([531, `User ${name} (or their account) in domain ROOT is disabled/locked. Please contact the administrator.`]);
    expect((await login(name, 'wrong')).body.errortext).toMatch(/^Failed to authenticate/);
    await root({ command: 'enableUser', id: u.userId });
    expect((await session.get({ command: 'listZones' })).status).toBe(401);
  });

  it('counts only consecutive failures: a successful login resets the count', async () => {
    const name = `reset-${suffix()}`;
    await createActor(ts.client, { name });
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 4; i++) await login(name, 'wrong');
      expect((await login(name, `pw-${name}-123`)).status).toBe(200);
    }
  });

  it('follows the setting: a value <= 0 never disables, 2 disables at the second failure', async () => {
    const name = `set-${suffix()}`;
    await createActor(ts.client, { name });
    const setting = (await root({ command: 'listConfigurations', name: 'incorrect.login.attempts.allowed' })).configuration[0];
    expect(setting.value).toBe('5');
    await root({ command: 'updateConfiguration', name: 'incorrect.login.attempts.allowed', value: '0' });
    try {
      for (let i = 0; i < 8; i++) await login(name, 'wrong');
      expect((await login(name, `pw-${name}-123`)).status).toBe(200);
      await root({ command: 'updateConfiguration', name: 'incorrect.login.attempts.allowed', value: '2' });
      await new Promise((r) => setTimeout(r, 1100)); // the settings cache holds a value for one second
      await login(name, 'wrong');
      await login(name, 'wrong');
      expect((await login(name, `pw-${name}-123`)).status).toBe(531);
      const bad = await ts.client.signed(ADMIN_KEYS, { command: 'updateConfiguration', name: 'incorrect.login.attempts.allowed', value: 'many' });
      expect(bad.status).toBe(431);
    } finally {
      await root({ command: 'updateConfiguration', name: 'incorrect.login.attempts.allowed', value: '5' });
    }
  });

  it('never disables a root-admin account by failed logins (CloudStack exempts its internal admin accounts)', async () => {
    for (let i = 0; i < 7; i++) await login('admin', 'wrong');
    expect((await login('admin', 'password')).status).toBe(200);
  });

  it('disableUser is async and refuses the user at once; lockUser locks the account with its last user; disableAccount and enableAccount', async () => {
    const d = await domain(`st-${suffix()}`);
    const da = await createActor(ts.client, { name: `sda-${suffix()}`, domainId: d, accountType: 2 });
    const u = await createActor(ts.client, { name: `su-${suffix()}`, domainId: d });
    const submitted = await ok(ts.client, da.keys, { command: 'disableUser', id: u.userId });
    expect(Object.keys(submitted)).toEqual(['jobid']);
    const done = await finishedJob(ts, da.keys, submitted.jobid);
    expect([done.jobstatus, done.jobresult.user.id, done.jobresult.user.state]).toEqual([1, u.userId, 'disabled']);
    expect((await ts.client.signed(u.keys, { command: 'listZones' })).status).toBe(401);
    expect((await ok(ts.client, da.keys, { command: 'enableUser', id: u.userId })).user.state).toBe('enabled');
    expect((await ts.client.signed(u.keys, { command: 'listZones' })).status).toBe(200);

    const locked = await ok(ts.client, da.keys, { command: 'lockUser', id: u.userId });
    expect(locked.user.state).toBe('locked');
    expect((await ok(ts.client, da.keys, { command: 'listAccounts', id: u.accountId })).account[0].state).toBe('locked');
    expect((await ts.client.signed(u.keys, { command: 'listZones' })).status).toBe(401);
    await ok(ts.client, da.keys, { command: 'enableUser', id: u.userId });

    const dis = await ok(ts.client, da.keys, { command: 'disableAccount', account: u.account, domainid: d, lock: false });
    const disDone = await finishedJob(ts, da.keys, dis.jobid);
    expect([disDone.jobstatus, disDone.jobresult.account.state]).toEqual([1, 'disabled']);
    expect((await ts.client.signed(u.keys, { command: 'listZones' })).status).toBe(401);
    expect((await ok(ts.client, da.keys, { command: 'enableAccount', id: u.accountId })).account.state).toBe('enabled');
    expect((await ts.client.signed(u.keys, { command: 'listZones' })).status).toBe(200);

    // A disabled account cannot be merely locked: the job fails and the state stays.
    await finishedJob(ts, da.keys, (await ok(ts.client, da.keys, { command: 'disableAccount', id: u.accountId, lock: false })).jobid);
    const lockJob = await finishedJob(ts, da.keys, (await ok(ts.client, da.keys, { command: 'disableAccount', id: u.accountId, lock: true })).jobid);
    expect(lockJob.jobstatus).toBe(2);
    await ok(ts.client, da.keys, { command: 'enableAccount', id: u.accountId });
  });

  it('answers bad targets with CloudStack\'s codes and changes nothing', async () => {
    const missing = randomUUID();
    const r1 = await ts.client.signed(ADMIN_KEYS, { command: 'disableUser', id: missing });
    expect([r1.status, r1.body.errortext]).toEqual([431, `Unable to find active user by id ${missing}`]);
    const r2 = await ts.client.signed(ADMIN_KEYS, { command: 'enableAccount' });
    expect(r2.status).toBe(431);
    const r3 = await ts.client.signed(ADMIN_KEYS, { command: 'disableAccount', id: missing, lock: true });
    expect([r3.status, r3.body.errortext]).toEqual([431, `Unable to find account by accountId: ${missing} OR by name: null in domain null`]);
    const adminAccount = (await root({ command: 'listAccounts', name: 'admin' })).account[0].id;
    const r4 = await ts.client.signed(ADMIN_KEYS, { command: 'disableAccount', id: adminAccount, lock: false });
    expect(r4.status).toBe(530);
    expect((await root({ command: 'listAccounts', id: adminAccount })).account[0].state).toBe('enabled');
    const u = await createActor(ts.client, { name: `nu-${suffix()}` });
    expect((await ts.client.signed(u.keys, { command: 'disableUser', id: u.userId })).status).toBe(432);
  });
});

describe('finding 4: the SQLite database and its WAL files are readable by their owner only', () => {
  it('creates kms.sqlite, -wal and -shm with mode 0600, and tightens files an older version left 0644', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kms-mode-'));
    try {
      const db = await openDb({ dataDir: dir });
      await db('configuration').insert({ name: `mode-${suffix()}`, value: 'x', updated: Date.now() });
      const files = readdirSync(dir).filter((f) => f.startsWith('kms.sqlite'));
      expect(files.sort()).toEqual(['kms.sqlite', 'kms.sqlite-shm', 'kms.sqlite-wal']);
      for (const f of files) expect([f, (statSync(join(dir, f)).mode & 0o777).toString(8)]).toEqual([f, '600']);
      await db.destroy();
      const { chmodSync } = await import('node:fs');
      chmodSync(join(dir, 'kms.sqlite'), 0o644);
      const again = await openDb({ dataDir: dir });
      expect((statSync(join(dir, 'kms.sqlite')).mode & 0o777).toString(8)).toBe('600');
      await again.destroy();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
