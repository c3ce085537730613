/**
 * A standby backend for a KMS key (README "Standby HSM"): the primary is a PKCS#11 profile on
 * SoftHSM2 behind the fault module (spec/support/faultmod), the standby the database provider.
 * The primary's HSM is removed (CKR_DEVICE_REMOVED on every call) while volumes are read: every
 * secret is still served, through the standby, and says so in an event; once the HSM is back, reads
 * go through the primary again. A standby added to an existing key is filled in the background.
 */
import { randomUUID } from 'node:crypto';
import { adminCall, createPkcs11Profile, enableDefaultProfile, waitForJob } from '../support/actors';
import { createFaultControl, type FaultControl } from '../support/faultmod';
import { ADMIN_KEYS, startTestServer, type TestServer } from '../support/server';
import { createSoftHsmToken, type SoftHsmToken } from '../support/softhsm';
import { KeyVerifier } from '../../src/kms/verify-keys';

const VOLUMES = 20;

let ts: TestServer;
let token: SoftHsmToken;
let fault: FaultControl;
let zoneId: string;
let primaryId: string;
let standbyId: string;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(100);
  }
}

beforeAll(async () => {
  token = await createSoftHsmToken();
  fault = await createFaultControl();
  ts = await startTestServer();
  for (const [name, value] of Object.entries({
    'kms.operation.timeout.sec': '2', 'kms.retry.count': '1', 'kms.retry.delay.ms': '50', 'kms.rewrap.interval.ms': '100',
  })) await adminCall(ts.client, { command: 'updateConfiguration', name, value });
  zoneId = (await adminCall(ts.client, { command: 'createZone', name: `standby-${randomUUID().slice(0, 8)}` })).zone.id;
  primaryId = await createPkcs11Profile(ts.client, { library: fault.library, token_label: token.tokenLabel, pin: token.pin, max_sessions: '8' }, 'primary-hsm');
  standbyId = await enableDefaultProfile(ts.client);
}, 120_000);

afterAll(async () => {
  fault?.clear();
  await ts?.close();
  await fault?.cleanup();
  await token?.cleanup();
});

afterEach(() => fault.clear());

const secretOf = async (volumeId: string): Promise<string> =>
  (await adminCall(ts.client, { command: 'getVolumeEncryptionKey', id: volumeId })).volumeencryptionkey.secret;

/** The description of the last KMS.KEY.UNWRAP event of a volume. */
const lastUnwrap = async (volumeId: string): Promise<string> =>
  (await ts.app.db('event').where({ type: 'KMS.KEY.UNWRAP', resource_id: volumeId }).orderBy('id', 'desc').first('description')).description;

const keyOf = async (id: string) => (await adminCall(ts.client, { command: 'listKMSKeys', id, listall: true })).kmskey[0];

async function volumesOf(keyId: string, n: number): Promise<Map<string, string>> {
  const admin = (await ts.app.directory.loadCaller(1))!;
  const secrets = new Map<string, string>();
  for (let i = 0; i < n; i++) {
    const v = await ts.app.kms.volumes.create(admin, { name: `v${i}`, zoneUuid: zoneId, encrypt: true, kmsKeyUuid: keyId });
    secrets.set(v.uuid, await secretOf(v.uuid));
  }
  return secrets;
}

