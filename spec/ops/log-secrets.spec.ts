/**
 * A whole scenario at debug level (login, a PKCS#11 profile with its PIN, a KMS key, volumes,
 * getVolumeEncryptionKey, a rotation), logged through the production logger: no secret appears in
 * any line, in any encoding. Every API request gets an access line, and the request id follows
 * into the job it starts.
 */
import { randomBytes } from 'node:crypto';
import { createLogger } from '../../src/core/logger';
import { detailParams, waitForJob } from '../support/actors';
import { signedQuery, type Params } from '../support/client';
import { ADMIN_KEYS, startTestServer, type TestServer } from '../support/server';
import { createSoftHsmToken, type SoftHsmToken } from '../support/softhsm';

const lines: string[] = [];
const adminPassword = `Adm1n-${randomBytes(6).toString('hex')}`;
const userPassword = `Us3r-${randomBytes(6).toString('hex')}`;
const secrets = new Set<string>([adminPassword, userPassword, ADMIN_KEYS.secretKey]);
let s: TestServer;
let token: SoftHsmToken;

/** A signed GET whose signature joins the secrets to look for. */
async function signed(keys: { apiKey: string; secretKey: string }, params: Params) {
  const q = signedQuery(params, keys.apiKey, keys.secretKey);
  secrets.add(decodeURIComponent(/signature=([^&]+)/.exec(q)![1]!));
  const res = await s.client.raw(q);
  if (res.status !== 200) throw new Error(`${String(params.command)}: ${res.raw}`);
  return res;
}

beforeAll(async () => {
  token = await createSoftHsmToken();
  secrets.add(token.pin).add(token.soPin);
  s = await startTestServer(
    { KMS_ADMIN_PASSWORD: adminPassword, KMS_LOG_LEVEL: 'debug' },
    { logger: createLogger({ level: 'debug', destination: { write: (l: string) => { lines.push(l); } } }) },
  );
  secrets.add(s.masterKey);
});
afterAll(async () => {
  await s?.close();
  await token?.cleanup();
});

describe('a debug-level log of a whole scenario', () => {
  it('holds no password, PIN, secret key, signature, session key or DEK, and traces requests into jobs', async () => {
    const failed = await fetch(`${s.url}/client/api`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ command: 'login', username: 'admin', password: `${adminPassword}-wrong`, response: 'json' }).toString(),
    });
    expect(failed.status).toBe(531); // CloudStack's answer to a wrong password
    secrets.add(`${adminPassword}-wrong`);

    const ui = await s.client.login('admin', adminPassword);
    secrets.add(ui.sessionKey);
    for (const c of ui.cookies.split('; ')) secrets.add(c.split('=')[1]!);
    const profile = await ui.post({
      command: 'createHSMProfile', name: 'logged-hsm', protocol: 'pkcs11', ispublic: true, ...detailParams(token.details()),
    });
    expect(profile.status).toBe(200);
    const zone = (await ui.post({ command: 'createZone', name: 'log-zone' })).body.zone.id;
    const account = (await ui.post({
      command: 'createAccount', username: 'logged-user', password: userPassword, firstname: 'L', lastname: 'U', accounttype: 0,
    })).body.account;
    const userKeys = (await ui.post({ command: 'registerUserKeys', id: account.user[0].id })).body.userkeys;
    const keys = { apiKey: userKeys.apikey as string, secretKey: userKeys.secretkey as string };
    secrets.add(keys.secretKey);
    await s.client.login('logged-user', userPassword);

    const key = (await signed(keys, { command: 'createKMSKey', name: 'k', zoneid: zone, hsmprofileid: profile.body.hsmprofile.id })).body.kmskey.id;
    const volumes: string[] = [];
    let createVolumeRequest = '';
    for (const params of [{ kmskeyid: key }, { encrypt: true }] as Params[]) {
      const res = await signed(keys, { command: 'createVolume', name: `v${volumes.length}`, zoneid: zone, ...params });
      createVolumeRequest ||= res.headers.get('x-request-id')!;
      expect((await waitForJob(s.client, keys, res.body.jobid)).jobstatus).toBe(1);
      volumes.push(res.body.id);
    }
    const rotation = await signed(keys, { command: 'rotateKMSKey', id: key });
    expect((await waitForJob(s.client, keys, rotation.body.jobid)).jobstatus).toBe(1);
    for (const id of volumes) {
      const secret = (await signed(ADMIN_KEYS, { command: 'getVolumeEncryptionKey', id })).body.volumeencryptionkey.secret as string;
      const raw = Buffer.from(secret, 'base64');
      secrets.add(secret).add(raw.toString('hex')).add(raw.toString('base64url'));
      if (/^[\x20-\x7e]+$/.test(raw.toString('latin1'))) secrets.add(raw.toString('latin1'));
    }
    await ui.get({ command: 'logout' });

    const log = lines.join('');
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, any>);
    expect(parsed.length).toBeGreaterThan(20);
    expect(parsed.some((l) => l.level === 'debug')).toBe(true);
    const hits = [...secrets].filter((secret) => secret.length >= 8 && log.includes(secret));
    expect(hits).toEqual([]);

    const access = parsed.filter((l) => l.msg === 'api request');
    expect(access.map((l) => l.command)).toEqual(expect.arrayContaining(['login', 'createHSMProfile', 'createVolume', 'getVolumeEncryptionKey', 'rotateKMSKey']));
    for (const a of access) {
      expect(Object.keys(a)).toEqual(expect.arrayContaining(['requestId', 'command', 'status', 'errorcode', 'durationMs']));
    }
    expect(access.find((l) => l.command === 'login' && l.errorcode === 531)).toBeDefined();
    expect(access.find((l) => l.command === 'createKMSKey')).toMatchObject({ user: 'logged-user', account: 'logged-user', status: 200, errorcode: 0 });
    // The request id of createVolume is on its access line and on the log lines of the job it started.
    expect(access.filter((l) => l.requestId === createVolumeRequest).map((l) => l.command)).toEqual(['createVolume']);
    expect(parsed.filter((l) => l.requestId === createVolumeRequest && l.job).map((l) => l.msg)).toEqual(expect.arrayContaining(['job started', 'job finished']));
  });
});
