import { startTestServer, ADMIN_KEYS, type TestServer } from '../support/server';
import { adminCall, createActor, enableDefaultProfile, waitForJob, type Keys } from '../support/actors';

describe('migrateVolumesToKMS', () => {
  let s: TestServer;
  let zone1: string;
  let zone2: string;
  let alice: Awaited<ReturnType<typeof createActor>>;
  let bob: Awaited<ReturnType<typeof createActor>>;
  let aliceKey: string;

  const call = (keys: Keys, params: Record<string, string | number | boolean>) => s.client.signed(keys, params);
  const secret = async (volumeId: string): Promise<string> => (await adminCall(s.client, { command: 'getVolumeEncryptionKey', id: volumeId })).volumeencryptionkey.secret;
  const legacyVolume = async (owner: typeof alice, zoneId: string, name: string): Promise<string> => {
    const res = await call(owner.keys, { command: 'createVolume', name, zoneid: zoneId, encrypt: true });
    await waitForJob(s.client, owner.keys, res.body.jobid);
    return res.body.id;
  };
  const migrate = async (params: Record<string, string | number | boolean>) => {
    const res = await call(ADMIN_KEYS, { command: 'migrateVolumesToKMS', kmskeyid: aliceKey, ...params });
    if (res.status !== 200) return { status: res.status, body: res.body };
    expect(Object.keys(res.body)).toEqual(['jobid']);
    const job = await waitForJob(s.client, ADMIN_KEYS, res.body.jobid);
    return { status: 200, body: job };
  };

  beforeAll(async () => {
    s = await startTestServer();
    zone1 = (await adminCall(s.client, { command: 'createZone', name: 'zone1' })).zone.id;
    zone2 = (await adminCall(s.client, { command: 'createZone', name: 'zone2' })).zone.id;
    alice = await createActor(s.client, { name: 'alice' });
    bob = await createActor(s.client, { name: 'bob' });
    const profileId = await enableDefaultProfile(s.client);
    aliceKey = (await call(alice.keys, { command: 'createKMSKey', name: 'alice-key', zoneid: zone1, hsmprofileid: profileId })).body.kmskey.id;
  });
  afterAll(async () => { await s.close(); });

  it('keeps the secret byte-identical when migrating by volume ids, and a rerun is a no-op', async () => {
    const v = await legacyVolume(alice, zone1, 'by-id');
    const before = await secret(v);
    const job = await migrate({ volumeids: v });
    expect(job.body).toMatchObject({ jobstatus: 1, jobresultcode: 0, jobresulttype: 'object', jobprocstatus: 0 }); // progress reached 99 during the job; a finished job shows 0, as CloudStack
    expect(job.body.jobresult.kmsmigration).toEqual({ kmskeyid: aliceKey, migrated: 1, skipped: 0, failed: 0, failedvolumeids: [] });
    expect(await secret(v)).toBe(before);
    const listed = (await call(alice.keys, { command: 'listVolumes', id: v })).body.volume[0];
    expect(listed).toMatchObject({ kmskeyid: aliceKey, kmskey: 'alice-key', kmskeyversion: 1 });
    const row = await s.app.db('volumes').where({ uuid: v }).first();
    expect(row.passphrase_id).toBeNull();
    expect(await s.app.db('passphrase').count({ n: '*' }).first().then((r: any) => Number(r.n))).toBe(0);

    const again = await migrate({ volumeids: v });
    expect(again.body.jobresult.kmsmigration).toMatchObject({ migrated: 0, skipped: 1, failed: 0 });
    expect(await secret(v)).toBe(before);
    const events = await adminCall(s.client, { command: 'listEvents', type: 'VOLUME.MIGRATE.TO.KMS', listall: true });
    expect(events.event.map((e: any) => e.description)).toEqual(expect.arrayContaining([
      `Successfully migrated volume encryption key to KMS key ${aliceKey}`,
      expect.stringMatching(/^Migrated 1 volumes to KMS key: alice-key \(uuid: .*\)\. Success: 1, Skipped: 0, Failures: 0$/),
    ]));
  });

  it('migrates by zone and by account: only the key account\'s legacy volumes in the key\'s zone', async () => {
    const a1 = await legacyVolume(alice, zone1, 'zone-a1');
    const a2 = await legacyVolume(alice, zone1, 'zone-a2');
    const other = await legacyVolume(alice, zone2, 'zone-a-other');
    const b1 = await legacyVolume(bob, zone1, 'zone-b1');
    const before = { a1: await secret(a1), a2: await secret(a2), other: await secret(other), b1: await secret(b1) };
    const job = await migrate({ zoneid: zone1 });
    expect(job.body.jobresult.kmsmigration).toMatchObject({ migrated: 2, failed: 0 });
    for (const [id, name] of [[a1, 'a1'], [a2, 'a2'], [other, 'other'], [b1, 'b1']] as const) expect(await secret(id)).toBe(before[name]);
    expect((await s.app.db('volumes').where({ uuid: other }).first()).passphrase_id).not.toBeNull();
    expect((await s.app.db('volumes').where({ uuid: b1 }).first()).passphrase_id).not.toBeNull();

    const a3 = await legacyVolume(alice, zone1, 'acct-a3');
    const s3 = await secret(a3);
    const byAccount = await migrate({ account: 'alice', domainid: alice.domainId });
    expect(byAccount.body.jobresult.kmsmigration).toMatchObject({ migrated: 1, failed: 0 });
    expect(await secret(a3)).toBe(s3);
  });

  describe('refuses, changing nothing', () => {
    /** CloudStack checks these in the job: {jobid} at once, then jobstatus 2 with jobresultcode 431. */
    const refusedInJob = async (params: Record<string, string | number | boolean>, text: RegExp) => {
      const before = await s.app.db('kms_wrapped_key').count({ n: '*' }).first();
      const res = await migrate(params);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ jobstatus: 2, jobresultcode: 431, jobresult: { errorcode: 431, errortext: expect.stringMatching(text) } });
      expect(await s.app.db('kms_wrapped_key').count({ n: '*' }).first()).toEqual(before);
    };

    it.each([
      ['a volume of another account', async () => ({ volumeids: await legacyVolume(bob, zone1, 'bob-x') }), /^The following volumes do not belong to the same account as the KMS key: [0-9a-f-]{36}$/],
      ['a volume of another zone', async () => ({ volumeids: await legacyVolume(alice, zone2, 'alice-z2') }), /^The following volumes are not in the zone of the KMS key: [0-9a-f-]{36}$/],
      ['another zone', async () => ({ zoneid: zone2 }), /belongs to another zone/],
    ])('%s, in the job with a 431', async (_name, params, text) => {
      await refusedInJob(await params(), text);
    });

    it.each([
      ['a domain without an account', { domainid: 'DOMAIN' }, /^accountName must be specified when domainId is provided$/],
      ['no scope at all', {}, /^Specify the volumes to migrate/],
    ])('%s, at once with a 431', async (_name, params, text) => {
      const res = await migrate(Object.fromEntries(Object.entries(params).map(([k, v]) => [k, v === 'DOMAIN' ? alice.domainId : v])));
      expect(res.status).toBe(431);
      expect(res.body.errortext).toMatch(text);
    });

    it('a disabled key, in the job', async () => {
      await call(alice.keys, { command: 'updateKMSKey', id: aliceKey, enabled: false });
      try {
        await refusedInJob({ zoneid: zone1 }, new RegExp(`^KMS key is not enabled: ${aliceKey}$`));
      } finally {
        await call(alice.keys, { command: 'updateKMSKey', id: aliceKey, enabled: true });
      }
    });

    it('an unknown key, at once', async () => {
      const res = await call(ADMIN_KEYS, { command: 'migrateVolumesToKMS', kmskeyid: '00000000-0000-4000-8000-000000000000', zoneid: zone1 });
      expect(res.status).toBe(431);
      expect(res.body.errortext).toBe('KMS key not found: 00000000-0000-4000-8000-000000000000');
    });

    it('a caller who is not root admin', async () => {
      const res = await call(alice.keys, { command: 'migrateVolumesToKMS', kmskeyid: aliceKey, zoneid: zone1 });
      expect(res.status).toBe(432);
    });
  });

  it('leaves a volume that a concurrent run migrated first to that run, with one wrapped key', async () => {
    const owner = (await s.app.directory.loadCaller((await s.app.db('user').where({ uuid: alice.userId }).first()).id))!;
    const admin = (await s.app.directory.loadCaller(1))!;
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await s.app.kms.volumes.create(owner, { name: `race-${i}`, zoneUuid: zone1, encrypt: true })).uuid);
    const before = new Map(await Promise.all(ids.map(async (id) => [id, await secret(id)] as const)));
    const migration = s.app.kms.migration;
    const provider = s.app.providers.get('database');
    const original = provider.wrap;
    let raced = false;
    provider.wrap = async (req) => {
      if (!raced) {
        raced = true; // the other run migrates ids[0] while this batch is being wrapped
        await migration.run(await migration.plan(admin, aliceKey, { volumeUuids: [ids[0]!] }), { batchSize: 10, userId: 1, progress: async () => undefined });
      }
      return original.call(provider, req);
    };
    try {
      const report = await migration.run(await migration.plan(admin, aliceKey, { volumeUuids: ids }), { batchSize: 10, userId: 1, progress: async () => undefined });
      expect(report).toMatchObject({ migrated: 3, skipped: 1, failed: 0 });
    } finally {
      provider.wrap = original;
    }
    for (const id of ids) {
      expect(await secret(id)).toBe(before.get(id));
      const wrapped = await s.app.db('kms_wrapped_key').where({ owner_uuid: id }).whereNull('removed').count({ n: '*' }).first();
      expect(Number((wrapped as any).n)).toBe(1);
    }
  });

  it('after a crash mid-job, a rerun migrates every volume exactly once', async () => {
    const ids: string[] = [];
    const volumes = s.app.kms.volumes;
    const caller = (await s.app.directory.loadCaller((await s.app.db('user').where({ uuid: alice.userId }).first()).id))!;
    for (let i = 0; i < 12; i++) ids.push((await volumes.create(caller, { name: `crash-${i}`, zoneUuid: zone1, encrypt: true })).uuid);
    const before = new Map(await Promise.all(ids.map(async (id) => [id, await secret(id)] as const)));
    const admin = (await s.app.directory.loadCaller(1))!;
    const migration = s.app.kms.migration;
    const plan = await migration.plan(admin, aliceKey, { volumeUuids: ids });
    let batches = 0;
    await expect(migration.run(plan, { batchSize: 5, userId: 1, progress: async () => { batches++; }, aborted: () => batches >= 1 })).rejects.toThrow(/interrupted/);
    const done = await s.app.db('volumes').whereIn('uuid', ids).whereNull('passphrase_id').count({ n: '*' }).first();
    expect(Number((done as any).n)).toBe(5);
    const rerun = await migrate({ volumeids: ids.join(',') });
    if (!rerun.body.jobresult) throw new Error(JSON.stringify(rerun.body));
    expect(rerun.body.jobresult.kmsmigration).toMatchObject({ migrated: 7, skipped: 5, failed: 0 });
    for (const id of ids) {
      expect(await secret(id)).toBe(before.get(id));
      const wrapped = await s.app.db('kms_wrapped_key').where({ owner_uuid: id }).whereNull('removed').count({ n: '*' }).first();
      expect(Number((wrapped as any).n)).toBe(1);
    }
  });

  it('counts the volumes an interrupted attempt migrated as migrated when the same job runs again', async () => {
    const ids: string[] = [];
    const caller = (await s.app.directory.loadCaller((await s.app.db('user').where({ uuid: alice.userId }).first()).id))!;
    for (let i = 0; i < 12; i++) ids.push((await s.app.kms.volumes.create(caller, { name: `again-${i}`, zoneUuid: zone1, encrypt: true })).uuid);
    const admin = (await s.app.directory.loadCaller(1))!;
    const migration = s.app.kms.migration;
    const plan = await migration.plan(admin, aliceKey, { volumeUuids: ids });
    const jobUuid = '6d1a1d36-0000-4000-8000-000000000012';
    let batches = 0;
    const first = migration.run(plan, { batchSize: 5, userId: 1, jobUuid, progress: async () => { batches++; }, aborted: () => batches >= 1 });
    await expect(first).rejects.toThrow(/interrupted/);
    const second = await migration.run(plan, { batchSize: 5, userId: 1, jobUuid, progress: async () => undefined });
    expect(second).toEqual({ migrated: 12, skipped: 0, failed: 0, failedVolumeIds: [] });
  });
});
