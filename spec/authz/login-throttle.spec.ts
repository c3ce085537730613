/**
 * Login throttling (kms.login.throttle.*): per user and per client address, after a few failures
 * each further attempt must wait, doubling up to a minute, and is refused unchecked meanwhile with
 * a text naming the time. Root admins are throttled too (they are exempt from the lockout only); a
 * normal user keeps the lockout besides. The right password after the wait works. The throttle's
 * clock is moved by the test (nothing here waits for real minutes); what is asserted is how many
 * attempts were checked, never how long anything took. Clients are told apart by their source
 * address (127.0.0.2 … 127.0.0.5 on the loopback).
 */
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { createApp, type App } from '../../src/app';
import { createServer } from '../../src/api/server';
import { registry } from '../../src/commands/registry';
import { readEnv } from '../../src/config/env';
import { silentLogger } from '../../src/core/logger';
import { adminCall, createActor } from '../support/actors';
import { ADMIN_KEYS, startTestServer, type TestServer } from '../support/server';

jest.setTimeout(120_000);

/** A clock that stands still until the test moves it. */
const clock = { t: Date.now(), now() { return this.t; }, advance(ms: number) { this.t += ms; } };
const MINUTE = 60_000;
const CLIENTS = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'];

let s: TestServer;
/** A second API node on the same database (its own process state, the same throttle rows). */
let nodeB: { app: App; http: Server; url: string };

beforeAll(async () => {
  s = await startTestServer({}, { throttleClock: clock });
  const env = readEnv({
    KMS_DATA_DIR: s.testDb.dataDir, KMS_MASTER_KEY: s.masterKey,
    KMS_ADMIN_API_KEY: ADMIN_KEYS.apiKey, KMS_ADMIN_SECRET_KEY: ADMIN_KEYS.secretKey,
    ...(s.testDb.databaseUrl ? { DATABASE_URL: s.testDb.databaseUrl } : {}),
  });
  const { app } = await createApp(env, { logger: silentLogger, throttleClock: clock });
  const http: Server = await new Promise((resolve) => { const h = createServer(app, registry).listen(0, '127.0.0.1', () => resolve(h)); });
  nodeB = { app, http, url: `http://127.0.0.1:${(http.address() as AddressInfo).port}` };
});
afterAll(async () => {
  if (nodeB) {
    await new Promise((r) => nodeB.http.close(r));
    nodeB.http.closeAllConnections();
    await nodeB.app.close();
  }
  await s?.close();
});

interface Answer { status: number; text: string }

