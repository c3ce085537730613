import { startTestServer, ADMIN_KEYS, type TestServer } from '../support/server';
import { adminCall, createActor, enableDefaultProfile, waitForJob, type Keys } from '../support/actors';

describe('disk offerings and the volumes made from them', () => {
  let s: TestServer;
  let zone: string;
  let alice: Awaited<ReturnType<typeof createActor>>;
  let aliceKey: string;
  let encrypted: Record<string, any>;
  let plain: Record<string, any>;
  let custom: Record<string, any>;
  const call = (keys: Keys, p: Record<string, string | number | boolean>) => s.client.signed(keys, p);
  const createVolume = async (keys: Keys, p: Record<string, string | number | boolean>) => {
    const res = await call(keys, { command: 'createVolume', zoneid: zone, ...p });
    if (res.status !== 200) return res;
    const job = await waitForJob(s.client, keys, res.body.jobid);
    return { status: 200, body: job.jobresult.volume, raw: '' } as any;
  };

  beforeAll(async () => {
    s = await startTestServer();
    zone = (await adminCall(s.client, { command: 'createZone', name: 'z1' })).zone.id;
    alice = await createActor(s.client, { name: 'alice' });
    const profile = await enableDefaultProfile(s.client);
    aliceKey = (await call(alice.keys, { command: 'createKMSKey', name: 'disks', zoneid: zone, hsmprofileid: profile })).body.kmskey.id;
    // As the UI's Add Disk Offering form sends it (camelCase names, booleans as text).
    encrypted = (await adminCall(s.client, {
      command: 'createDiskOffering', name: 'Encrypted 10', displaytext: 'Encrypted, 10 GB', storageType: 'shared', cacheMode: 'none',
      provisioningType: 'thin', customized: false, disksizestrictness: false, encrypt: true, disksize: 10,
    })).diskoffering;
    plain = (await adminCall(s.client, { command: 'createDiskOffering', name: 'Plain 5', disksize: 5 })).diskoffering;
    custom = (await adminCall(s.client, { command: 'createDiskOffering', name: 'Encrypted custom', customized: true, encrypt: true })).diskoffering;
  });
  afterAll(async () => { await s.close(); });

  it('answers createDiskOffering with the fields the UI reads', async () => {
    expect(encrypted).toMatchObject({
      name: 'Encrypted 10', displaytext: 'Encrypted, 10 GB', disksize: 10, iscustomized: false, encrypt: true, state: 'Active',
      storagetype: 'shared', provisioningtype: 'thin', cacheMode: 'none', disksizestrictness: false, iscustomizediops: false,
    });
    expect(encrypted.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(encrypted.created).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000$/);
    expect(plain).toMatchObject({ displaytext: 'Plain 5', encrypt: false });
    expect(custom).toMatchObject({ disksize: 0, iscustomized: true, encrypt: true });
  });

  it('refuses offerings without a usable size, and bad values, changing nothing', async () => {
    const before = (await adminCall(s.client, { command: 'listDiskOfferings', state: 'all' })).count;
    const cases: Array<[Record<string, string | number | boolean>, RegExp]> = [
      [{ name: 'x' }, /^Disksize is required for a non-customized disk offering/],
      [{ name: 'x', disksize: 0 }, /^Disksize is required/],
      [{ name: 'x', customized: true, disksize: 5 }, /^Disksize must not be given for a customized disk offering/],
      [{ name: 'x', disksize: 5000 }, /^The maximum size for a disk is 2000 Gb\.$/],
      [{ name: 'x', disksize: 5, provisioningtype: 'thick' }, /allowed values are thin, sparse, fat/],
      [{ name: 'x', disksize: 5, miniops: -1 }, /miniops: it cannot be negative/],
    ];
    for (const [p, text] of cases) {
      const res = await call(ADMIN_KEYS, { command: 'createDiskOffering', ...p });
      expect(res.status).toBe(431);
      expect(res.body.errortext).toMatch(text);
    }
    expect((await adminCall(s.client, { command: 'listDiskOfferings', state: 'all' })).count).toBe(before);
    expect((await call(alice.keys, { command: 'createDiskOffering', name: 'mine', disksize: 1 })).status).toBe(432);
  });

  it('lists Active offerings for users (with CloudStack\'s four defaults), filters by encrypt, and hides Inactive ones', async () => {
    const listed = (await call(alice.keys, { command: 'listDiskOfferings', zoneid: zone, listall: true, domainid: alice.domainId, account: alice.account })).body;
    expect(listed.diskoffering.map((o: any) => o.name)).toEqual(['Small', 'Medium', 'Large', 'Custom', 'Encrypted 10', 'Plain 5', 'Encrypted custom']);
    expect(listed.diskoffering[0]).toMatchObject({ disksize: 5, iscustomized: false, encrypt: false });
    const enc = (await call(alice.keys, { command: 'listDiskOfferings', encrypt: true })).body;
    expect(enc.diskoffering.map((o: any) => o.name)).toEqual(['Encrypted 10', 'Encrypted custom']);

    const temp = (await adminCall(s.client, { command: 'createDiskOffering', name: 'Temp', disksize: 1 })).diskoffering;
    expect(await adminCall(s.client, { command: 'deleteDiskOffering', id: temp.id })).toEqual({ success: true });
    expect((await call(alice.keys, { command: 'listDiskOfferings', name: 'Temp' })).body).toEqual({});
    expect((await adminCall(s.client, { command: 'listDiskOfferings', name: 'Temp', state: 'Inactive' })).diskoffering[0].state).toBe('Inactive');
    const refused = await createVolume(alice.keys, { name: 'v', diskofferingid: temp.id });
    expect(refused.status).toBe(431);
    expect(refused.body.errortext).toBe(`Disk offering Temp (${temp.id}) is Inactive; choose an Active disk offering`);
    const back = (await adminCall(s.client, { command: 'updateDiskOffering', id: temp.id, state: 'Active', name: 'Temp2', displaytext: 'again' })).diskoffering;
    expect(back).toMatchObject({ state: 'Active', name: 'Temp2', displaytext: 'again' });
  });

  it('scopes an offering to domains and zones', async () => {
    const sub = (await adminCall(s.client, { command: 'createDomain', name: 'sub' })).domain;
    const bob = await createActor(s.client, { name: 'bob', domainId: sub.id });
    const scoped = (await adminCall(s.client, { command: 'createDiskOffering', name: 'Sub only', disksize: 2, domainid: sub.id, zoneid: zone })).diskoffering;
    expect(scoped).toMatchObject({ domainid: sub.id, domain: 'sub', zoneid: zone, zone: 'z1' });
    expect((await call(bob.keys, { command: 'listDiskOfferings', name: 'Sub only' })).body.count).toBe(1);
    expect((await call(alice.keys, { command: 'listDiskOfferings', name: 'Sub only' })).body).toEqual({});
    const denied = await createVolume(alice.keys, { name: 'v', diskofferingid: scoped.id });
    expect(denied.status).toBe(431);
    // The root admin sees the offering, but a volume for alice must use one alice's domain may use.
    const forAlice = await createVolume(ADMIN_KEYS, { name: 'v', diskofferingid: scoped.id, account: 'alice', domainid: alice.domainId });
    expect(forAlice.status).toBe(431);
    expect(forAlice.body.errortext).toBe(`Disk offering Sub only (${scoped.id}) is not available to accounts of the volume owner's domain`);
    expect((await createVolume(ADMIN_KEYS, { name: 'for-bob', diskofferingid: scoped.id, account: 'bob', domainid: sub.id })).status).toBe(200);
    const opened = (await adminCall(s.client, { command: 'updateDiskOffering', id: scoped.id, domainid: 'public', zoneid: 'all' })).diskoffering;
    expect(opened.domainid).toBeUndefined();
    expect((await call(alice.keys, { command: 'listDiskOfferings', name: 'Sub only' })).body.count).toBe(1);
  });

  it('makes a KMS volume from an encrypted offering with a key, and a passphrase volume without one', async () => {
    const kms = await createVolume(alice.keys, { name: 'kms-vol', diskofferingid: encrypted.id, kmskeyid: aliceKey });
    expect(kms.status).toBe(200);
    expect(kms.body).toMatchObject({
      name: 'kms-vol', size: 10 * 1024 ** 3, diskofferingid: encrypted.id, diskofferingname: 'Encrypted 10', diskofferingdisplaytext: 'Encrypted, 10 GB',
      encryptformat: 'LUKS', kmskeyid: aliceKey, kmskey: 'disks', kmskeyversion: 1, state: 'Allocated', type: 'DATADISK', storagetype: 'shared', provisioningtype: 'thin',
    });
    const legacy = await createVolume(alice.keys, { name: 'legacy-vol', diskofferingid: encrypted.id });
    expect(legacy.body).toMatchObject({ encryptformat: 'LUKS', diskofferingid: encrypted.id });
    expect(legacy.body.kmskeyid).toBeUndefined();
    const row = await s.app.db('volumes').where({ uuid: legacy.body.id }).first();
    expect(row.passphrase_id).not.toBeNull();
    const clear = await createVolume(alice.keys, { name: 'clear-vol', diskofferingid: plain.id });
    expect(clear.body).toMatchObject({ size: 5 * 1024 ** 3, diskofferingname: 'Plain 5' });
    expect(clear.body.encryptformat).toBeUndefined();
  });

  it('takes the size from the offering, or from size for a customized one', async () => {
    const sized = await createVolume(alice.keys, { name: 'c', diskofferingid: custom.id, size: 3, kmskeyid: aliceKey });
    expect(sized.body).toMatchObject({ size: 3 * 1024 ** 3, kmskeyid: aliceKey });
    const cases: Array<[Record<string, string | number | boolean>, string]> = [
      [{ diskofferingid: custom.id }, 'Disk offering Encrypted custom is customized: give size, in GB (1 to 1024)'],
      [{ diskofferingid: custom.id, size: 2048 }, 'Volume size: 2048GB is out of allowed range. Max: 1024 Min:1'],
      [{ diskofferingid: plain.id, size: 7 }, 'Disk offering Plain 5 has a fixed size of 5 GB; leave size out, or choose a customized disk offering'],
      [{ diskofferingid: plain.id, kmskeyid: aliceKey }, `Disk offering Plain 5 (${plain.id}) does not encrypt volumes; choose a disk offering with encrypt=true to use a KMS key`],
      [{ diskofferingid: plain.id, encrypt: true }, `Disk offering Plain 5 (${plain.id}) does not encrypt volumes; choose a disk offering with encrypt=true to use encrypt=true`],
      [{ diskofferingid: '00000000-0000-4000-8000-000000000000' }, 'Unable to find disk offering by id 00000000-0000-4000-8000-000000000000'],
    ];
    const before = (await call(alice.keys, { command: 'listVolumes' })).body.count;
    for (const [p, text] of cases) {
      const res = await createVolume(alice.keys, { name: 'bad', ...p });
      expect(res.status).toBe(431);
      expect(res.body.errortext).toBe(text);
    }
    expect((await call(alice.keys, { command: 'listVolumes' })).body.count).toBe(before);
  });

  it('keeps encrypt=true without an offering as a shortcut', async () => {
    const v = await createVolume(alice.keys, { name: 'shortcut', encrypt: true, size: 1 });
    expect(v.body).toMatchObject({ encryptformat: 'LUKS', size: 1024 ** 3 });
    expect(v.body.diskofferingid).toBeUndefined();
  });

  it('lists volumes with metrics for the Volumes page, with the listVolumes filters', async () => {
    const res = await call(alice.keys, { command: 'listVolumesMetrics', diskofferingid: encrypted.id });
    expect(res.wrapper).toBe('listvolumesmetricsresponse');
    expect(res.body.volume.map((v: any) => v.name)).toEqual(['kms-vol', 'legacy-vol']);
    expect(res.body.volume[0]).toMatchObject({ sizegb: '10.00 GiB', size: 10 * 1024 ** 3, zonename: 'z1', account: 'alice' });
    const enc = (await call(alice.keys, { command: 'listVolumesMetrics', isencrypted: false })).body;
    expect(enc.volume.map((v: any) => v.name)).toEqual(['clear-vol']);
    expect((await call(alice.keys, { command: 'listVolumesMetrics', kmskeyid: aliceKey })).body.count).toBe(2);
  });
});
