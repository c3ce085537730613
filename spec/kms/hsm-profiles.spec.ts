/**
 * HSM profiles on the database provider: the seeded default profile, validation before anything is
 * stored, masking, and the delete guards (reference §1.4).
 */
import { randomUUID } from 'node:crypto';
import { ensureDefaultHsmProfile } from '../../src/kms/hsm-profiles';
import { createKmsWorld, finishedJob, ok, suffix, type KmsWorld } from '../support/kms-world';
import { startTestServer, type TestServer } from '../support/server';

let ts: TestServer;
let w: KmsWorld;

beforeAll(async () => {
  ts = await startTestServer();
  w = await createKmsWorld(ts.client);
});

afterAll(async () => {
  await ts?.close();
});

const profileCount = async () => Number((await ts.app.db('kms_hsm_profiles').count({ n: '*' }).first())?.n);
const root = (params: Record<string, string | number | boolean>) => ts.client.signed(w.root.keys, params);

describe('the default database profile', () => {
  it('is seeded once, disabled, public, owned by the root admin account in ROOT', async () => {
    await Promise.all([ensureDefaultHsmProfile(ts.app.repos), ensureDefaultHsmProfile(ts.app.repos)]);
    const body = await ok(ts.client, w.root.keys, { command: 'listHSMProfiles', listall: true, protocol: 'database', keyword: 'default' });
    const seeded = body.hsmprofile.filter((p: { name: string }) => p.name === 'default');
    expect(seeded).toHaveLength(1);
    expect(seeded[0]).toMatchObject({ protocol: 'database', enabled: false, ispublic: true, account: 'admin', domain: 'ROOT', details: {} });
  });

  it('cannot be deleted', async () => {
    const body = await ok(ts.client, w.root.keys, { command: 'listHSMProfiles', listall: true, protocol: 'database', keyword: 'default' });
    const res = await root({ command: 'deleteHSMProfile', id: body.hsmprofile[0].id });
    expect(res.body).toEqual({ uuidList: [], errorcode: 431, cserrorcode: 4350, errortext: 'Default database HSM profile cannot be deleted' });
  });
});

describe('createHSMProfile', () => {
  it('refuses an unknown protocol and stores nothing', async () => {
    const before = await profileCount();
    const res = await root({ command: 'createHSMProfile', name: `p-${suffix()}`, protocol: 'kmip2' });
    expect(res.body).toEqual({ uuidList: [], errorcode: 431, cserrorcode: 4350, errortext: 'No provider found for protocol: kmip2' });
    expect(await profileCount()).toBe(before);
  });

  it('refuses details its provider does not take, naming them, and stores nothing', async () => {
    const before = await profileCount();
    const res = await root({ command: 'createHSMProfile', name: `p-${suffix()}`, protocol: 'database', 'details[0].colour': 'blue' });
    expect(res.status).toBe(431);
    expect(res.body.errortext).toMatch(/^Invalid details for HSM profile p-\w+: Unknown detail 'colour'/);
    expect(await profileCount()).toBe(before);
  });

  it('answers a zone-scoped profile with the zone and records HSM.PROFILE.CREATE', async () => {
    const body = await ok(ts.client, w.root.keys, { command: 'createHSMProfile', name: `z-${suffix()}`, protocol: 'database', zoneid: w.zoneId, vendorname: 'ACME' });
    expect(body.hsmprofile).toMatchObject({ zoneid: w.zoneId, vendor: 'ACME', enabled: true, ispublic: false, account: 'admin' });
    const event = await ts.app.db('event').where({ type: 'HSM.PROFILE.CREATE', resource_id: body.hsmprofile.id }).first();
    expect(event.resource_type).toBe('HsmProfile');
  });

  it('refuses a key in another zone than the profile\'s', async () => {
    const p = (await ok(ts.client, w.root.keys, { command: 'createHSMProfile', name: `z-${suffix()}`, protocol: 'database', zoneid: w.zoneId, ispublic: true })).hsmprofile;
    const res = await ts.client.signed(w.a.keys, { command: 'createKMSKey', name: `k-${suffix()}`, zoneid: w.zone2Id, hsmprofileid: p.id });
    expect(res.body.errortext).toBe(`HSM profile '${p.name}' is scoped to another zone and cannot be used in this key's zone`);
  });
});

