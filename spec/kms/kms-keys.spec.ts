/**
 * The KMS key lifecycle on the database provider, through the API: create (KEK first), rotate
 * (one transaction), refusals that change nothing, delete (KEKs destroyed), and the clean-up of a
 * KEK whose database rows could not be written.
 */
import { randomUUID } from 'node:crypto';
import { kekLabel } from '../../src/kms/aad';
import { KmsError } from '../../src/core/errors';
import { profileConfigFor } from '../../src/kms/hsm-profiles';
import { assertKeyBits } from '../../src/kms/kms-keys';
import { KEY_BITS } from '../../src/core/key-bits';
import { ALL_COMMANDS } from '../../src/commands/registry';
import type { EventInput } from '../../src/events/event-log';
import { createKmsWorld, finishedJob, ok, suffix, type KmsWorld } from '../support/kms-world';
import { startTestServer, type TestServer } from '../support/server';

let ts: TestServer;
let w: KmsWorld;
let profileId: string;
let profile2Id: string;

beforeAll(async () => {
  ts = await startTestServer();
  w = await createKmsWorld(ts.client);
  profileId = (await ok(ts.client, w.root.keys, { command: 'createHSMProfile', name: `db-${suffix()}`, protocol: 'database', ispublic: true })).hsmprofile.id;
  profile2Id = (await ok(ts.client, w.root.keys, { command: 'createHSMProfile', name: `db2-${suffix()}`, protocol: 'database', ispublic: true })).hsmprofile.id;
});

afterAll(async () => {
  await ts?.close();
});

afterEach(() => {
  jest.restoreAllMocks();
});

const createKey = async (extra: Record<string, string | number> = {}) =>
  (await ok(ts.client, w.a.keys, { command: 'createKMSKey', name: `k-${suffix()}`, zoneid: w.zoneId, hsmprofileid: profileId, ...extra })).kmskey;
const rowOf = async (uuid: string) => (await ts.app.kms.keys.byUuid(uuid))!;
const hasKek = async (profileRowId: number, label: string) =>
  ts.app.providers.get('database').hasKek({ profile: await profileConfigFor(ts.app, profileRowId), label });
const runJob = async (params: Record<string, string | number>) => {
  const res = await ts.client.signed(w.a.keys, params);
  expect(res.status).toBe(200);
  return finishedJob(ts, w.a.keys, res.body.jobid);
};
const rejectEvent = (type: EventInput['type']) => {
  const real = ts.app.events.record.bind(ts.app.events);
  jest.spyOn(ts.app.events, 'record').mockImplementation(async (e, trx) => {
    if (e.type === type) throw new Error('simulated database failure');
    return real(e, trx);
  });
};

describe('createKMSKey', () => {
  it('answers the kmskey fields and stores version 1 Active, its KEK made in the backend under kekLabel(..., 1)', async () => {
    const key = await createKey({ description: 'volumes of team A' });
    expect(key).toMatchObject({
      description: 'volumes of team A', account: w.a.account, accountid: w.a.accountId, domainid: w.d1, zoneid: w.zoneId, hsmprofileid: profileId,
      algorithm: 'AES/GCM/NoPadding', keybits: 256, version: 1, enabled: true,
    });
    expect(key.keklabel).toBeUndefined();
    expect(key.domainpath).toMatch(/^ROOT\/d1-/);
    const row = await rowOf(key.id);
    const versions = await ts.app.kms.keys.versionsOf(row.id);
    expect(versions.map((v) => [v.versionNumber, v.status])).toEqual([[1, 'Active']]);
    expect(versions[0].kekLabel).toBe(kekLabel({ domainId: row.domainId, accountId: row.accountId, keyUuid: key.id }, 1));
    expect(await hasKek(row.hsmProfileId, versions[0].kekLabel)).toBe(true);
    const event = await ts.app.db('event').where({ type: 'KMS.KEY.CREATE', resource_id: key.id }).first();
    expect(event).toMatchObject({ resource_type: 'KmsKey', level: 'INFO' });
  });

  it('refuses a second key of the same name in the account and stores nothing', async () => {
    const key = await createKey();
    const before = await ts.app.db('kms_keys').count({ n: '*' }).first();
    const res = await ts.client.signed(w.a.keys, { command: 'createKMSKey', name: key.name, zoneid: w.zoneId, hsmprofileid: profileId });
    expect(res.body).toEqual({ uuidList: [], errorcode: 431, cserrorcode: 4350, errortext: `A KMS key with name ${key.name} already exists in this account` });
    expect(await ts.app.db('kms_keys').count({ n: '*' }).first()).toEqual(before);
  });

  it('answers a backend failure as 530 "Failed to create KMS key: ..." and stores nothing', async () => {
    const provider = ts.app.providers.get('database');
    jest.spyOn(provider, 'createKek').mockRejectedValue(new KmsError('unavailable', 'backend is down'));
    const name = `k-${suffix()}`;
    const res = await ts.client.signed(w.a.keys, { command: 'createKMSKey', name, zoneid: w.zoneId, hsmprofileid: profileId });
    expect(res.body).toEqual({ uuidList: [], errorcode: 530, cserrorcode: 9999, errortext: 'Failed to create KMS key: backend is down' });
    expect(await ts.app.db('kms_keys').where({ name }).first()).toBeUndefined();
  });

  it('destroys the new KEK when the database insert fails', async () => {
    const provider = ts.app.providers.get('database');
    const created = jest.spyOn(provider, 'createKek');
    rejectEvent('KMS.KEY.CREATE');
    const name = `k-${suffix()}`;
    const res = await ts.client.signed(w.a.keys, { command: 'createKMSKey', name, zoneid: w.zoneId, hsmprofileid: profileId });
    expect(res.status).toBe(530);
    const [kek] = created.mock.calls[0];
    expect(await provider.hasKek(kek)).toBe(false);
    expect(await ts.app.db('kms_keys').where({ name }).first()).toBeUndefined();
    expect(await ts.app.db('kms_kek_versions').where({ kek_label: kek.label }).first()).toBeUndefined();
  });
});

