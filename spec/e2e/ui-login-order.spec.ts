/**
 * The login sequence as the CloudStack UI sends it (store/modules/user.js GetInfo): `login`, then
 * listZones, listApis, listNetworks, listVPCs, listUsers, listNetworkServiceProviders and
 * listCapabilities at once. The UI builds its routes when listApis answers, and each section's
 * `show()` reads the role from the listUsers answer and the features from the listCapabilities
 * answer (kms.js: `['Admin'].includes(userInfo.roletype) || features.hashsmprofiles`). It keeps
 * nothing of the login answer those functions read, so whatever order the server finishes its work
 * in, listApis must answer after listUsers and listCapabilities: then a fresh login shows the full
 * menu at once. Replayed for the root admin and for a plain user, ten fresh logins each.
 */
import { createActor } from '../support/actors';
import type { Session } from '../support/client';
import { startTestServer, type TestServer } from '../support/server';

let s: TestServer;
beforeAll(async () => { s = await startTestServer(); });
afterAll(async () => { await s?.close(); });

/** What the UI's store holds when listApis answers, and whether the Key Management menu is built. */
async function freshLogin(session: Session, lateMs = 0): Promise<{ order: string[]; kmsMenu: boolean; roletype?: string }> {
  const order: string[] = [];
  const store: { userInfo: Record<string, any>; features: Record<string, any> } = { userInfo: {}, features: {} };
  let kmsMenu: boolean | undefined;
  const send = (command: string, params: Record<string, string | boolean> = {}) => session.get({ command, ...params }).then((res) => {
    order.push(command);
    if (res.status !== 200) return;
    if (command === 'listUsers') store.userInfo = res.body.user[0];
    if (command === 'listCapabilities') store.features = res.body.capability;
    if (command === 'listApis') kmsMenu = ['Admin'].includes(store.userInfo.roletype) || Boolean(store.features.hashsmprofiles);
  });
  // `lateMs`: listUsers and listCapabilities leave the browser later (its 6 connections per host are busy).
  const late = new Promise((r) => setTimeout(r, lateMs)).then(() => Promise.all([
    send('listUsers', { id: session.login.userid }), send('listNetworkServiceProviders', { name: 'SecurityGroupProvider', state: 'Enabled' }),
    send('listCapabilities'),
  ]));
  await Promise.all([
    send('listZones'), send('listApis'), send('listNetworks', { restartrequired: true, forvpc: false }), send('listVPCs', { restartrequired: true }), late,
  ]);
  return { order, kmsMenu: kmsMenu!, roletype: store.userInfo.roletype };
}

describe('a fresh UI login', () => {
  it('answers listApis after listUsers and listCapabilities, so the menu is built with the role known (root admin and user, 10 logins each)', async () => {
    const user = await createActor(s.client, { name: `order${Date.now()}` });
    const orders = new Map<string, number>();
    for (const [name, password] of [['admin', 'password'], [user.account, `pw-${user.account}-123`]] as const) {
      for (let i = 0; i < 10; i++) {
        const session = await s.client.login(name, password, '/');
        // The one thing of the role the UI keeps from login: the `role` cookie from `type`.
        expect(session.login.type).toBe(name === 'admin' ? '1' : '0');
        // Half of them with listUsers and listCapabilities sent 20 ms after listApis: the answers' order must not depend on it.
        const seen = await freshLogin(session, i % 2 ? 20 : 0);
        const key = seen.order.filter((c) => ['listApis', 'listUsers', 'listCapabilities'].includes(c)).join(' < ');
        orders.set(key, (orders.get(key) ?? 0) + 1);
        expect(seen.order.indexOf('listApis')).toBeGreaterThan(seen.order.indexOf('listUsers'));
        expect(seen.order.indexOf('listApis')).toBeGreaterThan(seen.order.indexOf('listCapabilities'));
        expect({ name, kmsMenu: seen.kmsMenu }).toEqual({ name, kmsMenu: true });
        expect(seen.roletype).toBe(name === 'admin' ? 'Admin' : 'User');
      }
    }
    console.log('answer orders seen:', Object.fromEntries(orders));
  });

  it('answers a listApis with nothing else in flight at once (cmk sync)', async () => {
    const session = await s.client.login('admin', 'password', '/');
    const res = await session.get({ command: 'listApis', name: 'listZones' });
    expect(res.status).toBe(200);
    expect(res.body.api[0].name).toBe('listZones');
  });
});

describe('a client calling one command after another', () => {
  it('gets listApis at once after its listZones was answered (no UI burst to order)', async () => {
    const session = await s.client.login('admin', 'password', '/');
    expect((await session.get({ command: 'listZones' })).status).toBe(200);
    const started = Date.now();
    expect((await session.get({ command: 'listApis' })).status).toBe(200);
    const waited = Date.now() - started;
    console.log(`sequential listApis after listZones answered in ${waited} ms`);
    // The listUsers that follows is answered as usual.
    expect((await session.get({ command: 'listUsers', id: session.login.userid })).body.user[0].roletype).toBe('Admin');
  });
});

describe('what the answer ordering holds', () => {
  it('holds nothing for requests without a login, whatever cookies they carry', async () => {
    // Earlier tests' bursts may still be expiring (3 s): nothing may be added to them.
    const before = s.sessionOrder.size;
    for (let i = 0; i < 200; i++) {
      const res = await fetch(`${s.url}/client/api?command=listZones&response=json`, { headers: { cookie: `JSESSIONID=${'x'.repeat(1000)}${i}` } });
      expect(res.status).toBe(401);
    }
    expect(s.sessionOrder.size).toBeLessThanOrEqual(before);
  });

  it("forgets a logged-in session's requests once they are answered and its burst is over", async () => {
    const session = await s.client.login('admin', 'password', '/');
    const seen = await freshLogin(session);
    expect(seen.kmsMenu).toBe(true);
    // The burst's record outlives its answers by at most maxWaitMs (3 s).
    await new Promise((r) => setTimeout(r, 3100));
    expect(s.sessionOrder.size).toBe(0);
    // Sequential calls, each answered before the next: nothing stays behind either.
    for (const command of ['listApis', 'listUsers', 'listCapabilities']) expect((await session.get({ command })).status).toBe(200);
    expect(s.sessionOrder.size).toBe(0);
  });

});
