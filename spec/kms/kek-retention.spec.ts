/**
 * Archived KEK versions are kept for kms.kek.destroy.delay.days: they still unwrap; a DEK restored
 * from a backup under one (here: a deleted volume's rows put back as a backup had them) is moved to
 * the Active version by the normal background rewrap; the sweep destroys a version only once its
 * time has come and no DEK is under it; a purge by the root admin destroys at once.
 */
import { startTestServer, type TestServer } from '../support/server';
import { adminCall, createActor, enableDefaultProfile, waitForJob } from '../support/actors';
import { runAdmin } from '../../src/cli/admin';
import type { Caller } from '../../src/identity/caller';

const DAY = 86_400_000;

describe('archived KEK retention (database provider)', () => {
  let s: TestServer;
  let keyId: string;
  let alice: Awaited<ReturnType<typeof createActor>>;
  let admin: Caller;
  const ids: string[] = [];
  const secrets = new Map<string, string>();

  const view = async () => (await adminCall(s.client, { command: 'listKMSKeys', id: keyId, listall: true })).kmskey[0];
  const tick = (destroyDelayMs: number) => s.app.kms.rewrap.tick({ batchSize: 100, workerId: 'test', claimMs: 60_000, destroyDelayMs });
  const rotate = async () => {
    const res = await s.client.signed(alice.keys, { command: 'rotateKMSKey', id: keyId });
    expect((await waitForJob(s.client, alice.keys, res.body.jobid)).jobstatus).toBe(1);
  };
  const kekExists = async (version: number) => {
    const v = await s.app.db('kms_kek_versions as v').join('kms_keys as k', 'k.id', 'v.kms_key_id').where({ 'k.uuid': keyId, 'v.version_number': version }).first('v.id');
    const ctx = (await s.app.kms.wrappedKeys.versionById(Number(v.id)))!;
    return s.app.providers.get('database').hasKek(await s.app.kms.wrappedKeys.kekRef({ ...ctx, destroyed: false }));
  };

  beforeAll(async () => {
    s = await startTestServer();
    await adminCall(s.client, { command: 'updateConfiguration', name: 'kms.rewrap.interval.ms', value: '0' });
    const zone = (await adminCall(s.client, { command: 'createZone', name: 'z' })).zone.id;
    alice = await createActor(s.client, { name: 'alice' });
    keyId = (await s.client.signed(alice.keys, { command: 'createKMSKey', name: 'k', zoneid: zone, hsmprofileid: await enableDefaultProfile(s.client) })).body.kmskey.id;
    const owner = (await s.app.directory.loadCaller((await s.app.db('user').where({ uuid: alice.userId }).first()).id))!;
    admin = (await s.app.directory.loadCaller(1))!;
    for (let i = 0; i < 3; i++) {
      const v = await s.app.kms.volumes.create(owner, { name: `v${i}`, zoneUuid: zone, encrypt: true, kmsKeyUuid: keyId });
      ids.push(v.uuid);
      secrets.set(v.uuid, (await s.app.kms.volumes.secretOf(admin, v.uuid)).secretBase64);
    }
  });
  afterAll(async () => { await s.close(); });

  it('the default keeps an Archived KEK 30 days, shown as destroyat', async () => {
    expect((await adminCall(s.client, { command: 'listConfigurations', name: 'kms.kek.destroy.delay.days' })).configuration[0]).toMatchObject({ value: '30' });
    const refused = await adminCall(s.client, { command: 'updateConfiguration', name: 'kms.kek.destroy.delay.days', value: '-1' }).catch((e: Error) => e);
    expect(String(refused)).toMatch(/must be an integer from 0 to 36500/);
  });

  it('a DEK put back under an Archived version unwraps, and the rewrap moves it to the Active version; the sweep waits for it and for the delay', async () => {
    // What a backup holds of volume v0: its wrapped key row as it was on v1.
    const row = await s.app.db('kms_wrapped_key').where({ owner_uuid: ids[0] }).first();
    const vol = await s.app.db('volumes').where({ uuid: ids[0] }).first();
    await s.client.signed(alice.keys, { command: 'deleteVolume', id: ids[0] });

    await rotate();
    const drained = await tick(30 * DAY);
    expect(drained.archived).toEqual([{ keyUuid: keyId, version: 1 }]);
    const v1 = (await view()).versions[0];
    expect(v1).toMatchObject({ version: 1, status: 'Archived', wrappedkeys: 0, destroyed: false });
    expect(Date.parse(v1.destroyat) - Date.parse(v1.archived)).toBe(30 * DAY);
    expect(await kekExists(1)).toBe(true);

    // The rows come back from the backup, on the Archived v1.
    await s.app.db('kms_wrapped_key').where({ id: row.id }).update({ wrapped_blob: row.wrapped_blob, removed: null, claim_owner: null, claim_expires: null });
    await s.app.repos.kekVersions.adjustWrappedKeyCount(row.kek_version_id, 1);
    const { id: volId, ...volColumns } = vol;
    await s.app.db('volumes').where({ id: volId }).update(volColumns);
    expect((await s.app.kms.volumes.secretOf(admin, ids[0])).secretBase64).toBe(secrets.get(ids[0]));
    expect(await view()).toMatchObject({ rewrapremaining: 1 });

    // Even past its delay, a version with a DEK under it is not destroyed.
    await s.app.kms.rewrap.archiveDrained(0);
    expect(await kekExists(1)).toBe(true);
    const moved = await tick(30 * DAY);
    expect(moved).toMatchObject({ claimed: 1, rewrapped: 1, failed: [] });
    expect((await s.app.db('kms_wrapped_key').where({ id: row.id }).first()).kek_version_id).not.toBe(row.kek_version_id);
    for (const [id, secret] of secrets) expect((await s.app.kms.volumes.secretOf(admin, id)).secretBase64).toBe(secret);
    expect(await view()).toMatchObject({ rewrapremaining: 0 });

    // Within its delay the sweep keeps it; past it, destroys it.
    await tick(30 * DAY);
    expect(await kekExists(1)).toBe(true);
    await tick(0);
    expect(await kekExists(1)).toBe(false);
    expect((await view()).versions[0]).toMatchObject({ version: 1, status: 'Archived', destroyed: true });
    expect((await view()).versions[0].destroyat).toBeUndefined();
    const events = await s.app.db('event').where({ type: 'KMS.KEY.DELETE' }).select('description');
    expect(events.map((e: { description: string }) => e.description)).toContain(`Archived KEK version v1 of KMS key ${keyId} and destroyed it in its backend after all wrapped keys were rewrapped`);
  });

  it('purge-archived-keks destroys an Archived KEK at once, whatever its delay', async () => {
    await rotate();
    await tick(30 * DAY);
    expect((await view()).versions[1]).toMatchObject({ version: 2, status: 'Archived', destroyed: false });
    expect(await kekExists(2)).toBe(true);
    const lines: string[] = [];
    await runAdmin(['purge-archived-keks', '--key', keyId], s.app.env, (l) => lines.push(l));
    expect(lines).toEqual([`destroyed the KEK of KMS key ${keyId} v2`]);
    expect(await kekExists(2)).toBe(false);
    expect((await view()).versions[1]).toMatchObject({ version: 2, status: 'Archived', destroyed: true });
    for (const [id, secret] of secrets) expect((await s.app.kms.volumes.secretOf(admin, id)).secretBase64).toBe(secret);
    await expect(runAdmin(['purge-archived-keks', '--key', 'nope'], s.app.env, () => undefined)).rejects.toThrow('KMS key nope not found');
  });
});