describe('rotateKMSKey', () => {
  it('makes version 2 Active and version 1 Previous, keeps both KEKs, and can change size and profile', async () => {
    const key = await createKey();
    const job = await runJob({ command: 'rotateKMSKey', id: key.id, keybits: 128, hsmprofileid: profile2Id });
    expect(job).toMatchObject({ jobstatus: 1, jobresult: { success: true } });
    const row = await rowOf(key.id);
    const versions = await ts.app.kms.keys.versionsOf(row.id);
    expect(versions.map((v) => [v.versionNumber, v.status, v.keyBits])).toEqual([[1, 'Previous', 256], [2, 'Active', 128]]);
    expect(row.kekLabel).toBe(versions[1].kekLabel);
    expect(versions[1].kekLabel).toMatch(/-v2$/);
    for (const v of versions) expect(await hasKek(v.hsmProfileId, v.kekLabel)).toBe(true);
    const listed = (await ok(ts.client, w.a.keys, { command: 'listKMSKeys', id: key.id })).kmskey[0];
    expect(listed).toMatchObject({ version: 2, keybits: 128, hsmprofileid: profile2Id });
    expect(await ts.app.db('event').where({ type: 'KMS.KEY.ROTATE', resource_id: key.id }).first()).toBeDefined();
  });

  it('fails the job of a disabled key with 431 "KMS key is not enabled: <id>", as CloudStack checks it in the job', async () => {
    const key = await createKey();
    await ok(ts.client, w.a.keys, { command: 'updateKMSKey', id: key.id, enabled: false });
    const job = await runJob({ command: 'rotateKMSKey', id: key.id });
    expect(job).toMatchObject({ jobstatus: 2, jobresultcode: 431, jobresult: { errorcode: 431, errortext: `KMS key is not enabled: ${key.id}` } });
    expect((await ts.app.kms.keys.versionsOf((await rowOf(key.id)).id)).map((v) => v.status)).toEqual(['Active']);
  });

  it('fails the job with 530 "Failed to rotate KMS key: ..." when the backend refuses', async () => {
    const key = await createKey();
    jest.spyOn(ts.app.providers.get('database'), 'createKek').mockRejectedValue(new KmsError('provider', 'backend refused', { retryable: false }));
    const job = await runJob({ command: 'rotateKMSKey', id: key.id });
    expect(job).toMatchObject({ jobstatus: 2, jobresult: { errorcode: 530, errortext: 'Failed to rotate KMS key: backend refused' } });
    expect((await ts.app.kms.keys.versionsOf((await rowOf(key.id)).id)).map((v) => v.status)).toEqual(['Active']);
  });

  it('keeps version 1 Active and destroys the new KEK when the rotation transaction fails', async () => {
    const key = await createKey();
    const created = jest.spyOn(ts.app.providers.get('database'), 'createKek');
    rejectEvent('KMS.KEY.ROTATE');
    const job = await runJob({ command: 'rotateKMSKey', id: key.id });
    expect(job.jobstatus).toBe(2);
    const row = await rowOf(key.id);
    expect((await ts.app.kms.keys.versionsOf(row.id)).map((v) => [v.versionNumber, v.status])).toEqual([[1, 'Active']]);
    const [kek] = created.mock.calls[0];
    expect(kek.label).toMatch(/-v2$/);
    expect(await ts.app.db('kms_kek_versions').where({ kek_label: kek.label }).first()).toBeUndefined();
    expect(await ts.app.providers.get('database').hasKek(kek)).toBe(false);
  });
});

