/**
 * Volumes end to end on the PKCS#11 backend, only through cmk-style signed GETs: a KMS volume's
 * DEK is generated inside SoftHSM2 and read back with getVolumeEncryptionKey; legacy volumes work
 * beside it; a deleted volume's secret is gone.
 */
import { startTestServer, ADMIN_KEYS, type TestServer } from '../support/server';
import { createActor, createPkcs11Profile, waitForJob, type Keys } from '../support/actors';
import { createSoftHsmToken, type SoftHsmToken } from '../support/softhsm';

describe('volumes on SoftHSM2 through signed GETs', () => {
  let s: TestServer;
  let token: SoftHsmToken;
  let user: Awaited<ReturnType<typeof createActor>>;
  let zone: string;
  let key: string;

  const get = async (keys: Keys, params: Record<string, string | number | boolean>) => {
    const res = await s.client.signed(keys, params);
    if (res.status !== 200) throw new Error(`${String(params.command)}: ${res.status} ${res.raw}`);
    return res.body;
  };
  const createVolume = async (params: Record<string, string | number | boolean>) => {
    const started = await get(user.keys, { command: 'createVolume', ...params });
    const job = await waitForJob(s.client, user.keys, started.jobid);
    expect(job).toMatchObject({ jobstatus: 1, jobresulttype: 'object', jobinstancetype: 'Volume', jobinstanceid: started.id });
    return job.jobresult.volume;
  };
  const secret = async (id: string) => (await get(ADMIN_KEYS, { command: 'getVolumeEncryptionKey', id })).volumeencryptionkey;

  beforeAll(async () => {
    token = await createSoftHsmToken();
    s = await startTestServer();
    zone = (await get(ADMIN_KEYS, { command: 'createZone', name: 'hsm-zone' })).zone.id;
    user = await createActor(s.client, { name: 'hsmuser' });
    const profileId = await createPkcs11Profile(s.client, token.details());
    key = (await get(user.keys, { command: 'createKMSKey', name: 'vol-key', zoneid: zone, hsmprofileid: profileId, keybits: 256 })).kmskey.id;
  });
  afterAll(async () => {
    await s.close();
    await token.cleanup();
  });

  it('creates a KMS volume whose DEK reads back unchanged, and destroys it with the volume', async () => {
    const vol = await createVolume({ name: 'data-1', zoneid: zone, kmskeyid: key });
    expect(vol).toMatchObject({ name: 'data-1', kmskeyid: key, kmskey: 'vol-key', kmskeyversion: 1, encryptformat: 'LUKS', zoneid: zone });
    const a = await secret(vol.id);
    expect(Buffer.from(a.secret, 'base64')).toHaveLength(32);
    expect(a).toMatchObject({ volumeid: vol.id, kmskeyid: key, kmskeyversion: 1 });
    expect((await secret(vol.id)).secret).toBe(a.secret);
    const listed = await get(user.keys, { command: 'listVolumes', kmskeyid: key });
    expect(listed.count).toBe(1);
    expect(listed.volume[0].id).toBe(vol.id);

    expect(await get(user.keys, { command: 'deleteVolume', id: vol.id })).toEqual({ success: true });
    const gone = await s.client.signed(ADMIN_KEYS, { command: 'getVolumeEncryptionKey', id: vol.id });
    expect(gone.status).toBe(431);
    expect(await get(user.keys, { command: 'listVolumes', kmskeyid: key })).toEqual({});
  });

  it('serves legacy and KMS volumes side by side', async () => {
    const legacy = await createVolume({ name: 'old-style', zoneid: zone, encrypt: true });
    const kms = await createVolume({ name: 'new-style', zoneid: zone, kmskeyid: key });
    expect(Buffer.from((await secret(legacy.id)).secret, 'base64').toString('ascii')).toMatch(/^[A-Za-z0-9+/]{64}$/);
    expect((await secret(legacy.id)).kmskeyid).toBeUndefined();
    expect((await secret(kms.id)).kmskeyid).toBe(key);
  });

  it('refuses the key for another zone and when disabled, with CloudStack\'s texts', async () => {
    const other = (await get(ADMIN_KEYS, { command: 'createZone', name: 'other-zone' })).zone.id;
    const wrongZone = await s.client.signed(user.keys, { command: 'createVolume', name: 'x', zoneid: other, kmskeyid: key });
    expect(wrongZone.body).toMatchObject({ errorcode: 431, errortext: `KMS key belongs to zone ${zone} but the target resource is in zone ${other}` });
    await get(user.keys, { command: 'updateKMSKey', id: key, enabled: false });
    const disabled = await s.client.signed(user.keys, { command: 'createVolume', name: 'y', zoneid: zone, kmskeyid: key });
    expect(disabled.body).toMatchObject({ errorcode: 431, errortext: `KMS key is not enabled and cannot be used for volume encryption: ${key}` });
    await get(user.keys, { command: 'updateKMSKey', id: key, enabled: true });
  });
});
