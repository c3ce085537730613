/**
 * listKMSKeys' per-version `wrappedkeys` and `rewrapremaining` come from counts kept in the same
 * transactions that create, delete, migrate and rewrap wrapped keys (no scan per call). After every
 * kind of change, each count equals the number of live wrapped keys on its version.
 */
import { startTestServer, ADMIN_KEYS, type TestServer } from '../support/server';
import { adminCall, createActor, enableDefaultProfile, waitForJob } from '../support/actors';

describe('wrapped-key counts per KEK version', () => {
  let s: TestServer;
  let zone: string;
  let keyId: string;
  let alice: Awaited<ReturnType<typeof createActor>>;

  const call = (params: Record<string, string | number | boolean>) => s.client.signed(alice.keys, params);
  const job = async (params: Record<string, string | number | boolean>, keys = alice.keys) => {
    const res = await s.client.signed(keys, params);
    expect(res.status).toBe(200);
    return { id: res.body.id as string, job: await waitForJob(s.client, keys, res.body.jobid) };
  };
  /** Every version's kept count against a count of the rows, and what listKMSKeys shows. */
  const expectExact = async () => {
    // One statement, so the kept counts and the rows are read in one snapshot while the rewrap runs.
    // The kept count is the sum of the version's shard rows (migration 010).
    const rows: Array<{ version_number: number; wrapped_keys: number | string | null; live: number | string }> = await s.app.db('kms_kek_versions as v')
      .select('v.version_number',
        s.app.db('kms_kek_version_counts as c').whereRaw('c.kek_version_id = v.id').sum('c.n').as('wrapped_keys'),
        s.app.db('kms_wrapped_key as w').whereRaw('w.kek_version_id = v.id').whereNull('w.removed').count('*').as('live'));
    expect(rows.length).toBeGreaterThan(0);
    for (const r of rows) expect([r.version_number, Number(r.wrapped_keys ?? 0)]).toEqual([r.version_number, Number(r.live)]);
    const shown = (await call({ command: 'listKMSKeys', id: keyId })).body.kmskey[0];
    const total = shown.versions.reduce((n: number, v: { wrappedkeys: number }) => n + v.wrappedkeys, 0);
    const volumes = (await call({ command: 'listVolumes', kmskeyid: keyId })).body.count ?? 0;
    expect(total).toBe(volumes);
    return shown;
  };

  beforeAll(async () => {
    s = await startTestServer({ KMS_SCHEDULE_POLL_MS: '50' });
    await adminCall(s.client, { command: 'updateConfiguration', name: 'kms.rewrap.interval.ms', value: '0' });
    zone = (await adminCall(s.client, { command: 'createZone', name: 'z' })).zone.id;
    alice = await createActor(s.client, { name: 'alice' });
    const profileId = await enableDefaultProfile(s.client);
    keyId = (await call({ command: 'createKMSKey', name: 'k', zoneid: zone, hsmprofileid: profileId })).body.kmskey.id;
  });
  afterAll(async () => { await s.close(); });

  it('stay exact through create, delete, migrate, rotate and the rewrap', async () => {
    const volumes: string[] = [];
    for (let i = 0; i < 12; i++) volumes.push((await job({ command: 'createVolume', name: `v${i}`, zoneid: zone, kmskeyid: keyId })).id);
    expect((await expectExact()).versions[0].wrappedkeys).toBe(12);
    for (const id of volumes.slice(0, 3)) expect((await call({ command: 'deleteVolume', id })).status).toBe(200);
    expect((await expectExact()).versions[0].wrappedkeys).toBe(9);

    const legacy: string[] = [];
    for (let i = 0; i < 5; i++) legacy.push((await job({ command: 'createVolume', name: `l${i}`, zoneid: zone, encrypt: true })).id);
    await job({ command: 'migrateVolumesToKMS', kmskeyid: keyId, volumeids: legacy.join(',') }, ADMIN_KEYS);
    // Migrating the same volumes again takes none of them: the counts do not move.
    await job({ command: 'migrateVolumesToKMS', kmskeyid: keyId, volumeids: legacy.join(',') }, ADMIN_KEYS);
    expect((await expectExact()).versions[0].wrappedkeys).toBe(14);

    await job({ command: 'rotateKMSKey', id: keyId });
    const rotated = await expectExact();
    expect([rotated.rewrapremaining, rotated.versions.map((v: { wrappedkeys: number }) => v.wrappedkeys)]).toEqual([14, [14, 0]]);
    await job({ command: 'createVolume', name: 'after', zoneid: zone, kmskeyid: keyId });
    await adminCall(s.client, { command: 'updateConfiguration', name: 'kms.rewrap.batch.size', value: '4' });
    await adminCall(s.client, { command: 'updateConfiguration', name: 'kms.rewrap.interval.ms', value: '20' });
    for (let i = 0; i < 600; i++) {
      const shown = await expectExact();
      if (shown.rewrapremaining === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const drained = await expectExact();
    expect([drained.rewrapremaining, drained.versions.map((v: { wrappedkeys: number }) => v.wrappedkeys)]).toEqual([0, [0, 15]]);
  }, 120_000);

  it('stay exact under concurrent creations and deletions, which write to several shard rows instead of one hot row', async () => {
    const k = (await call({ command: 'createKMSKey', name: 'k2', zoneid: zone, hsmprofileid: await enableDefaultProfile(s.client) })).body.kmskey.id;
    const created = await Promise.all(Array.from({ length: 24 }, (_, i) => job({ command: 'createVolume', name: `c${i}`, zoneid: zone, kmskeyid: k })));
    await Promise.all(created.slice(0, 8).map(({ id }) => call({ command: 'deleteVolume', id })));
    const shown = (await call({ command: 'listKMSKeys', id: k })).body.kmskey[0];
    expect(shown.versions.map((v: { wrappedkeys: number }) => v.wrappedkeys)).toEqual([16]);
    const versionId = (await s.app.db('kms_kek_versions as v').join('kms_keys as k', 'k.id', 'v.kms_key_id').where('k.uuid', k).first('v.id')).id;
    const shards: Array<{ shard: number; n: number | string }> = await s.app.db('kms_kek_version_counts').where({ kek_version_id: versionId }).select('shard', 'n');
    expect(shards.reduce((n, r) => n + Number(r.n), 0)).toBe(16);
    // 32 changes over 16 shards chosen at random: the chance that all landed on one row is 16^-31.
    expect(shards.length).toBeGreaterThan(1);
    const metrics = await s.app.repos.kekVersions.wrappedKeyCounts();
    expect(metrics.find((m) => m.kmsKeyUuid === k)).toEqual({ kmsKeyUuid: k, kekState: 'Active', count: 16 });
  }, 120_000);
});
