/**
 * HSM profiles and KMS keys end to end on a real SoftHSM2 token, through the signed HTTP API as
 * cmk sends it: a PKCS#11 profile checked against the token, a key whose KEK appears in the token,
 * a rotation polled with queryAsyncJobResult, and the PIN in no response, log line or column.
 */
import type { Logger } from '../../src/core/logger';
import { profileConfigFor } from '../../src/kms/hsm-profiles';
import type { ApiAnswer, Params } from '../support/client';
import { detailParams, type Keys } from '../support/actors';
import { createKmsWorld, finishedJob, suffix, type KmsWorld } from '../support/kms-world';
import { startTestServer, type TestServer } from '../support/server';
import { createSoftHsmTokens, type SoftHsmToken } from '../support/softhsm';

const logLines: string[] = [];
const capturing: Logger = {
  debug: (msg, f) => logLines.push(JSON.stringify({ msg, ...f })),
  info: (msg, f) => logLines.push(JSON.stringify({ msg, ...f })),
  warn: (msg, f) => logLines.push(JSON.stringify({ msg, ...f })),
  error: (msg, f) => logLines.push(JSON.stringify({ msg, ...f })),
};
const answers: string[] = [];

let token: SoftHsmToken;
let ts: TestServer;
let w: KmsWorld;
let profile: { id: string; name: string };

/** Every answer is kept, to prove afterwards that none carried the PIN. */
async function call(keys: Keys, params: Params): Promise<ApiAnswer> {
  const res = await ts.client.signed(keys, params);
  answers.push(res.raw);
  return res;
}

const pkcs11Params = (name: string, details: Record<string, string>): Params => ({
  command: 'createHSMProfile', name, protocol: 'pkcs11', ispublic: true, vendorname: 'SoftHSM',
  ...detailParams(details),
});
const kekPresent = async (profileRowId: number, label: string): Promise<boolean> =>
  ts.app.providers.get('pkcs11').hasKek({ profile: await profileConfigFor(ts.app, profileRowId), label });
const storedProfiles = async (name: string) => ts.app.db('kms_hsm_profiles').where({ name }).count({ n: '*' }).first().then((r) => Number(r?.n));

beforeAll(async () => {
  // SoftHSM reads SOFTHSM2_CONF at C_Initialize: the token exists before the server loads the library.
  [token] = await createSoftHsmTokens(1);
  ts = await startTestServer({}, { logger: capturing });
  w = await createKmsWorld(ts.client);
});

afterAll(async () => {
  await ts?.close();
  await token?.cleanup();
});

describe('a PKCS#11 HSM profile on SoftHSM2', () => {
  it('is checked against the token and answered with the PIN masked', async () => {
    const res = await call(w.root.keys, pkcs11Params(`softhsm-${suffix()}`, token.details()));
    expect(res.status).toBe(200);
    profile = res.body.hsmprofile;
    expect(res.body.hsmprofile).toMatchObject({
      protocol: 'pkcs11', vendor: 'SoftHSM', ispublic: true, enabled: true,
      details: { library: token.library, token_label: token.tokenLabel, pin: '*****' },
    });
  });

  it('with a wrong PIN is a 431 and nothing is stored', async () => {
    const name = `wrong-pin-${suffix()}`;
    const res = await call(w.root.keys, pkcs11Params(name, token.details({ pin: 'not-the-pin' })));
    expect({ status: res.status, errorcode: res.body.errorcode, cserrorcode: res.body.cserrorcode }).toEqual({ status: 431, errorcode: 431, cserrorcode: 4350 });
    expect(res.body.errortext).toMatch(/PIN/);
    expect(await storedProfiles(name)).toBe(0);
  });

  it('naming a token that does not exist is a 431 and nothing is stored', async () => {
    const name = `no-token-${suffix()}`;
    const res = await call(w.root.keys, pkcs11Params(name, token.details({ token_label: 'no-such-token' })));
    expect(res.status).toBe(431);
    expect(res.body.errortext).toContain("no token labelled 'no-such-token'");
    expect(await storedProfiles(name)).toBe(0);
  });

  it('with bad details is a 431 naming every problem, and nothing is stored', async () => {
    const name = `bad-${suffix()}`;
    const res = await call(w.root.keys, pkcs11Params(name, { library: 'libsofthsm2.so', max_sessions: '0' }));
    expect(res.status).toBe(431);
    expect(res.body.errortext).toContain(`Invalid details for HSM profile ${name}:`);
    for (const problem of ["'library' must be an absolute path", "One of the details 'slot', 'slot_list_index' or 'token_label'", "'pin' is required", "'max_sessions' must be an integer > 0"]) {
      expect(res.body.errortext).toContain(problem);
    }
    expect(await storedProfiles(name)).toBe(0);
  });

  it('whose library cannot be loaded is a 431 and nothing is stored', async () => {
    const name = `no-lib-${suffix()}`;
    const res = await call(w.root.keys, pkcs11Params(name, token.details({ library: '/nonexistent/libpkcs11.so' })));
    expect(res.status).toBe(431);
    expect(res.body.errortext).toContain('Cannot load PKCS#11 library /nonexistent/libpkcs11.so');
    expect(await storedProfiles(name)).toBe(0);
  });
});

