import { startTestServer, type TestServer } from '../support/server';
import { adminCall, createActor, enableDefaultProfile, waitForJob } from '../support/actors';

/** A wrapped key that can never be rewrapped must not be retried every tick, nor drained away. */
describe('background rewrap with a tampered wrapped key', () => {
  let s: TestServer;
  let keyId: string;
  let alice: Awaited<ReturnType<typeof createActor>>;
  const ids: string[] = [];

  beforeAll(async () => {
    s = await startTestServer();
    await adminCall(s.client, { command: 'updateConfiguration', name: 'kms.rewrap.interval.ms', value: '0' });
    const zone = (await adminCall(s.client, { command: 'createZone', name: 'z' })).zone.id;
    alice = await createActor(s.client, { name: 'alice' });
    const profileId = await enableDefaultProfile(s.client);
    keyId = (await s.client.signed(alice.keys, { command: 'createKMSKey', name: 'k', zoneid: zone, hsmprofileid: profileId })).body.kmskey.id;
    const owner = (await s.app.directory.loadCaller((await s.app.db('user').where({ uuid: alice.userId }).first()).id))!;
    for (let i = 0; i < 5; i++) ids.push((await s.app.kms.volumes.create(owner, { name: `v${i}`, zoneUuid: zone, encrypt: true, kmsKeyUuid: keyId })).uuid);
  });
  afterAll(async () => { await s.close(); });

  it('rewraps the others, parks the bad one for an hour, and keeps its version Previous', async () => {
    const admin = (await s.app.directory.loadCaller(1))!;
    const before = new Map(await Promise.all(ids.slice(1).map(async (id) => [id, (await s.app.kms.volumes.secretOf(admin, id)).secretBase64] as const)));
    const badRow = await s.app.db('kms_wrapped_key').where({ owner_uuid: ids[0] }).first();
    const tampered = Buffer.from(badRow.wrapped_blob);
    tampered[tampered.length - 1] ^= 0x01;
    await s.app.db('kms_wrapped_key').where({ id: badRow.id }).update({ wrapped_blob: tampered });

    const rotate = await s.client.signed(alice.keys, { command: 'rotateKMSKey', id: keyId });
    expect((await waitForJob(s.client, alice.keys, rotate.body.jobid)).jobstatus).toBe(1);

    const rewrapper = s.app.kms.rewrap;
    const first = await rewrapper.tick({ batchSize: 100, workerId: 'test', claimMs: 60000 });
    expect(first).toMatchObject({ claimed: 5, rewrapped: 4, archived: [] });
    expect(first.failed).toEqual([{ wrappedKeyId: badRow.uuid, error: expect.any(String) }]);
    const parked = await s.app.db('kms_wrapped_key').where({ id: badRow.id }).first();
    expect(parked.claim_owner).toBe('rewrap-failed');
    expect(Number(parked.claim_expires)).toBeGreaterThan(Date.now() + 55 * 60 * 1000);

    const second = await rewrapper.tick({ batchSize: 100, workerId: 'test', claimMs: 60000 });
    expect(second).toMatchObject({ claimed: 0, rewrapped: 0, failed: [], archived: [] });
    const versions = await s.app.db('kms_kek_versions').orderBy('version_number').select('status');
    expect(versions.map((v: { status: string }) => v.status)).toEqual(['Previous', 'Active']);
    for (const [id, secret] of before) expect((await s.app.kms.volumes.secretOf(admin, id)).secretBase64).toBe(secret);
    const key = (await s.client.signed(alice.keys, { command: 'listKMSKeys', id: keyId })).body.kmskey[0];
    expect(key.rewrapremaining).toBe(1);
  });
});

/** A KEK gone from its backend is the backend's failure (530), named by key and version; other refusals keep their kind. */
describe('wrapped keys whose KEK is gone from its backend', () => {
  let s: TestServer;
  let keyId: string;
  let volumeId: string;

  beforeAll(async () => {
    s = await startTestServer();
    const zone = (await adminCall(s.client, { command: 'createZone', name: 'z' })).zone.id;
    const alice = await createActor(s.client, { name: 'alice' });
    const profileId = await enableDefaultProfile(s.client);
    keyId = (await s.client.signed(alice.keys, { command: 'createKMSKey', name: 'k', zoneid: zone, hsmprofileid: profileId })).body.kmskey.id;
    const owner = (await s.app.directory.loadCaller((await s.app.db('user').where({ uuid: alice.userId }).first()).id))!;
    volumeId = (await s.app.kms.volumes.create(owner, { name: 'v', zoneUuid: zone, encrypt: true, kmsKeyUuid: keyId })).uuid;
  });
  afterAll(async () => { await s.close(); });

  it('keeps a refusal of the request as it is while the KEK exists', async () => {
    const key = (await s.app.kms.keys.byUuid(keyId))!;
    const v = await s.app.kms.wrappedKeys.activeVersion(key.id);
    await expect(s.app.kms.wrappedKeys.generate(v, volumeId, 1)).rejects.toMatchObject({ kind: 'param', message: 'DEK length must be 16 to 512 bytes (got 1)' });
  });

  it('answers an unwrap under a destroyed KEK as a provider failure naming the key and version', async () => {
    const admin = (await s.app.directory.loadCaller(1))!;
    const key = (await s.app.kms.keys.byUuid(keyId))!;
    const v = await s.app.kms.wrappedKeys.activeVersion(key.id);
    const kek = await s.app.kms.wrappedKeys.kekRef(v);
    await s.app.providers.get('database').destroyKek(kek);
    await expect(s.app.kms.volumes.secretOf(admin, volumeId)).rejects.toMatchObject({
      kind: 'provider', retryable: false, message: `The KEK of KMS key ${keyId} version v1 is missing from its backend`,
    });
  });
});
