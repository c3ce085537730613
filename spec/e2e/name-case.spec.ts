/**
 * One rule for case on both databases (run this file on SQLite and on MariaDB):
 *   - API keys match exactly: a key in another case is a 401;
 *   - usernames and account names match whatever their case, as CloudStack compares them on its
 *     MySQL schema (utf8, case-insensitive collation; UserAccountDaoImpl/AccountDaoImpl look them up
 *     with SQL equality): `USERA` logs in as `usera`, and a second `UserA` or account `ACCT` of the
 *     same domain is refused;
 *   - migration 012 stops, naming them, when existing names would collide under that rule.
 */
import { randomUUID } from 'node:crypto';
import { createTestDb } from '../support/db';
import { adminCall, createActor } from '../support/actors';
import { ADMIN_KEYS, startTestServer, type TestServer } from '../support/server';

let s: TestServer;
beforeAll(async () => { s = await startTestServer(); });
afterAll(async () => { await s?.close(); });

const swapCase = (v: string) => [...v].map((c) => (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase())).join('');

describe('API keys', () => {
  it('match exactly: the same key in another case is a 401, signed with the right secret', async () => {
    const actor = await createActor(s.client, { name: `keycase${Date.now()}` });
    expect((await s.client.signed(actor.keys, { command: 'listZones' })).status).toBe(200);
    const other = swapCase(actor.keys.apiKey);
    expect(other).not.toBe(actor.keys.apiKey);
    const res = await s.client.signed({ apiKey: other, secretKey: actor.keys.secretKey }, { command: 'listZones' });
    expect(res.status).toBe(401);
  });
});

describe('usernames and account names', () => {
  const name = `usera${Date.now()}`;
  const password = 'pw-case-123';

  it('log in whatever the case of the username, as the stored user', async () => {
    await adminCall(s.client, { command: 'createAccount', username: name, password, firstname: 'U', lastname: 'A', account: `acct-${name}` });
    const upper = await s.client.login(name.toUpperCase(), password, '/');
    expect(upper.login).toMatchObject({ username: name, account: `acct-${name}` });
    await expect(s.client.login(name.toUpperCase(), 'wrong-password', '/')).rejects.toThrow();
  });

  it('refuse a user or an account whose name differs only in case in the same domain (431), and create nothing', async () => {
    const before = (await s.client.signed(ADMIN_KEYS, { command: 'listAccounts', listall: true })).body.count;
    const user = await s.client.signed(ADMIN_KEYS, { command: 'createAccount', username: swapCase(name), password, firstname: 'U', lastname: 'B', account: `other-${name}` });
    expect(user.status).toBe(431);
    expect(user.body.errortext).toMatch(/^The user .* already exists in domain/);
    const account = await s.client.signed(ADMIN_KEYS, { command: 'createAccount', username: `x${name}`, password, firstname: 'U', lastname: 'C', account: `ACCT-${name.toUpperCase()}` });
    expect(account.status).toBe(431);
    expect(account.body.errortext).toMatch(/already exists in domain/);
    expect((await s.client.signed(ADMIN_KEYS, { command: 'listAccounts', listall: true })).body.count).toBe(before);
    // Lookups by name follow the same rule.
    const listed = (await s.client.signed(ADMIN_KEYS, { command: 'listUsers', username: name.toUpperCase(), listall: true })).body.user;
    expect(listed.map((u: any) => u.username)).toEqual([name]);
    // Another domain may have the same name in any case.
    const sub = (await adminCall(s.client, { command: 'createDomain', name: `case-${Date.now()}` })).domain.id;
    expect((await s.client.signed(ADMIN_KEYS, { command: 'createAccount', username: name.toUpperCase(), password, firstname: 'U', lastname: 'D', domainid: sub })).status).toBe(200);
  });

  it('let exactly one of two concurrent creates differing only in case succeed; the other is a clean 431', async () => {
    for (let round = 0; round < 3; round++) {
      const base = `race${Date.now()}r${round}`;
      const create = (n: string) => s.client.signed(ADMIN_KEYS, { command: 'createAccount', username: n, password, firstname: 'R', lastname: 'C', account: n });
      const answers = await Promise.all([create(base), create(base.toUpperCase())]);
      expect(answers.map((a) => a.status).sort()).toEqual([200, 431]);
      expect(answers.find((a) => a.status === 431)!.body.errortext).toMatch(/already exists in domain/);
      const users = (await s.client.signed(ADMIN_KEYS, { command: 'listUsers', username: base, listall: true })).body.user;
      expect(users).toHaveLength(1);
      const accounts = (await s.client.signed(ADMIN_KEYS, { command: 'listAccounts', name: base, listall: true })).body.account;
      expect(accounts).toHaveLength(1);
    }
  });
});

