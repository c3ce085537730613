import { ADMIN_KEYS } from '../support/server';
import { startVolumeWorld, type VolumeWorld } from '../support/volume-world';
import { adminCall, waitForJob, type Keys } from '../support/actors';

describe('migrateVolumesToKMS', () => {
  let w: VolumeWorld;

  const call = (keys: Keys, params: Record<string, string | number | boolean>) => w.s.client.signed(keys, params);
  const secret = async (volumeId: string): Promise<string> => (await adminCall(w.s.client, { command: 'getVolumeEncryptionKey', id: volumeId })).volumeencryptionkey.secret;
  const legacyVolume = async (owner: typeof w.alice, zoneId: string, name: string): Promise<string> => {
    const res = await call(owner.keys, { command: 'createVolume', name, zoneid: zoneId, encrypt: true });
    await waitForJob(w.s.client, owner.keys, res.body.jobid);
    return res.body.id;
  };
  const migrate = async (params: Record<string, string | number | boolean>) => {
    const res = await call(ADMIN_KEYS, { command: 'migrateVolumesToKMS', kmskeyid: w.aliceKey, ...params });
    if (res.status !== 200) return { status: res.status, body: res.body };
    expect(Object.keys(res.body)).toEqual(['jobid']);
    const job = await waitForJob(w.s.client, ADMIN_KEYS, res.body.jobid);
    return { status: 200, body: job };
  };

  beforeAll(async () => {
    w = await startVolumeWorld();
  });
  afterAll(async () => { await w.s.close(); });

  it('keeps the secret byte-identical when migrating by volume ids, and a rerun is a no-op', async () => {
    const v = await legacyVolume(w.alice, w.zone1, 'by-id');
    const before = await secret(v);
    const job = await migrate({ volumeids: v });
    expect(job.body).toMatchObject({ jobstatus: 1, jobresultcode: 0, jobresulttype: 'object', jobprocstatus: 0 }); // progress reached 99 during the job; a finished job shows 0, as CloudStack
    expect(job.body.jobresult.kmsmigration).toEqual({ kmskeyid: w.aliceKey, migrated: 1, skipped: 0, failed: 0, failedvolumeids: [] });
    expect(await secret(v)).toBe(before);
    const listed = (await call(w.alice.keys, { command: 'listVolumes', id: v })).body.volume[0];
    expect(listed).toMatchObject({ kmskeyid: w.aliceKey, kmskey: 'alice-key', kmskeyversion: 1 });
    const row = await w.s.app.db('volumes').where({ uuid: v }).first();
    expect(row.passphrase_id).toBeNull();
    expect(await w.s.app.db('passphrase').count({ n: '*' }).first().then((r: any) => Number(r.n))).toBe(0);

    const again = await migrate({ volumeids: v });
    expect(again.body.jobresult.kmsmigration).toMatchObject({ migrated: 0, skipped: 1, failed: 0 });
    expect(await secret(v)).toBe(before);
    const events = await adminCall(w.s.client, { command: 'listEvents', type: 'VOLUME.MIGRATE.TO.KMS', listall: true });
    expect(events.event.map((e: any) => e.description)).toEqual(expect.arrayContaining([
      `Successfully migrated volume encryption key to KMS key ${w.aliceKey}`,
      expect.stringMatching(/^Migrated 1 volumes to KMS key: alice-key \(uuid: .*\)\. Success: 1, Skipped: 0, Failures: 0$/),
    ]));
  });

  it('migrates by zone and by account: only the key account\'s legacy volumes in the key\'s zone', async () => {
    const a1 = await legacyVolume(w.alice, w.zone1, 'zone-a1');
    const a2 = await legacyVolume(w.alice, w.zone1, 'zone-a2');
    const other = await legacyVolume(w.alice, w.zone2, 'zone-a-other');
    const b1 = await legacyVolume(w.bob, w.zone1, 'zone-b1');
    const before = { a1: await secret(a1), a2: await secret(a2), other: await secret(other), b1: await secret(b1) };
    const job = await migrate({ zoneid: w.zone1 });
    expect(job.body.jobresult.kmsmigration).toMatchObject({ migrated: 2, failed: 0 });
    for (const [id, name] of [[a1, 'a1'], [a2, 'a2'], [other, 'other'], [b1, 'b1']] as const) expect(await secret(id)).toBe(before[name]);
    expect((await w.s.app.db('volumes').where({ uuid: other }).first()).passphrase_id).not.toBeNull();
    expect((await w.s.app.db('volumes').where({ uuid: b1 }).first()).passphrase_id).not.toBeNull();

    const a3 = await legacyVolume(w.alice, w.zone1, 'acct-a3');
    const s3 = await secret(a3);
    const byAccount = await migrate({ account: 'alice', domainid: w.alice.domainId });
    expect(byAccount.body.jobresult.kmsmigration).toMatchObject({ migrated: 1, failed: 0 });
    expect(await secret(a3)).toBe(s3);
  });

  describe('refuses, changing nothing', () => {
    /** CloudStack checks these in the job: {jobid} at once, then jobstatus 2 with jobresultcode 431. */
    const refusedInJob = async (params: Record<string, string | number | boolean>, text: RegExp) => {
      const before = await w.s.app.db('kms_wrapped_key').count({ n: '*' }).first();
      const res = await migrate(params);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ jobstatus: 2, jobresultcode: 431, jobresult: { errorcode: 431, errortext: expect.stringMatching(text) } });
      expect(await w.s.app.db('kms_wrapped_key').count({ n: '*' }).first()).toEqual(before);
    };

    it.each([
      ['a volume of another account', async () => ({ volumeids: await legacyVolume(w.bob, w.zone1, 'bob-x') }), /^The following volumes do not belong to the same account as the KMS key: [0-9a-f-]{36}$/],
      ['a volume of another zone', async () => ({ volumeids: await legacyVolume(w.alice, w.zone2, 'alice-z2') }), /^The following volumes are not in the zone of the KMS key: [0-9a-f-]{36}$/],
      ['another zone', async () => ({ zoneid: w.zone2 }), /belongs to another zone/],
    ])('%s, in the job with a 431', async (_name, params, text) => {
      await refusedInJob(await params(), text);
    });

    it.each([
      ['a domain without an account', { domainid: 'DOMAIN' }, /^accountName must be specified when domainId is provided$/],
      ['no scope at all', {}, /^Specify the volumes to migrate/],
    ])('%s, at once with a 431', async (_name, params, text) => {
      const res = await migrate(Object.fromEntries(Object.entries(params).map(([k, v]) => [k, v === 'DOMAIN' ? w.alice.domainId : v])));
      expect(res.status).toBe(431);
      expect(res.body.errortext).toMatch(text);
    });

    it('a disabled key, in the job', async () => {
      await call(w.alice.keys, { command: 'updateKMSKey', id: w.aliceKey, enabled: false });
      try {
        await refusedInJob({ zoneid: w.zone1 }, new RegExp(`^KMS key is not enabled: ${w.aliceKey}$`));
      } finally {
        await call(w.alice.keys, { command: 'updateKMSKey', id: w.aliceKey, enabled: true });
      }
    });

    it('an unknown key, at once', async () => {
      const res = await call(ADMIN_KEYS, { command: 'migrateVolumesToKMS', kmskeyid: '00000000-0000-4000-8000-000000000000', zoneid: w.zone1 });
      expect(res.status).toBe(431);
      expect(res.body.errortext).toBe('KMS key not found: 00000000-0000-4000-8000-000000000000');
    });

    it('a caller who is not root admin', async () => {
      const res = await call(w.alice.keys, { command: 'migrateVolumesToKMS', kmskeyid: w.aliceKey, zoneid: w.zone1 });
      expect(res.status).toBe(432);
    });
  });

  it('leaves a volume that a concurrent run migrated first to that run, with one wrapped key', async () => {
    const owner = (await w.s.app.directory.loadCaller((await w.s.app.db('user').where({ uuid: w.alice.userId }).first()).id))!;
    const admin = (await w.s.app.directory.loadCaller(1))!;
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await w.s.app.kms.volumes.create(owner, { name: `race-${i}`, zoneUuid: w.zone1, encrypt: true })).uuid);
    const before = new Map(await Promise.all(ids.map(async (id) => [id, await secret(id)] as const)));
    const migration = w.s.app.kms.migration;
    const provider = w.s.app.providers.get('database');
    const original = provider.wrapMany;
    let raced = false;
    provider.wrapMany = async (reqs) => {
      if (!raced) {
        raced = true; // the other run migrates ids[0] while this batch is being wrapped
        await migration.run(await migration.plan(admin, w.aliceKey, { volumeUuids: [ids[0]!] }), { batchSize: 10, userId: 1, progress: async () => undefined });
      }
      return original.call(provider, reqs);
    };
    try {
      const report = await migration.run(await migration.plan(admin, w.aliceKey, { volumeUuids: ids }), { batchSize: 10, userId: 1, progress: async () => undefined });
      expect(report).toMatchObject({ migrated: 3, skipped: 1, failed: 0 });
    } finally {
      provider.wrapMany = original;
    }
    for (const id of ids) {
      expect(await secret(id)).toBe(before.get(id));
      const wrapped = await w.s.app.db('kms_wrapped_key').where({ owner_uuid: id }).whereNull('removed').count({ n: '*' }).first();
      expect(Number((wrapped as any).n)).toBe(1);
    }
  });

  it('after a crash mid-job, a rerun migrates every volume exactly once', async () => {
    const ids: string[] = [];
    const volumes = w.s.app.kms.volumes;
    const caller = (await w.s.app.directory.loadCaller((await w.s.app.db('user').where({ uuid: w.alice.userId }).first()).id))!;
    for (let i = 0; i < 12; i++) ids.push((await volumes.create(caller, { name: `crash-${i}`, zoneUuid: w.zone1, encrypt: true })).uuid);
    const before = new Map(await Promise.all(ids.map(async (id) => [id, await secret(id)] as const)));
    const admin = (await w.s.app.directory.loadCaller(1))!;
    const migration = w.s.app.kms.migration;
    const plan = await migration.plan(admin, w.aliceKey, { volumeUuids: ids });
    let batches = 0;
    await expect(migration.run(plan, { batchSize: 5, userId: 1, progress: async () => { batches++; }, aborted: () => batches >= 1 })).rejects.toThrow(/interrupted/);
    const done = await w.s.app.db('volumes').whereIn('uuid', ids).whereNull('passphrase_id').count({ n: '*' }).first();
    expect(Number((done as any).n)).toBe(5);
    const rerun = await migrate({ volumeids: ids.join(',') });
    if (!rerun.body.jobresult) throw new Error(JSON.stringify(rerun.body));
    expect(rerun.body.jobresult.kmsmigration).toMatchObject({ migrated: 7, skipped: 5, failed: 0 });
    for (const id of ids) {
      expect(await secret(id)).toBe(before.get(id));
      const wrapped = await w.s.app.db('kms_wrapped_key').where({ owner_uuid: id }).whereNull('removed').count({ n: '*' }).first();
      expect(Number((wrapped as any).n)).toBe(1);
    }
  });

  it('counts the volumes an interrupted attempt migrated as migrated when the same job runs again', async () => {
    const ids: string[] = [];
    const caller = (await w.s.app.directory.loadCaller((await w.s.app.db('user').where({ uuid: w.alice.userId }).first()).id))!;
    for (let i = 0; i < 12; i++) ids.push((await w.s.app.kms.volumes.create(caller, { name: `again-${i}`, zoneUuid: w.zone1, encrypt: true })).uuid);
    const admin = (await w.s.app.directory.loadCaller(1))!;
    const migration = w.s.app.kms.migration;
    const plan = await migration.plan(admin, w.aliceKey, { volumeUuids: ids });
    const jobUuid = '6d1a1d36-0000-4000-8000-000000000012';
    let batches = 0;
    const first = migration.run(plan, { batchSize: 5, userId: 1, jobUuid, progress: async () => { batches++; }, aborted: () => batches >= 1 });
    await expect(first).rejects.toThrow(/interrupted/);
    const second = await migration.run(plan, { batchSize: 5, userId: 1, jobUuid, progress: async () => undefined });
    expect(second).toEqual({ migrated: 12, skipped: 0, failed: 0, failedVolumeIds: [] });
  });
});
