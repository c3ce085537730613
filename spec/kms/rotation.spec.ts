import { startTestServer, type TestServer } from '../support/server';
import { adminCall, createActor, createPkcs11Profile, enableDefaultProfile, waitForJob } from '../support/actors';
import { createSoftHsmToken, type SoftHsmToken } from '../support/softhsm';
import type { Caller } from '../../src/identity/caller';

const VOLUMES = 1000;

/** Waits until `check` holds, polling every 50 ms. */
async function eventually(check: () => Promise<boolean>, timeoutMs = 60000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.each(['database', 'pkcs11'] as const)('rotation with background rewrap on the %s backend', (backend) => {
  let s: TestServer;
  let token: SoftHsmToken | undefined;
  let zone: string;
  let keyId: string;
  let caller: Caller;
  let alice: Awaited<ReturnType<typeof createActor>>;
  const secrets = new Map<string, string>();

  const versions = async () => (await s.app.db('kms_kek_versions as v').join('kms_keys as k', 'k.id', 'v.kms_key_id').where('k.uuid', keyId)
    .orderBy('v.version_number').select('v.id', 'v.version_number', 'v.status', 'v.removed', 'v.kek_label'))
    .map((v: any) => ({ ...v, version_number: Number(v.version_number) }));
  const onVersion = async (versionId: number) => Number((await s.app.db('kms_wrapped_key').where({ kek_version_id: versionId }).whereNull('removed').count({ n: '*' }).first() as any).n);
  const setting = (name: string, value: string) => adminCall(s.client, { command: 'updateConfiguration', name, value });
  const rotate = async () => {
    const res = await s.client.signed(alice.keys, { command: 'rotateKMSKey', id: keyId });
    expect(res.status).toBe(200);
    const job = await waitForJob(s.client, alice.keys, res.body.jobid);
    expect(job).toMatchObject({ jobstatus: 1, jobresult: { success: true } });
  };
  const assertSecretsUnchanged = async () => {
    const volumes = s.app.kms.volumes;
    for (const [id, secret] of secrets) expect((await volumes.secretOf(caller, id)).secretBase64).toBe(secret);
  };

  beforeAll(async () => {
    if (backend === 'pkcs11') token = await createSoftHsmToken();
    s = await startTestServer({ KMS_SCHEDULE_POLL_MS: '50' });
    await setting('kms.rewrap.interval.ms', '0');
    await setting('kms.kek.destroy.delay.days', '0'); // archived KEKs destroyed at once, as CloudStack (spec/kms/recovery.spec.ts keeps them)
    zone = (await adminCall(s.client, { command: 'createZone', name: 'z' })).zone.id;
    alice = await createActor(s.client, { name: 'alice' });
    const profileId = token ? await createPkcs11Profile(s.client, token.details()) : await enableDefaultProfile(s.client);
    keyId = (await s.client.signed(alice.keys, { command: 'createKMSKey', name: 'k', zoneid: zone, hsmprofileid: profileId })).body.kmskey.id;
    caller = (await s.app.directory.loadCaller(1))!;
    const owner = (await s.app.directory.loadCaller((await s.app.db('user').where({ uuid: alice.userId }).first()).id))!;
    const volumes = s.app.kms.volumes;
    for (let i = 0; i < VOLUMES; i++) {
      const v = await volumes.create(owner, { name: `v${i}`, zoneUuid: zone, encrypt: true, kmsKeyUuid: keyId });
      secrets.set(v.uuid, (await volumes.secretOf(caller, v.uuid)).secretBase64);
    }
  }, 180000);

  afterAll(async () => {
    await s.close();
    await token?.cleanup();
  });

  it(`rewraps all ${VOLUMES} DEKs to the new version, archives and destroys the old KEK, and changes no secret`, async () => {
    await rotate();
    const [v1, v2] = await versions();
    expect([v1!.status, v2!.status]).toEqual(['Previous', 'Active']);
    expect(await onVersion(v1!.id)).toBe(VOLUMES);
    const pending = (await s.client.signed(alice.keys, { command: 'listKMSKeys', id: keyId })).body.kmskey[0];
    expect(pending).toMatchObject({ version: 2, rewrapremaining: VOLUMES });
    expect(pending.versions.map((v: any) => [v.version, v.status, v.wrappedkeys, v.destroyed])).toEqual([[1, 'Previous', VOLUMES, false], [2, 'Active', 0, false]]);

    // A volume created while the rewrap is pending is wrapped by the new version at once.
    const owner = (await s.app.directory.loadCaller((await s.app.db('user').where({ uuid: alice.userId }).first()).id))!;
    const fresh = await s.app.kms.volumes.create(owner, { name: 'during', zoneUuid: zone, encrypt: true, kmsKeyUuid: keyId });
    expect((await s.app.db('kms_wrapped_key').where({ id: fresh.wrappedKeyId }).first()).kek_version_id).toBe(v2!.id);
    secrets.set(fresh.uuid, (await s.app.kms.volumes.secretOf(caller, fresh.uuid)).secretBase64);

    const kek1 = await s.app.kms.wrappedKeys.kekRef((await s.app.kms.wrappedKeys.versionById(v1!.id))!);
    const provider = s.app.providers.get(kek1.profile.protocol);
    expect(await provider.hasKek(kek1)).toBe(true);

    await setting('kms.rewrap.batch.size', '300');
    await setting('kms.rewrap.interval.ms', '20');
    await eventually(async () => (await versions())[0]!.removed !== null);
    const after = await versions();
    expect(after.map((v) => v.status)).toEqual(['Archived', 'Active']);
    expect(await onVersion(v2!.id)).toBe(VOLUMES + 1);
    expect(await provider.hasKek(kek1)).toBe(false);
    const drained = (await s.client.signed(alice.keys, { command: 'listKMSKeys', id: keyId })).body.kmskey[0];
    expect(drained.rewrapremaining).toBe(0);
    expect(drained.versions.map((v: any) => [v.version, v.status, v.wrappedkeys, v.destroyed])).toEqual([[1, 'Archived', 0, true], [2, 'Active', VOLUMES + 1, false]]);
    expect(drained.versions[0].archived).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+0000$/);
    await assertSecretsUnchanged();
    const events = await adminCall(s.client, { command: 'listEvents', type: 'KMS.KEY.DELETE', listall: true });
    expect(events.event[0].description).toMatch(/^Archived KEK version v1 of KMS key .* destroyed it in its backend/);
  }, 120000);

  it('drains several Previous versions when the key is rotated again before a drain finishes', async () => {
    await setting('kms.rewrap.interval.ms', '0');
    await rotate();
    await rotate();
    const vs = await versions();
    expect(vs.map((v) => v.status)).toEqual(['Archived', 'Previous', 'Previous', 'Active']);
    await setting('kms.rewrap.interval.ms', '20');
    await eventually(async () => (await versions()).filter((v) => v.status === 'Archived' && v.removed !== null).length === 3);
    expect(await onVersion(vs[3]!.id)).toBe(VOLUMES + 1);
    await assertSecretsUnchanged();
  }, 120000);
});
