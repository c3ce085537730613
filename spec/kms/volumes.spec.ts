import { ADMIN_KEYS } from '../support/server';
import { startVolumeWorld, type VolumeWorld } from '../support/volume-world';
import { adminCall, waitForJob, type Keys } from '../support/actors';

describe('volumes and their keys', () => {
  let w: VolumeWorld;
  let bobKey: string;

  const call = (keys: Keys, params: Record<string, string | number | boolean>) => w.s.client.signed(keys, params);
  const secretOf = (volumeId: string) => call(ADMIN_KEYS, { command: 'getVolumeEncryptionKey', id: volumeId });
  /** createVolume is async like CloudStack's: {id, jobid}, the job answers the volume. */
  const createVolume = async (keys: Keys, params: Record<string, string | number | boolean>) => {
    const res = await call(keys, { command: 'createVolume', ...params });
    if (res.status !== 200) return res;
    expect(res.body).toEqual({ id: expect.any(String), jobid: expect.any(String) });
    const job = await waitForJob(w.s.client, keys, res.body.jobid);
    expect(job.jobstatus).toBe(1);
    return { ...res, body: job.jobresult.volume };
  };

  beforeAll(async () => {
    w = await startVolumeWorld();
    bobKey = (await call(w.bob.keys, { command: 'createKMSKey', name: 'bob-key', zoneid: w.zone1, hsmprofileid: w.profileId })).body.kmskey.id;
  });
  afterAll(async () => { await w.s.close(); });

  describe('legacy passphrase volumes (encrypt=true without a KMS key)', () => {
    it('keeps a 64-character passphrase under the master key and returns it stably', async () => {
      const vol = await createVolume(w.alice.keys, { name: 'legacy-1', zoneid: w.zone1, encrypt: true });
      expect(vol.body).toMatchObject({ name: 'legacy-1', encryptformat: 'LUKS', account: 'alice' });
      expect(vol.body.kmskeyid).toBeUndefined();
      const first = await secretOf(vol.body.id);
      expect(first.status).toBe(200);
      const passphrase = Buffer.from(first.body.volumeencryptionkey.secret, 'base64').toString('ascii');
      expect(passphrase).toMatch(/^[A-Za-z0-9+/]{64}$/);
      expect(Buffer.from(passphrase, 'base64')).toHaveLength(48);
      expect((await secretOf(vol.body.id)).body.volumeencryptionkey.secret).toBe(first.body.volumeencryptionkey.secret);
      const row = await w.s.app.db('passphrase').first();
      expect(String(row.passphrase)).not.toContain(passphrase);
    });

    it('has no secret for an unencrypted volume', async () => {
      const vol = await createVolume(w.alice.keys, { name: 'plain', zoneid: w.zone1 });
      const res = await secretOf(vol.body.id);
      expect(res.status).toBe(431);
      expect(res.body.errortext).toBe(`Volume ${vol.body.id} is not encrypted`);
    });

    it('destroys the passphrase with the volume', async () => {
      const vol = await createVolume(w.alice.keys, { name: 'legacy-doomed', zoneid: w.zone1, encrypt: true });
      const pid = (await w.s.app.db('volumes').where({ uuid: vol.body.id }).first()).passphrase_id;
      expect((await call(w.alice.keys, { command: 'deleteVolume', id: vol.body.id })).body).toEqual({ success: true });
      expect((await secretOf(vol.body.id)).status).toBe(431);
      expect(await w.s.app.db('passphrase').where({ id: pid }).first()).toBeUndefined();
    });
  });

  describe('KMS volumes', () => {
    it.each([[128, 16], [192, 24], [256, 32]])('wraps a %i-bit DEK per kms.dek.size.bits and reads it back unchanged', async (bits, bytes) => {
      await adminCall(w.s.client, { command: 'updateConfiguration', name: 'kms.dek.size.bits', value: String(bits) });
      const vol = await createVolume(w.alice.keys, { name: `kms-${bits}`, zoneid: w.zone1, kmskeyid: w.aliceKey });
      expect(vol.body).toMatchObject({ kmskeyid: w.aliceKey, kmskey: 'alice-key', kmskeyversion: 1, encryptformat: 'LUKS' });
      const a = await secretOf(vol.body.id);
      expect(a.status).toBe(200);
      expect(a.body.volumeencryptionkey).toMatchObject({ volumeid: vol.body.id, kmskeyid: w.aliceKey, kmskeyversion: 1 });
      const dek = Buffer.from(a.body.volumeencryptionkey.secret, 'base64');
      expect(dek).toHaveLength(bytes);
      expect(dek.equals(Buffer.alloc(bytes))).toBe(false);
      expect((await secretOf(vol.body.id)).body.volumeencryptionkey.secret).toBe(a.body.volumeencryptionkey.secret);
      const blob: Buffer = (await w.s.app.db('kms_wrapped_key').where({ owner_uuid: vol.body.id }).first()).wrapped_blob;
      expect(Buffer.from(blob).includes(dek)).toBe(false);
      await adminCall(w.s.client, { command: 'updateConfiguration', name: 'kms.dek.size.bits', value: '256' });
    });

    it('lists volumes by kmskeyid with the key id and name', async () => {
      const res = await call(w.alice.keys, { command: 'listVolumes', kmskeyid: w.aliceKey });
      expect(res.body.count).toBeGreaterThanOrEqual(3);
      for (const v of res.body.volume) expect(v).toMatchObject({ kmskeyid: w.aliceKey, kmskey: 'alice-key' });
      expect((await call(w.bob.keys, { command: 'listVolumes', kmskeyid: w.aliceKey })).body).toEqual({});
    });

    it('records a KMS.KEY.UNWRAP event for each read of a secret, without the secret', async () => {
      const events = await adminCall(w.s.client, { command: 'listEvents', type: 'KMS.KEY.UNWRAP', listall: true });
      expect(events.count).toBeGreaterThan(0);
      const secret = (await secretOf((await call(w.alice.keys, { command: 'listVolumes', kmskeyid: w.aliceKey })).body.volume[0].id)).body.volumeencryptionkey.secret;
      expect(JSON.stringify(await adminCall(w.s.client, { command: 'listEvents', listall: true }))).not.toContain(secret);
    });

    it('refuses a key of another zone with CloudStack\'s text, creating nothing', async () => {
      const before = await w.s.app.db('volumes').count({ n: '*' }).first();
      const res = await call(w.alice.keys, { command: 'createVolume', name: 'wrong-zone', zoneid: w.zone2, kmskeyid: w.aliceKey });
      expect(res.status).toBe(431);
      expect(res.body.errortext).toBe(`KMS key belongs to zone ${w.zone1} but the target resource is in zone ${w.zone2}`);
      expect(await w.s.app.db('volumes').count({ n: '*' }).first()).toEqual(before);
    });

    it('refuses a disabled key', async () => {
      expect((await call(w.alice.keys, { command: 'updateKMSKey', id: w.aliceKey, enabled: false })).status).toBe(200);
      const res = await call(w.alice.keys, { command: 'createVolume', name: 'disabled', zoneid: w.zone1, kmskeyid: w.aliceKey });
      expect(res.status).toBe(431);
      expect(res.body.errortext).toBe(`KMS key is not enabled and cannot be used for volume encryption: ${w.aliceKey}`);
      expect((await call(w.alice.keys, { command: 'updateKMSKey', id: w.aliceKey, enabled: true })).status).toBe(200);
    });

    it('refuses another account\'s key with 531', async () => {
      const res = await call(w.alice.keys, { command: 'createVolume', name: 'foreign', zoneid: w.zone1, kmskeyid: bobKey });
      expect(res.status).toBe(531);
      expect(res.body.cserrorcode).toBe(4365);
    });

    it('refuses a blob moved to another volume and a volume pointed at another volume\'s key', async () => {
      const v1 = (await createVolume(w.alice.keys, { name: 'swap-1', zoneid: w.zone1, kmskeyid: w.aliceKey })).body;
      const v2 = (await createVolume(w.alice.keys, { name: 'swap-2', zoneid: w.zone1, kmskeyid: w.aliceKey })).body;
      const r1 = await w.s.app.db('volumes').where({ uuid: v1.id }).first();
      const r2 = await w.s.app.db('volumes').where({ uuid: v2.id }).first();
      const b1 = (await w.s.app.db('kms_wrapped_key').where({ id: r1.kms_wrapped_key_id }).first()).wrapped_blob;
      const b2 = (await w.s.app.db('kms_wrapped_key').where({ id: r2.kms_wrapped_key_id }).first()).wrapped_blob;
      await w.s.app.db('kms_wrapped_key').where({ id: r1.kms_wrapped_key_id }).update({ wrapped_blob: b2 });
      const moved = await secretOf(v1.id);
      expect(moved.status).toBe(530);
      expect(moved.body.errortext).toMatch(/^Failed to unwrap volume key: /);
      await w.s.app.db('kms_wrapped_key').where({ id: r1.kms_wrapped_key_id }).update({ wrapped_blob: b1 });
      await w.s.app.db('volumes').where({ uuid: v1.id }).update({ kms_wrapped_key_id: r2.kms_wrapped_key_id });
      expect((await secretOf(v1.id)).status).toBe(530);
      await w.s.app.db('volumes').where({ uuid: v1.id }).update({ kms_wrapped_key_id: r1.kms_wrapped_key_id });
      expect((await secretOf(v1.id)).status).toBe(200);
    });

    it('destroys the secret with the volume: it cannot be read again', async () => {
      const vol = (await createVolume(w.alice.keys, { name: 'doomed', zoneid: w.zone1, kmskeyid: w.aliceKey })).body;
      expect((await secretOf(vol.id)).status).toBe(200);
      const wkId = (await w.s.app.db('volumes').where({ uuid: vol.id }).first()).kms_wrapped_key_id;
      expect((await call(w.alice.keys, { command: 'deleteVolume', id: vol.id })).body).toEqual({ success: true });
      const again = await secretOf(vol.id);
      expect(again.status).toBe(431);
      expect(again.body.errortext).toBe(`Unable to find volume by id ${vol.id}`);
      const wk = await w.s.app.db('kms_wrapped_key').where({ id: wkId }).first();
      expect(wk.removed).not.toBeNull();
      expect(Buffer.from(wk.wrapped_blob)).toHaveLength(0);
    });

    it('refuses an admin-made volume whose owner does not own the key', async () => {
      const res = await call(ADMIN_KEYS, { command: 'createVolume', name: 'mixed', zoneid: w.zone1, kmskeyid: bobKey, account: 'alice', domainid: w.alice.domainId });
      expect(res.status).toBe(431);
      expect(res.body.errortext).toBe(`KMS key ${bobKey} belongs to another account than the volume's owner alice`);
    });

    it('stores no DEK under a key deleted while the DEK was being made', async () => {
      const doomed = (await call(w.alice.keys, { command: 'createKMSKey', name: 'short-lived', zoneid: w.zone1, hsmprofileid: w.profileId })).body.kmskey.id;
      const provider = w.s.app.providers.get('database');
      const original = provider.generateAndWrap;
      const admin = (await w.s.app.directory.loadCaller(1))!;
      provider.generateAndWrap = async (req) => {
        const blob = await original.call(provider, req);
        await w.s.app.kms.keys.delete(admin, doomed);
        return blob;
      };
      try {
        const res = await call(w.alice.keys, { command: 'createVolume', name: 'racing', zoneid: w.zone1, kmskeyid: doomed });
        expect(res.status).toBe(431);
        expect(res.body.errortext).toBe('The KMS key was deleted meanwhile');
      } finally {
        provider.generateAndWrap = original;
      }
      const key = await w.s.app.db('kms_keys').where({ uuid: doomed }).first('id');
      expect(await w.s.app.db('kms_wrapped_key').where({ kms_key_id: key.id }).first()).toBeUndefined();
      expect(await w.s.app.db('volumes').where({ name: 'racing' }).first()).toBeUndefined();
    });

    it('lets only root admins read secrets', async () => {
      const vol = (await createVolume(w.alice.keys, { name: 'mine', zoneid: w.zone1, kmskeyid: w.aliceKey })).body;
      const res = await call(w.alice.keys, { command: 'getVolumeEncryptionKey', id: vol.id });
      expect(res.status).toBe(432);
    });
  });
});