describe('a KMS key with a standby HSM profile', () => {
  it('serves every secret through the standby while the primary HSM is removed, and through the primary again once it is back', async () => {
    const key = (await adminCall(ts.client, {
      command: 'createKMSKey', name: `k-${randomUUID().slice(0, 8)}`, zoneid: zoneId, hsmprofileid: primaryId, standbyhsmprofileid: standbyId,
    })).kmskey;
    expect(key).toMatchObject({ hsmprofileid: primaryId, standbyhsmprofileid: standbyId, standbyhsmprofile: 'default', standbywrappedkeys: 0 });
    const secrets = await volumesOf(key.id, VOLUMES);
    // Both wraps were stored with each volume.
    expect((await keyOf(key.id)).standbywrappedkeys).toBe(VOLUMES);
    for (const id of secrets.keys()) expect(await lastUnwrap(id)).not.toMatch(/standby/);

    fault.set([{ fail: '*', code: 'CKR_DEVICE_REMOVED' }]);
    for (const [id, secret] of secrets) {
      expect(await secretOf(id)).toBe(secret);
      expect(await lastUnwrap(id)).toMatch(/through its standby HSM profile: the primary failed/);
    }
    expect(fault.log().some((l) => l.startsWith('C_'))).toBe(true);
    const standbyEvents = await ts.app.db('event').where({ type: 'KMS.KEY.UNWRAP', level: 'WARN' }).whereIn('resource_id', [...secrets.keys()]).count({ n: '*' }).first();
    expect(Number((standbyEvents as any).n)).toBe(VOLUMES);

    fault.clear();
    const [first] = [...secrets.keys()];
    await until('a read goes through the primary again', async () => {
      await secretOf(first!);
      return !/standby/.test(await lastUnwrap(first!));
    });
    for (const [id, secret] of secrets) {
      expect(await secretOf(id)).toBe(secret);
      expect(await lastUnwrap(id)).not.toMatch(/standby/);
    }
  }, 180_000);

  it('a standby added to an existing key is filled in the background, and then serves its volumes', async () => {
    const key = (await adminCall(ts.client, { command: 'createKMSKey', name: `k-${randomUUID().slice(0, 8)}`, zoneid: zoneId, hsmprofileid: primaryId })).kmskey;
    expect(key.standbyhsmprofileid).toBeUndefined();
    const secrets = await volumesOf(key.id, VOLUMES);

    // The primary cannot be its own standby; nothing changes.
    const same = await ts.client.signed(ADMIN_KEYS, { command: 'updateKMSKey', id: key.id, standbyhsmprofileid: primaryId });
    expect(same.status).toBe(431);
    expect(same.body.errortext).toMatch(/must differ from the key's HSM profile/);
    expect((await keyOf(key.id)).standbyhsmprofileid).toBeUndefined();

    const updated = (await adminCall(ts.client, { command: 'updateKMSKey', id: key.id, standbyhsmprofileid: standbyId })).kmskey;
    expect(updated.standbyhsmprofileid).toBe(standbyId);
    await until('the standby covers every DEK', async () => (await keyOf(key.id)).standbywrappedkeys === VOLUMES);

    const report = await new KeyVerifier(ts.app).run({ keyUuid: key.id, ratePerSec: 0 });
    expect(report).toMatchObject({ deks: VOLUMES, standbyDeks: VOLUMES, standbyMissing: 0, failures: [] });

    // A standby, once set, is not replaced.
    const other = await ts.client.signed(ADMIN_KEYS, { command: 'updateKMSKey', id: key.id, standbyhsmprofileid: primaryId });
    expect(other.status).toBe(431);

    fault.set([{ fail: '*', code: 'CKR_DEVICE_REMOVED' }]);
    for (const [id, secret] of secrets) expect(await secretOf(id)).toBe(secret);
  }, 180_000);

  it('legacy volumes migrated to a key with a standby get both wraps in the same transaction', async () => {
    // The previous test left the primary's HSM removed: a key is made once it is back.
    let key: Record<string, any> | undefined;
    await until('the primary HSM makes KEKs again', async () => {
      const res = await ts.client.signed(ADMIN_KEYS, {
        command: 'createKMSKey', name: `k-${randomUUID().slice(0, 8)}`, zoneid: zoneId, hsmprofileid: primaryId, standbyhsmprofileid: standbyId,
      });
      key = res.status === 200 ? res.body.kmskey : undefined;
      return key !== undefined;
    });
    // No rewrap tick may fill the standby blobs: this shows the migration stored them itself.
    await adminCall(ts.client, { command: 'updateConfiguration', name: 'kms.rewrap.interval.ms', value: '0' });
    try {
      const admin = (await ts.app.directory.loadCaller(1))!;
      const legacy = new Map<string, string>();
      for (let i = 0; i < 5; i++) {
        const v = await ts.app.kms.volumes.create(admin, { name: `legacy${i}`, zoneUuid: zoneId, encrypt: true });
        legacy.set(v.uuid, await secretOf(v.uuid));
      }
      const res = await ts.client.signed(ADMIN_KEYS, { command: 'migrateVolumesToKMS', kmskeyid: key!.id, volumeids: [...legacy.keys()].join(',') });
      expect(res.status).toBe(200);
      expect((await waitForJob(ts.client, ADMIN_KEYS, res.body.jobid)).jobstatus).toBe(1);
      expect((await keyOf(key!.id)).standbywrappedkeys).toBe(legacy.size);
      fault.set([{ fail: '*', code: 'CKR_DEVICE_REMOVED' }]);
      for (const [id, secret] of legacy) {
        expect(await secretOf(id)).toBe(secret);
        expect(await lastUnwrap(id)).toMatch(/through its standby HSM profile/);
      }
    } finally {
      await adminCall(ts.client, { command: 'updateConfiguration', name: 'kms.rewrap.interval.ms', value: '100' });
    }
  }, 180_000);
});