describe('migration 012', () => {
  it('stops, naming them, when existing names of one domain differ only in case, and changes nothing', async () => {
    const t = await createTestDb();
    try {
      await t.db.migrate.down();
      expect(await t.db.schema.hasTable('configuration_scoped')).toBe(false);
      const now = Date.now();
      const [domainId] = await t.db('domain').insert({ uuid: randomUUID(), name: 'ROOT', path: '/', level: 0, created: now });
      const [accountId] = await t.db('account').insert({ uuid: randomUUID(), account_name: 'team', type: 0, domain_id: domainId, created: now });
      await t.db('account').insert({ uuid: randomUUID(), account_name: 'Team', type: 0, domain_id: domainId, created: now });
      await t.db('user').insert({ uuid: randomUUID(), username: 'bob', password: 'x', account_id: accountId, created: now });
      await t.db('user').insert({ uuid: randomUUID(), username: 'BOB', password: 'x', account_id: accountId, created: now });
      await expect(t.db.migrate.latest()).rejects.toThrow(/Migration 012 stopped: .*usernames "bob" and "BOB" in domain id \d+; account names "team" and "Team"/);
      expect(await t.db.schema.hasTable('configuration_scoped')).toBe(false);
      // Renamed, it goes through.
      // (By id: MariaDB's own collation of these columns still ignores case.)
      await t.db('user').where({ id: (await t.db('user').orderBy('id', 'desc').first('id')).id }).update({ username: 'bob2' });
      await t.db('account').where({ id: (await t.db('account').orderBy('id', 'desc').first('id')).id }).update({ account_name: 'team2' });
      await t.db.migrate.latest();
      expect(await t.db.schema.hasTable('configuration_scoped')).toBe(true);
      // Existing names got their comparison keys.
      expect((await t.db('user').orderBy('id').select('username_key')).map((u: any) => u.username_key)).toEqual(['bob', 'bob2']);
      expect((await t.db('account').orderBy('id').select('account_name_key')).map((a: any) => a.account_name_key)).toEqual(['team', 'team2']);
    } finally {
      await t.drop();
    }
  });
});

describe('migration 012, run again', () => {
  it('refuses a name whose key would not fit, and completes after a run that stopped half-way (MariaDB keeps DDL done)', async () => {
    const t = await createTestDb();
    try {
      await t.db.migrate.down();
      const now = Date.now();
      const [domainId] = await t.db('domain').insert({ uuid: randomUUID(), name: 'ROOT', path: '/', level: 0, created: now });
      const [accountId] = await t.db('account').insert({ uuid: randomUUID(), account_name: 'team', type: 0, domain_id: domainId, created: now });
      const [userId] = await t.db('user').insert({ uuid: randomUUID(), username: '\u0130'.repeat(200), password: 'x', account_id: accountId, created: now });
      await expect(t.db.migrate.latest()).rejects.toThrow(/Migration 012 stopped: .*username ".*" is 400 characters once lower-cased \(at most 255\)/);
      await t.db('user').where({ id: userId }).update({ username: 'carol' });
      // What a run stopped half-way leaves on MariaDB: the table, one key column and its index.
      await t.db.schema.createTable('configuration_scoped', (tb) => { tb.string('name', 255); });
      await t.db.schema.alterTable('user', (tb) => { tb.string('username_key', 255).nullable(); });
      await t.db.schema.alterTable('user', (tb) => { tb.index(['username_key']); });
      await t.db.migrate.latest();
      expect((await t.db('user').select('username_key')).map((u: any) => u.username_key)).toEqual(['carol']);
      expect((await t.db('account').select('account_name_key')).map((a: any) => a.account_name_key)).toEqual(['team']);
    } finally {
      await t.drop();
    }
  });
});

describe('a name longer than its key column once lower-cased', () => {
  it('is a 431 naming the limit, on both databases', async () => {
    const long = '\u0130'.repeat(255); // each lower-cases to two code units
    const res = await s.client.signed(ADMIN_KEYS, { command: 'createAccount', username: long, password: 'pw-long-123', firstname: 'L', lastname: 'N', account: `long${Date.now()}` });
    expect(res.status).toBe(431);
    expect(res.body.errortext).toMatch(/username is too long: at most 255 characters once lower-cased \(510 given\)/);
  });
});

describe('the comparison keys', () => {
  it('are required: a user or an account inserted without its key is refused, on both databases', async () => {
    const db = s.app.db;
    const domainId = (await db('domain').where({ path: '/' }).first('id')).id;
    await expect(db('account').insert({ uuid: randomUUID(), account_name: 'nokey', type: 0, domain_id: domainId, created: Date.now() }).then(() => 'inserted')).rejects.toMatchObject({ message: expect.stringMatching(/account_name_key/) });
    const accountId = (await db('account').where({ domain_id: domainId }).first('id')).id;
    await expect(db('user').insert({ uuid: randomUUID(), username: 'nokey', password: 'x', account_id: accountId, created: Date.now() }).then(() => 'inserted')).rejects.toMatchObject({ message: expect.stringMatching(/username_key/) });
    expect(await db('user').where({ username_key: 'nokey' }).first()).toBeUndefined();
  });
});