/** A login POST from `client` (its source address) to `base`. */
function loginFrom(base: string, client: string, username: string, password: string): Promise<Answer> {
  const body = new URLSearchParams({ command: 'login', username, password, domain: '/', response: 'json' }).toString();
  const url = new URL('/client/api', base);
  return new Promise((resolve, reject) => {
    const req = request({
      host: url.hostname, port: url.port, path: url.pathname, method: 'POST', localAddress: client, agent: false,
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const json = JSON.parse(Buffer.concat(chunks).toString()) as { loginresponse: { errortext?: string; sessionkey?: string } };
        resolve({ status: res.statusCode ?? 0, text: json.loginresponse.errortext ?? (json.loginresponse.sessionkey ? 'session' : '') });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

const checked = (answers: Answer[]) => answers.filter((a) => a.text.startsWith('Failed to authenticate')).length;
const throttled = (answers: Answer[]) => answers.filter((a) => /^Too many failed login attempts for user .*; the next attempt is checked after \d{4}-\d\d-\d\dT/.test(a.text)).length;

/** `n` wrong passwords for `username`, spread over the clients and both API nodes, all at once. */
async function guesses(username: string, n: number): Promise<Answer[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => loginFrom(i % 2 ? nodeB.url : s.url, CLIENTS[i % CLIENTS.length]!, username, `guess-${i}`)));
}

const root = (params: Record<string, string | number | boolean>) => adminCall(s.client, params);
/** A setting changed on node A reaches node B's one-second settings cache after this long. */
const settled = () => new Promise((r) => setTimeout(r, 1100));

describe('login throttling', () => {
  it('200 wrong passwords for the root admin from 4 clients on 2 nodes: a handful checked, then about one a minute; the right password after the wait works', async () => {
    const first = await guesses('admin', 200);
    expect(first.every((a) => a.status === 531)).toBe(true);
    // The user's 3, plus at most one per client that had not failed for admin yet.
    expect(checked(first) + throttled(first)).toBe(200);
    expect(checked(first)).toBeGreaterThanOrEqual(3);
    expect(checked(first)).toBeLessThanOrEqual(3 + CLIENTS.length);
    let total = checked(first);

    // Three more minutes of guessing, 50 at a time: the waits (5 s, 10 s, 20 s, 40 s, 60 s) let one through per minute.
    const perMinute: number[] = [];
    for (let minute = 0; minute < 3; minute++) {
      clock.advance(MINUTE);
      const answers = await guesses('admin', 50);
      perMinute.push(checked(answers));
      total += checked(answers);
      expect(checked(answers) + throttled(answers)).toBe(50);
    }
    console.log(`login throttle: ${checked(first)} checked in the first burst of 200, then per minute ${perMinute.join(', ')}`);
    expect(perMinute.every((n) => n >= 1)).toBe(true);
    // 3 free + one per minute + at most one per client that was clean: 350 guesses, at most 10 checked.
    expect(total).toBeLessThanOrEqual(3 + 3 + CLIENTS.length);

    // During the wait even the right password is refused unchecked from an address that failed for admin, with the time to wait for…
    const early = await loginFrom(s.url, CLIENTS[0]!, 'admin', 'password');
    expect(early.status).toBe(531);
    expect(throttled([early])).toBe(1);
    // …and after it, it works: nobody is locked out.
    clock.advance(MINUTE);
    expect(await loginFrom(nodeB.url, CLIENTS[1]!, 'admin', 'password')).toEqual({ status: 200, text: 'session' });
    // The success cleared the user's failures: the next wrong password is checked at once.
    expect(checked([await loginFrom(s.url, '127.0.0.6', 'admin', 'wrong')])).toBe(1);
    expect((await loginFrom(s.url, '127.0.0.6', 'admin', 'password')).status).toBe(200);

    const events = (await root({ command: 'listEvents', type: 'USER.LOGIN.THROTTLED', listall: true })).event as Array<{ level: string; description: string; username: string }>;
    expect(events.length).toBeGreaterThanOrEqual(4); // the 3rd failure and each one checked after a wait
    expect(events[0]).toMatchObject({ level: 'WARN', username: 'admin' });
    expect(events[0]!.description).toMatch(/^User admin in domain ROOT: \d+ failed login attempts \(the last from 127\.0\.0\.[2-5]\); the next attempt is checked after /);
  });

  it('a normal user: throttled the same way, and still disabled by the lockout after 5 checked failures; enableUser lets the right password in at once', async () => {
    const name = `thr-${Date.now()}`;
    const u = await createActor(s.client, { name });
    const first = await guesses(name, 200);
    expect(checked(first)).toBeLessThanOrEqual(3 + CLIENTS.length);
    let total = checked(first);
    for (let minute = 0; minute < 3; minute++) {
      clock.advance(MINUTE);
      total += checked(await guesses(name, 50));
    }
    // incorrect.login.attempts.allowed (5): the 5th checked failure disabled the user; later ones are checked against nothing.
    expect(total).toBeGreaterThanOrEqual(5);
    expect(total).toBeLessThanOrEqual(3 + 3 + CLIENTS.length);
    expect((await root({ command: 'listUsers', id: u.userId })).user[0].state).toBe('disabled');
    clock.advance(MINUTE);
    expect((await loginFrom(s.url, CLIENTS[0]!, name, `pw-${name}-123`)).text).toMatch(/^Failed to authenticate/);
    await root({ command: 'enableUser', id: u.userId });
    expect(await loginFrom(s.url, CLIENTS[0]!, name, `pw-${name}-123`)).toEqual({ status: 200, text: 'session' });
  });

  it('a normal user without the lockout (incorrect.login.attempts.allowed=0): one checked a minute for as long as the guessing goes on, then the right password', async () => {
    const name = `thr0-${Date.now()}`;
    await createActor(s.client, { name });
    await root({ command: 'updateConfiguration', name: 'incorrect.login.attempts.allowed', value: '0' });
    await settled();
    try {
      let total = checked(await guesses(name, 100));
      const perMinute: number[] = [];
      for (let minute = 0; minute < 5; minute++) {
        clock.advance(MINUTE);
        perMinute.push(checked(await guesses(name, 20)));
      }
      total += perMinute.reduce((a, b) => a + b, 0);
      expect(perMinute.every((n) => n >= 1)).toBe(true);
      expect(perMinute.slice(-3)).toEqual([1, 1, 1]); // every client has failed for the user by now: one a minute
      expect(total).toBeLessThanOrEqual(3 + 5 + CLIENTS.length);
      clock.advance(MINUTE);
      expect(await loginFrom(s.url, CLIENTS[3]!, name, `pw-${name}-123`)).toEqual({ status: 200, text: 'session' });
    } finally {
      await root({ command: 'updateConfiguration', name: 'incorrect.login.attempts.allowed', value: '5' });
      await settled();
    }
  });

  it('per client address: one address spraying 40 usernames gets 20 checked, then waits; another address logs in at once', async () => {
    clock.advance(20 * MINUTE); // past the window: earlier failures are forgotten
    const spray = await Promise.all(Array.from({ length: 40 }, (_, i) => loginFrom(s.url, '127.0.0.9', `nobody-${i}`, 'password')));
    expect(checked(spray)).toBe(20);
    expect(spray.filter((a) => a.text.startsWith('Too many failed login attempts from this client address')).length).toBe(20);
    expect((await loginFrom(s.url, '127.0.0.10', 'admin', 'password')).status).toBe(200);
    // Successful logins do not count against an address.
    for (let i = 0; i < 25; i++) expect((await loginFrom(nodeB.url, '127.0.0.11', 'admin', 'password')).status).toBe(200);
  });

  it('an attacker polling from 3 addresses cannot keep the admin out: the admin from a clean address gets a session every round', async () => {
    clock.advance(20 * MINUTE);
    const attackers = ['127.0.0.40', '127.0.0.41', '127.0.0.42'];
    const burst = await Promise.all(Array.from({ length: 30 }, (_, i) => loginFrom(s.url, attackers[i % 3]!, 'admin', `guess-${i}`)));
    expect(checked(burst)).toBeLessThanOrEqual(3 + attackers.length);
    let adminOk = 0;
    let attackerChecked = 0;
    for (let round = 0; round < 10; round++) {
      clock.advance(61_000);
      attackerChecked += checked([await loginFrom(nodeB.url, attackers[round % 3]!, 'admin', `poll-${round}`)]);
      if ((await loginFrom(s.url, '127.0.0.9', 'admin', 'password')).text === 'session') adminOk++;
    }
    console.log(`login throttle under polling: admin sessions ${adminOk}/10, attacker guesses checked ${attackerChecked}/10`);
    expect(adminOk).toBe(10);
    // The admin's success clears the user's wait, but each attacker address still waits on its own (pair and address).
    expect(attackerChecked).toBeLessThanOrEqual(10);
  });

  it('a refused attempt does not extend its address\'s wait', async () => {
    clock.advance(20 * MINUTE);
    const name = `thr-addr-${Date.now()}`;
    await createActor(s.client, { name });
    // 20 wrong names from one address use its free attempts; the 20th starts its 5 s wait.
    for (let i = 0; i < 20; i++) await loginFrom(s.url, '127.0.0.50', `nobody-x${i}`, 'password');
    const refused = await loginFrom(s.url, '127.0.0.50', name, 'wrong');
    expect(refused.text).toMatch(/^Too many failed login attempts from this client address; the next attempt is checked after/);
    // Make the user wait (from other addresses), then hammer it from the waiting address: refused by the user, not counted.
    await Promise.all(Array.from({ length: 6 }, (_, i) => loginFrom(s.url, `127.0.0.${60 + (i % 3)}`, name, 'wrong')));
    clock.advance(6_000); // past the address's first wait (5 s)
    expect(checked([await loginFrom(s.url, '127.0.0.50', 'nobody-y', 'password')])).toBe(1);
  });

  it('is configurable: kms.login.throttle.attempts=0 turns the per-user throttle off', async () => {
    const name = `thr-off-${Date.now()}`;
    await createActor(s.client, { name });
    await root({ command: 'updateConfiguration', name: 'incorrect.login.attempts.allowed', value: '0' });
    await root({ command: 'updateConfiguration', name: 'kms.login.throttle.attempts', value: '0' });
    await settled();
    try {
      clock.advance(20 * MINUTE);
      // 12 from one address each (below the address throttle): every one checked
      const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => loginFrom(s.url, `127.0.0.${20 + i}`, name, 'wrong')));
      expect(checked(answers)).toBe(12);
      const bad = await s.client.signed(ADMIN_KEYS, { command: 'updateConfiguration', name: 'kms.login.throttle.delay.ms', value: '0' });
      expect(bad.status).toBe(431);
    } finally {
      await root({ command: 'updateConfiguration', name: 'kms.login.throttle.attempts', value: '3' });
      await root({ command: 'updateConfiguration', name: 'incorrect.login.attempts.allowed', value: '5' });
    }
  });
});
