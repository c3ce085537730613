import { startTestServer, ADMIN_KEYS, type TestServer } from '../support/server';
import { adminCall, createActor, enableDefaultProfile, waitForJob, type Keys } from '../support/actors';

describe('volumes and their keys', () => {
  let s: TestServer;
  let zone1: string;
  let zone2: string;
  let alice: Awaited<ReturnType<typeof createActor>>;
  let bob: Awaited<ReturnType<typeof createActor>>;
  let aliceKey: string;
  let bobKey: string;
  let profileId: string;

  const call = (keys: Keys, params: Record<string, string | number | boolean>) => s.client.signed(keys, params);
  const secretOf = (volumeId: string) => call(ADMIN_KEYS, { command: 'getVolumeEncryptionKey', id: volumeId });
  /** createVolume is async like CloudStack's: {id, jobid}, the job answers the volume. */
  const createVolume = async (keys: Keys, params: Record<string, string | number | boolean>) => {
    const res = await call(keys, { command: 'createVolume', ...params });
    if (res.status !== 200) return res;
    expect(res.body).toEqual({ id: expect.any(String), jobid: expect.any(String) });
    const job = await waitForJob(s.client, keys, res.body.jobid);
    expect(job.jobstatus).toBe(1);
    return { ...res, body: job.jobresult.volume };
  };

  beforeAll(async () => {
    s = await startTestServer();
    zone1 = (await adminCall(s.client, { command: 'createZone', name: 'zone1' })).zone.id;
    zone2 = (await adminCall(s.client, { command: 'createZone', name: 'zone2' })).zone.id;
    alice = await createActor(s.client, { name: 'alice' });
    bob = await createActor(s.client, { name: 'bob' });
    profileId = await enableDefaultProfile(s.client);
    aliceKey = (await call(alice.keys, { command: 'createKMSKey', name: 'alice-key', zoneid: zone1, hsmprofileid: profileId })).body.kmskey.id;
    bobKey = (await call(bob.keys, { command: 'createKMSKey', name: 'bob-key', zoneid: zone1, hsmprofileid: profileId })).body.kmskey.id;
  });
  afterAll(async () => { await s.close(); });

  describe('legacy passphrase volumes (encrypt=true without a KMS key)', () => {
    it('keeps a 64-character passphrase under the master key and returns it stably', async () => {
      const vol = await createVolume(alice.keys, { name: 'legacy-1', zoneid: zone1, encrypt: true });
      expect(vol.body).toMatchObject({ name: 'legacy-1', encryptformat: 'LUKS', account: 'alice' });
      expect(vol.body.kmskeyid).toBeUndefined();
      const first = await secretOf(vol.body.id);
      expect(first.status).toBe(200);
      const passphrase = Buffer.from(first.body.volumeencryptionkey.secret, 'base64').toString('ascii');
      expect(passphrase).toMatch(/^[A-Za-z0-9+/]{64}$/);
      expect(Buffer.from(passphrase, 'base64')).toHaveLength(48);
      expect((await secretOf(vol.body.id)).body.volumeencryptionkey.secret).toBe(first.body.volumeencryptionkey.secret);
      const row = await s.app.db('passphrase').first();
      expect(String(row.passphrase)).not.toContain(passphrase);
    });

    it('has no secret for an unencrypted volume', async () => {
      const vol = await createVolume(alice.keys, { name: 'plain', zoneid: zone1 });
      const res = await secretOf(vol.body.id);
      expect(res.status).toBe(431);
      expect(res.body.errortext).toBe(`Volume ${vol.body.id} is not encrypted`);
    });

    it('destroys the passphrase with the volume', async () => {
      const vol = await createVolume(alice.keys, { name: 'legacy-doomed', zoneid: zone1, encrypt: true });
      const pid = (await s.app.db('volumes').where({ uuid: vol.body.id }).first()).passphrase_id;
      expect((await call(alice.keys, { command: 'deleteVolume', id: vol.body.id })).body).toEqual({ success: true });
      expect((await secretOf(vol.body.id)).status).toBe(431);
      expect(await s.app.db('passphrase').where({ id: pid }).first()).toBeUndefined();
    });
  });

  describe('KMS volumes', () => {
    it.each([[128, 16], [192, 24], [256, 32]])('wraps a %i-bit DEK per kms.dek.size.bits and reads it back unchanged', async (bits, bytes) => {
      await adminCall(s.client, { command: 'updateConfiguration', name: 'kms.dek.size.bits', value: String(bits) });
      const vol = await createVolume(alice.keys, { name: `kms-${bits}`, zoneid: zone1, kmskeyid: aliceKey });
      expect(vol.body).toMatchObject({ kmskeyid: aliceKey, kmskey: 'alice-key', kmskeyversion: 1, encryptformat: 'LUKS' });
      const a = await secretOf(vol.body.id);
      expect(a.status).toBe(200);
      expect(a.body.volumeencryptionkey).toMatchObject({ volumeid: vol.body.id, kmskeyid: aliceKey, kmskeyversion: 1 });
      const dek = Buffer.from(a.body.volumeencryptionkey.secret, 'base64');
      expect(dek).toHaveLength(bytes);
      expect(dek.equals(Buffer.alloc(bytes))).toBe(false);
      expect((await secretOf(vol.body.id)).body.volumeencryptionkey.secret).toBe(a.body.volumeencryptionkey.secret);
      const blob: Buffer = (await s.app.db('kms_wrapped_key').where({ owner_uuid: vol.body.id }).first()).wrapped_blob;
      expect(Buffer.from(blob).includes(dek)).toBe(false);
      await adminCall(s.client, { command: 'updateConfiguration', name: 'kms.dek.size.bits', value: '256' });
    });

    it('lists volumes by kmskeyid with the key id and name', async () => {
      const res = await call(alice.keys, { command: 'listVolumes', kmskeyid: aliceKey });
      expect(res.body.count).toBeGreaterThanOrEqual(3);
      for (const v of res.body.volume) expect(v).toMatchObject({ kmskeyid: aliceKey, kmskey: 'alice-key' });
      expect((await call(bob.keys, { command: 'listVolumes', kmskeyid: aliceKey })).body).toEqual({});
    });

    it('records a KMS.KEY.UNWRAP event for each read of a secret, without the secret', async () => {
      const events = await adminCall(s.client, { command: 'listEvents', type: 'KMS.KEY.UNWRAP', listall: true });
      expect(events.count).toBeGreaterThan(0);
      const secret = (await secretOf((await call(alice.keys, { command: 'listVolumes', kmskeyid: aliceKey })).body.volume[0].id)).body.volumeencryptionkey.secret;
      expect(JSON.stringify(await adminCall(s.client, { command: 'listEvents', listall: true }))).not.toContain(secret);
    });

    it('refuses a key of another zone with CloudStack\'s text, creating nothing', async () => {
      const before = await s.app.db('volumes').count({ n: '*' }).first();
      const res = await call(alice.keys, { command: 'createVolume', name: 'wrong-zone', zoneid: zone2, kmskeyid: aliceKey });
      expect(res.status).toBe(431);
      expect(res.body.errortext).toBe(`KMS key belongs to zone ${zone1} but the target resource is in zone ${zone2}`);
      expect(await s.app.db('volumes').count({ n: '*' }).first()).toEqual(before);
    });

    it('refuses a disabled key', async () => {
      expect((await call(alice.keys, { command: 'updateKMSKey', id: aliceKey, enabled: false })).status).toBe(200);
      const res = await call(alice.keys, { command: 'createVolume', name: 'disabled', zoneid: zone1, kmskeyid: aliceKey });
      expect(res.status).toBe(431);
      expect(res.body.errortext).toBe(`KMS key is not enabled and cannot be used for volume encryption: ${aliceKey}`);
      expect((await call(alice.keys, { command: 'updateKMSKey', id: aliceKey, enabled: true })).status).toBe(200);
    });

    it('refuses another account\'s key with 531', async () => {
      const res = await call(alice.keys, { command: 'createVolume', name: 'foreign', zoneid: zone1, kmskeyid: bobKey });
      expect(res.status).toBe(531);
      expect(res.body.cserrorcode).toBe(4365);
    });

    it('refuses a blob moved to another volume and a volume pointed at another volume\'s key', async () => {
      const v1 = (await createVolume(alice.keys, { name: 'swap-1', zoneid: zone1, kmskeyid: aliceKey })).body;
      const v2 = (await createVolume(alice.keys, { name: 'swap-2', zoneid: zone1, kmskeyid: aliceKey })).body;
      const r1 = await s.app.db('volumes').where({ uuid: v1.id }).first();
      const r2 = await s.app.db('volumes').where({ uuid: v2.id }).first();
      const b1 = (await s.app.db('kms_wrapped_key').where({ id: r1.kms_wrapped_key_id }).first()).wrapped_blob;
      const b2 = (await s.app.db('kms_wrapped_key').where({ id: r2.kms_wrapped_key_id }).first()).wrapped_blob;
      await s.app.db('kms_wrapped_key').where({ id: r1.kms_wrapped_key_id }).update({ wrapped_blob: b2 });
      const moved = await secretOf(v1.id);
      expect(moved.status).toBe(530);
      expect(moved.body.errortext).toMatch(/^Failed to unwrap volume key: /);
      await s.app.db('kms_wrapped_key').where({ id: r1.kms_wrapped_key_id }).update({ wrapped_blob: b1 });
      await s.app.db('volumes').where({ uuid: v1.id }).update({ kms_wrapped_key_id: r2.kms_wrapped_key_id });
      expect((await secretOf(v1.id)).status).toBe(530);
      await s.app.db('volumes').where({ uuid: v1.id }).update({ kms_wrapped_key_id: r1.kms_wrapped_key_id });
      expect((await secretOf(v1.id)).status).toBe(200);
    });

    it('destroys the secret with the volume: it cannot be read again', async () => {
      const vol = (await createVolume(alice.keys, { name: 'doomed', zoneid: zone1, kmskeyid: aliceKey })).body;
      expect((await secretOf(vol.id)).status).toBe(200);
      const wkId = (await s.app.db('volumes').where({ uuid: vol.id }).first()).kms_wrapped_key_id;
      expect((await call(alice.keys, { command: 'deleteVolume', id: vol.id })).body).toEqual({ success: true });
      const again = await secretOf(vol.id);
      expect(again.status).toBe(431);
      expect(again.body.errortext).toBe(`Unable to find volume by id ${vol.id}`);
      const wk = await s.app.db('kms_wrapped_key').where({ id: wkId }).first();
      expect(wk.removed).not.toBeNull();
      expect(Buffer.from(wk.wrapped_blob)).toHaveLength(0);
    });

    it('refuses an admin-made volume whose owner does not own the key', async () => {
      const res = await call(ADMIN_KEYS, { command: 'createVolume', name: 'mixed', zoneid: zone1, kmskeyid: bobKey, account: 'alice', domainid: alice.domainId });
      expect(res.status).toBe(431);
      expect(res.body.errortext).toBe(`KMS key ${bobKey} belongs to another account than the volume's owner alice`);
    });

    it('stores no DEK under a key deleted while the DEK was being made', async () => {
      const doomed = (await call(alice.keys, { command: 'createKMSKey', name: 'short-lived', zoneid: zone1, hsmprofileid: profileId })).body.kmskey.id;
      const provider = s.app.providers.get('database');
      const original = provider.generateAndWrap;
      const admin = (await s.app.directory.loadCaller(1))!;
      provider.generateAndWrap = async (req) => {
        const blob = await original.call(provider, req);
        await s.app.kms.keys.delete(admin, doomed);
        return blob;
      };
      try {
        const res = await call(alice.keys, { command: 'createVolume', name: 'racing', zoneid: zone1, kmskeyid: doomed });
        expect(res.status).toBe(431);
        expect(res.body.errortext).toBe('The KMS key was deleted meanwhile');
      } finally {
        provider.generateAndWrap = original;
      }
      const key = await s.app.db('kms_keys').where({ uuid: doomed }).first('id');
      expect(await s.app.db('kms_wrapped_key').where({ kms_key_id: key.id }).first()).toBeUndefined();
      expect(await s.app.db('volumes').where({ name: 'racing' }).first()).toBeUndefined();
    });

    it('lets only root admins read secrets', async () => {
      const vol = (await createVolume(alice.keys, { name: 'mine', zoneid: zone1, kmskeyid: aliceKey })).body;
      const res = await call(alice.keys, { command: 'getVolumeEncryptionKey', id: vol.id });
      expect(res.status).toBe(432);
    });
  });
});