describe('deleteKMSKey', () => {
  /** CloudStack checks use in the job: {jobid} at once, then jobstatus 2 whose jobresult is the 431. */
  const refusal = async (uuid: string) => {
    const job = await runJob({ command: 'deleteKMSKey', id: uuid });
    expect(job).toMatchObject({ jobstatus: 2, jobresultcode: 431 });
    return { uuidList: [], cserrorcode: 4350, ...job.jobresult };
  };

  it('is refused while a volume uses the key, and nothing changes', async () => {
    const key = await createKey();
    const row = await rowOf(key.id);
    await ts.app.db('volumes').insert({ uuid: randomUUID(), name: 'v', account_id: row.accountId, domain_id: row.domainId, zone_id: row.zoneId, kms_key_id: row.id, created: Date.now() });
    expect(await refusal(key.id)).toEqual({ uuidList: [], errorcode: 431, cserrorcode: 4350, errortext: `Cannot delete KMS key: ${key.id}. There are Volumes which still reference this key` });
    expect((await ok(ts.client, w.a.keys, { command: 'listKMSKeys', id: key.id })).count).toBe(1);
  });

  it('is refused while wrapped keys use the key', async () => {
    const key = await createKey();
    const row = await rowOf(key.id);
    const [v1] = await ts.app.kms.keys.versionsOf(row.id);
    await ts.app.db('kms_wrapped_key').insert({ uuid: randomUUID(), kms_key_id: row.id, kek_version_id: v1.id, zone_id: row.zoneId, owner_uuid: randomUUID(), wrapped_blob: Buffer.alloc(60), created: Date.now() });
    expect(await refusal(key.id)).toEqual({ uuidList: [], errorcode: 431, cserrorcode: 4350, errortext: `Cannot delete KMS key: ${key.id}. 1 wrapped key(s) still reference this key` });
  });

  it('soft-removes the key and destroys every KEK version in its backend', async () => {
    const key = await createKey();
    await runJob({ command: 'rotateKMSKey', id: key.id });
    const row = await rowOf(key.id);
    const versions = await ts.app.kms.keys.versionsOf(row.id);
    const job = await runJob({ command: 'deleteKMSKey', id: key.id });
    expect(job).toMatchObject({ jobstatus: 1, jobresult: { success: true } });
    expect(await ts.app.kms.keys.byUuid(key.id)).toBeUndefined();
    expect((await ok(ts.client, w.a.keys, { command: 'listKMSKeys', id: key.id })).count ?? 0).toBe(0);
    for (const v of versions) expect(await hasKek(v.hsmProfileId, v.kekLabel)).toBe(false);
    expect(await ts.app.db('event').where({ type: 'KMS.KEY.DELETE', resource_id: key.id, level: 'INFO' }).first()).toBeDefined();
  });

  it('records a WARN event, not a failure, when a KEK cannot be destroyed', async () => {
    const key = await createKey();
    jest.spyOn(ts.app.providers.get('database'), 'destroyKek').mockRejectedValue(new KmsError('unavailable', 'backend is down'));
    const job = await runJob({ command: 'deleteKMSKey', id: key.id });
    expect(job.jobstatus).toBe(1);
    const warn = await ts.app.db('event').where({ type: 'KMS.KEY.DELETE', resource_id: key.id, level: 'WARN' }).first();
    expect(warn.description).toContain('backend is down');
  });
});

describe('the keybits declarations', () => {
  it('name the sizes and the default that CloudStack\'s 431 text names', () => {
    expect(() => assertKeyBits(100)).toThrow('Key bits must be 128, 192, or 256');
    expect(KEY_BITS).toEqual([128, 192, 256]);
    for (const name of ['createKMSKey', 'rotateKMSKey']) {
      const keybits = ALL_COMMANDS.find((c) => c.name === name)!.params.keybits;
      for (const bits of KEY_BITS) expect(keybits.description).toContain(String(bits));
    }
    expect(ALL_COMMANDS.find((c) => c.name === 'createKMSKey')!.params.keybits.default).toBe(256);
  });
});