describe('updateHSMProfile', () => {
  it('renames and disables, and a disabled profile cannot take new keys', async () => {
    const p = (await ok(ts.client, w.root.keys, { command: 'createHSMProfile', name: `u-${suffix()}`, protocol: 'database', ispublic: true })).hsmprofile;
    const name = `renamed-${suffix()}`;
    const updated = (await ok(ts.client, w.root.keys, { command: 'updateHSMProfile', id: p.id, name, enabled: false })).hsmprofile;
    expect(updated).toMatchObject({ id: p.id, name, enabled: false });
    const res = await ts.client.signed(w.a.keys, { command: 'createKMSKey', name: `k-${suffix()}`, zoneid: w.zoneId, hsmprofileid: p.id });
    expect(res.body).toEqual({ uuidList: [], errorcode: 431, cserrorcode: 4350, errortext: `HSM profile is not enabled: ${name}` });
  });
});

describe('deleteHSMProfile', () => {
  it('is refused while wrapped keys use a KEK version on it, even after the key moved to another profile', async () => {
    const p1 = (await ok(ts.client, w.root.keys, { command: 'createHSMProfile', name: `w1-${suffix()}`, protocol: 'database', ispublic: true })).hsmprofile;
    const p2 = (await ok(ts.client, w.root.keys, { command: 'createHSMProfile', name: `w2-${suffix()}`, protocol: 'database', ispublic: true })).hsmprofile;
    const key = (await ok(ts.client, w.a.keys, { command: 'createKMSKey', name: `k-${suffix()}`, zoneid: w.zoneId, hsmprofileid: p1.id })).kmskey;
    const row = (await ts.app.kms.keys.byUuid(key.id))!;
    const [v1] = await ts.app.kms.keys.versionsOf(row.id);
    await ts.app.db('kms_wrapped_key').insert({ uuid: randomUUID(), kms_key_id: row.id, kek_version_id: v1.id, zone_id: row.zoneId, owner_uuid: randomUUID(), wrapped_blob: Buffer.alloc(60), created: Date.now() });
    const rotate = await ts.client.signed(w.a.keys, { command: 'rotateKMSKey', id: key.id, hsmprofileid: p2.id });
    expect((await finishedJob(ts, w.a.keys, rotate.body.jobid)).jobstatus).toBe(1);
    const res = await root({ command: 'deleteHSMProfile', id: p1.id });
    expect(res.body).toEqual({
      uuidList: [], errorcode: 431, cserrorcode: 4350,
      errortext: `Cannot delete HSM profile '${p1.name}': it is referenced by 1 wrapped key(s) through KEK versions. Please wait for key rotation to complete or delete those volumes first.`,
    });
    expect((await ok(ts.client, w.root.keys, { command: 'listHSMProfiles', listall: true, id: p1.id })).count).toBe(1);
  });

  it('soft-removes an unused profile and its details, and records HSM.PROFILE.DELETE', async () => {
    const p = (await ok(ts.client, w.root.keys, { command: 'createHSMProfile', name: `d-${suffix()}`, protocol: 'database' })).hsmprofile;
    expect((await ok(ts.client, w.root.keys, { command: 'deleteHSMProfile', id: p.id })).success).toBe(true);
    expect((await ok(ts.client, w.root.keys, { command: 'listHSMProfiles', listall: true, id: p.id })).count ?? 0).toBe(0);
    expect(await ts.app.db('event').where({ type: 'HSM.PROFILE.DELETE', resource_id: p.id }).first()).toBeDefined();
  });
});