describe('a KMS key on the SoftHSM2 profile', () => {
  let keyId: string;

  it('is created by a user with its version-1 KEK in the token', async () => {
    const res = await call(w.a.keys, { command: 'createKMSKey', name: `disk-${suffix()}`, zoneid: w.zoneId, hsmprofileid: profile.id, keybits: 256 });
    expect(res.status).toBe(200);
    keyId = res.body.kmskey.id;
    expect(res.body.kmskey).toMatchObject({ hsmprofileid: profile.id, hsmprofile: profile.name, version: 1, keybits: 256 });
    const row = (await ts.app.kms.keys.byUuid(keyId))!;
    const [v1] = await ts.app.kms.keys.versionsOf(row.id);
    expect(await kekPresent(v1.hsmProfileId, v1.kekLabel)).toBe(true);
  });

  it('rotates through a job polled with queryAsyncJobResult: v2 Active, v1 Previous, both KEKs in the token', async () => {
    const res = await call(w.a.keys, { command: 'rotateKMSKey', id: keyId });
    expect(res.status).toBe(200);
    const job = await finishedJob(ts, w.a.keys, res.body.jobid);
    answers.push(JSON.stringify(job));
    expect(job).toMatchObject({ jobstatus: 1, jobresult: { success: true } });
    const row = (await ts.app.kms.keys.byUuid(keyId))!;
    const versions = await ts.app.kms.keys.versionsOf(row.id);
    expect(versions.map((v) => [v.versionNumber, v.status])).toEqual([[1, 'Previous'], [2, 'Active']]);
    for (const v of versions) expect(await kekPresent(v.hsmProfileId, v.kekLabel)).toBe(true);
    const listed = await call(w.root.keys, { command: 'listKMSKeys', listall: true, id: keyId });
    expect(listed.body.kmskey[0]).toMatchObject({ version: 2, keklabel: versions[1].kekLabel });
  });

  it('is deleted through a job, and its KEKs leave the token', async () => {
    const row = (await ts.app.kms.keys.byUuid(keyId))!;
    const versions = await ts.app.kms.keys.versionsOf(row.id);
    const res = await call(w.a.keys, { command: 'deleteKMSKey', id: keyId });
    expect((await finishedJob(ts, w.a.keys, res.body.jobid)).jobstatus).toBe(1);
    for (const v of versions) expect(await kekPresent(v.hsmProfileId, v.kekLabel)).toBe(false);
  });
});

describe('the PIN', () => {
  it('appears in no response and no log line', async () => {
    await call(w.root.keys, { command: 'listHSMProfiles', listall: true });
    await call(w.a.keys, { command: 'listHSMProfiles', listall: true });
    await call(w.root.keys, { command: 'listEvents', listall: true, pagesize: 500, page: 1 });
    expect(answers.length).toBeGreaterThan(8);
    expect(logLines.length).toBeGreaterThan(0);
    for (const text of [...answers, ...logLines]) expect(text).not.toContain(token.pin);
  });

  it('appears in no column of any table in plaintext', async () => {
    const db = ts.app.db;
    const tables: string[] = db.client.config.client === 'mysql2'
      ? (await db.raw('SHOW TABLES'))[0].map((r: Record<string, string>) => Object.values(r)[0])
      : (await db('sqlite_master').where({ type: 'table' }).select('name')).map((r: { name: string }) => r.name);
    expect(tables).toEqual(expect.arrayContaining(['kms_hsm_profile_details', 'event', 'async_job']));
    const pinBytes = Buffer.from(token.pin, 'utf8');
    for (const table of tables) {
      for (const row of await db(table).select('*')) {
        for (const value of Object.values(row)) {
          const bytes = Buffer.isBuffer(value) ? value : Buffer.from(String(value), 'utf8');
          expect({ table, found: bytes.includes(pinBytes) }).toEqual({ table, found: false });
        }
      }
    }
    const stored = await db('kms_hsm_profile_details as d').join('kms_hsm_profiles as p', 'p.id', 'd.profile_id').where({ 'p.uuid': profile.id, 'd.name': 'pin' }).first('d.value');
    expect(stored.value.length).toBeGreaterThan(token.pin.length);
  });
});
