import { createRepositories } from '../../src/db/repositories';
/**
 * HSM faults, injected by the fault module (spec/support/faultmod) between the server and SoftHSM2.
 * Each fault hits while volumes are being created and a rewrap of 2,000 DEKs runs, and each test
 * asserts the outcome (retried, failed fast, recovered), that every DEK is unchanged, that the old
 * KEK was destroyed only once empty, and that the event loop never lagged 100 ms.
 */
import { createHash, randomUUID } from 'node:crypto';
import { PerformanceObserver } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { mapLimit } from '../../src/kms/concurrency';
import { SecretBytes } from '../../src/core/secret-bytes';
import { adminCall, createPkcs11Profile } from '../support/actors';
import { createFaultControl, type FaultControl, type FaultRule } from '../support/faultmod';
import { startLagMonitor } from '../support/loop-lag';
import { ADMIN_KEYS, startTestServer, type TestServer } from '../support/server';
import { createSoftHsmToken, type SoftHsmToken } from '../support/softhsm';

const DEKS = 2000;
const TIMEOUT_SEC = 2;

let ts: TestServer;
let token: SoftHsmToken;
let fault: FaultControl;
let zoneId: string;
let profileId: string;

beforeAll(async () => {
  token = await createSoftHsmToken();
  fault = await createFaultControl();
  ts = await startTestServer();
  for (const [name, value] of Object.entries({
    'kms.operation.timeout.sec': String(TIMEOUT_SEC), 'kms.retry.count': '3', 'kms.retry.delay.ms': '50',
    'kms.rewrap.batch.size': '250', 'kms.rewrap.interval.ms': '100', 'kms.kek.destroy.delay.days': '0',
  })) await adminCall(ts.client, { command: 'updateConfiguration', name, value });
  zoneId = (await adminCall(ts.client, { command: 'createZone', name: `faults-${randomUUID().slice(0, 8)}` })).zone.id;
  profileId = await createPkcs11Profile(ts.client, { library: fault.library, token_label: token.tokenLabel, pin: token.pin, max_sessions: '8' }, 'faulty-hsm');
}, 120_000);

afterAll(async () => {
  fault?.clear();
  await ts?.close();
  await fault?.cleanup();
  await token?.cleanup();
});

afterEach(() => fault.clear());

// Earlier scenarios leave ~20 MB of garbage each in this one jest process; it is collected before
// each measured window, so a major GC of the test harness's heap is not counted as the server's lag.
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(100);
  }
}

interface VolumeAttempt { ok: boolean; code?: number; errortext?: string; ms: number; volumeId?: string }

/** A KMS key with 2,000 volumes whose DEKs (known here by hash) are wrapped by v1, then rotated: v1 is Previous. */
async function seedRotatedKey(): Promise<{ keyUuid: string; v1: number; deks: Map<string, { wrappedKeyId: number; hash: string }> }> {
  const key = (await adminCall(ts.client, { command: 'createKMSKey', name: `k-${randomUUID().slice(0, 8)}`, zoneid: zoneId, hsmprofileid: profileId })).kmskey;
  const app = ts.app;
  const keyRow = await app.db('kms_keys').where({ uuid: key.id }).first();
  const zoneRow = await app.db('data_center').where({ uuid: zoneId }).first('id');
  const wk = app.kms.wrappedKeys;
  const v = await wk.activeVersion(keyRow.id);
  const owners = Array.from({ length: DEKS }, () => randomUUID());
  const hashes = new Map<string, string>();
  const blobs = await mapLimit(owners, 16, async (o) => {
    const dek = SecretBytes.random(32);
    try {
      hashes.set(o, sha(dek.reveal()));
      return await wk.wrap(v, o, dek);
    } finally {
      dek.dispose();
    }
  });
  const ids = new Map<string, number>();
  await app.db.transaction(async (trx) => {
    for (let i = 0; i < owners.length; i += 500) {
      const part = owners.slice(i, i + 500).map((o, j) => ({ zoneId: zoneRow.id, ownerUuid: o, blob: blobs[i + j]! }));
      for (const [o, id] of await wk.insertMany(createRepositories(trx), v, part)) ids.set(o, id);
    }
  });
  const rotate = await ts.client.signed(ADMIN_KEYS, { command: 'rotateKMSKey', id: key.id });
  expect(rotate.status).toBe(200);
  await until('the rotation finished', async () => {
    const row = await app.db('kms_kek_versions').where({ id: v.versionId }).first('status');
    return row.status !== 'Active';
  });
  const deks = new Map([...ids].map(([o, id]) => [o, { wrappedKeyId: id, hash: hashes.get(o)! }]));
  return { keyUuid: key.id, v1: v.versionId, deks };
}

/** Creates encrypted volumes one after another until stopped, timing each to its job's end. */
function volumeLoad(keyUuid: string): { stop(): Promise<VolumeAttempt[]> } {
  const attempts: VolumeAttempt[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const t0 = Date.now();
      const res = await ts.client.signed(ADMIN_KEYS, { command: 'createVolume', name: `v-${randomUUID().slice(0, 8)}`, zoneid: zoneId, kmskeyid: keyUuid, encrypt: true });
      if (res.status !== 200) {
        attempts.push({ ok: false, code: res.status, errortext: res.body?.errortext, ms: Date.now() - t0 });
        continue;
      }
      for (;;) {
        const job = await ts.client.signed(ADMIN_KEYS, { command: 'queryAsyncJobResult', jobid: res.body.jobid });
        if (job.body.jobstatus === 1) {
          attempts.push({ ok: true, ms: Date.now() - t0, volumeId: job.body.jobresult.volume.id });
          break;
        }
        if (job.body.jobstatus === 2) {
          attempts.push({ ok: false, code: job.body.jobresultcode, errortext: job.body.jobresult?.errortext, ms: Date.now() - t0 });
          break;
        }
        await sleep(50);
      }
      await sleep(50);
    }
  })();
  return { async stop() { running = false; await loop; return attempts; } };
}

const healthOfProfile = async (): Promise<string> =>
  (await adminCall(ts.client, { command: 'listHSMProfiles', id: profileId })).hsmprofile[0].health;

/** What a scenario observed. */
interface Outcome {
  volumes: VolumeAttempt[];
  maxLagMs: number;
  healthSeen: Set<string>;
  log: string[];
  /** The most delayed HSM calls in flight at once while the rules held (the fault module's count). */
  peakDelayed: number;
}

/**
 * Seeds and rotates a key, starts the volume load and the rewrap, applies `rules` for `holdMs`
 * (or until `clearWhen` holds), clears them, waits for the rewrap to drain and v1 to be destroyed,
 * then checks what every scenario must keep: DEKs unchanged, v1 destroyed only when empty, nothing
 * parked, every created volume's secret readable, event-loop lag under 100 ms.
 */
async function underFault(rules: FaultRule[], opts: { holdMs?: number; clearWhen?: (log: string[]) => Promise<boolean> } = {}): Promise<Outcome> {
  const { keyUuid, v1, deks } = await seedRotatedKey();
  const logBefore = fault.log().length;
  const healthSeen = new Set<string>();
  let destroyedEarly = false;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const v = await ts.app.db('kms_kek_versions').where({ id: v1 }).first('removed');
      if (v.removed) {
        const live = await ts.app.db('kms_wrapped_key').where({ kek_version_id: v1 }).whereNull('removed').count({ n: '*' });
        if (Number(live[0].n) > 0) destroyedEarly = true;
      }
      healthSeen.add(ts.app.providers.isDegraded(profileId) ? 'Degraded' : 'Healthy');
      await sleep(100);
    }
  })();
  collectGarbage();
  const lag = startLagMonitor();
  let gcMax = 0;
  const gcObs = new PerformanceObserver((list) => { for (const e of list.getEntries()) gcMax = Math.max(gcMax, e.duration); });
  gcObs.observe({ entryTypes: ['gc'] });
  const load = volumeLoad(keyUuid);
  await until('the rewrap started', async () => {
    const [{ n }] = await ts.app.db('kms_wrapped_key').where({ kek_version_id: v1 }).whereNull('removed').count({ n: '*' });
    return Number(n) < DEKS;
  });
  fault.set(rules);
  if (opts.clearWhen) await until('the fault showed', () => opts.clearWhen!(fault.log().slice(logBefore)), 30_000);
  else await sleep(opts.holdMs ?? 1500);
  const peakDelayed = fault.peakDelayed();
  fault.clear();
  await until('v1 was drained, archived and destroyed', async () => {
    const v = await ts.app.db('kms_kek_versions').where({ id: v1 }).first('status', 'removed');
    return v.status === 'Archived' && v.removed !== null;
  }, 90_000);
  const volumes = await load.stop();
  const { rawMaxMs, netMaxMs } = lag.stop();
  gcObs.disconnect();
  sampling = false;
  await sampler;

  const wk = ts.app.kms.wrappedKeys;
  const changed: string[] = [];
  await mapLimit([...deks], 16, async ([owner, d]) => {
    const dek = await wk.unwrap(d.wrappedKeyId, owner);
    try {
      if (sha(dek.reveal()) !== d.hash) changed.push(owner);
    } finally {
      dek.dispose();
    }
  });
  expect(changed).toEqual([]);
  expect(destroyedEarly).toBe(false);
  expect(await ts.app.db('kms_wrapped_key').where({ claim_owner: 'rewrap-failed' }).count({ n: '*' }).then((r) => Number(r[0].n))).toBe(0);
  for (const v of volumes.filter((x) => x.ok)) {
    const secret = await ts.client.signed(ADMIN_KEYS, { command: 'getVolumeEncryptionKey', id: v.volumeId! });
    expect(secret.status).toBe(200);
  }
  // The worst lag the server's code caused: time the loop's thread waited for a CPU on this shared
  // machine is left out (see loop-lag.ts); the raw figure is printed beside it.
  const maxLagMs = netMaxMs;
  const failedVolumes = volumes.filter((v) => !v.ok);
  process.stderr.write(`[hsm faults] ${expect.getState().currentTestName}: max event-loop lag ${maxLagMs.toFixed(1)} ms (raw ${rawMaxMs.toFixed(1)} ms with CPU waits; longest GC ${gcMax.toFixed(1)} ms, heap ${(process.memoryUsage().heapUsed / 1e6).toFixed(0)} MB); volumes ${volumes.length - failedVolumes.length} created, ${failedVolumes.length} failed (slowest failure ${Math.max(0, ...failedVolumes.map((v) => v.ms))} ms)\n`);
  expect(maxLagMs).toBeLessThan(100);
  return { volumes, maxLagMs, healthSeen, log: fault.log().slice(logBefore), peakDelayed };
}

const injected = (log: string[], fn: string): number => log.filter((l) => l.startsWith(`${fn} `) && !l.endsWith('0x7fffffff')).length;
const reinits = (log: string[]): number => log.filter((l) => l.startsWith('init ')).length;

describe('HSM faults under load (fault module over SoftHSM2)', () => {
  it('CKR_DEVICE_ERROR for a few calls: retried, every volume is created, the profile stays Healthy', async () => {
    const o = await underFault([{ fail: 'C_WrapKey', code: 'CKR_DEVICE_ERROR', times: 4 }]);
    expect(injected(o.log, 'C_WrapKey')).toBe(4);
    expect(o.volumes.length).toBeGreaterThan(0);
    expect(o.volumes.every((v) => v.ok)).toBe(true);
    expect(o.healthSeen).toEqual(new Set(['Healthy']));
  });

  it('CKR_SESSION_HANDLE_INVALID: sessions are discarded and reopened, the calls retried', async () => {
    const o = await underFault([{ fail: 'C_Sign', code: 'CKR_SESSION_HANDLE_INVALID', times: 6 }]);
    expect(injected(o.log, 'C_Sign')).toBe(6);
    expect(o.volumes.every((v) => v.ok)).toBe(true);
    expect(reinits(o.log)).toBe(0);
  });

  it('CKR_USER_NOT_LOGGED_IN: the pool logs in again on fresh sessions and the calls are retried', async () => {
    const o = await underFault([{ fail: 'C_UnwrapKey', code: 'CKR_USER_NOT_LOGGED_IN', times: 6 }]);
    expect(injected(o.log, 'C_UnwrapKey')).toBe(6);
    expect(o.volumes.every((v) => v.ok)).toBe(true);
  });

  it('CKR_GENERAL_ERROR on unwrap: retried, and no wrapped key is parked as if it were tampered', async () => {
    const o = await underFault([{ fail: 'C_UnwrapKey', code: 'CKR_GENERAL_ERROR', times: 6 }]);
    expect(injected(o.log, 'C_UnwrapKey')).toBe(6);
    expect(o.volumes.every((v) => v.ok)).toBe(true);
  });

  it.each(['CKR_DEVICE_REMOVED', 'CKR_TOKEN_NOT_PRESENT'])('%s for a while: the library is finalised once and initialised again with back-off, KEKs found again by label', async (code) => {
    const o = await underFault([{ fail: '*', code }], {
      // Cleared once C_Initialize has failed at least twice: the device is back only then.
      clearWhen: async (log) => log.filter((l) => l.startsWith('C_Initialize 0x')).length >= 2,
    });
    const failedInits = o.log.filter((l) => l.startsWith('C_Initialize 0x')).length;
    expect(failedInits).toBeGreaterThanOrEqual(2);
    expect(o.log.filter((l) => l.startsWith('finalize ')).length).toBe(1);
    expect(reinits(o.log)).toBe(1);
    for (const f of o.volumes.filter((v) => !v.ok)) {
      expect(f.code).toBe(530);
      expect(f.ms).toBeLessThan((TIMEOUT_SEC + 1) * 1000);
    }
    expect(await healthOfProfile()).toBe('Healthy');
  });

  it('CKR_DEVICE_REMOVED on a few calls: concurrent detections start one re-initialisation', async () => {
    const o = await underFault([{ fail: 'C_UnwrapKey', code: 'CKR_DEVICE_REMOVED', times: 1 }, { fail: 'C_WrapKey', code: 'CKR_DEVICE_REMOVED', times: 1 }]);
    expect(injected(o.log, 'C_UnwrapKey') + injected(o.log, 'C_WrapKey')).toBeGreaterThanOrEqual(1);
    expect(reinits(o.log)).toBeGreaterThanOrEqual(1);
    expect(reinits(o.log)).toBeLessThanOrEqual(injected(o.log, 'C_UnwrapKey') + injected(o.log, 'C_WrapKey'));
    expect(o.volumes.every((v) => v.ok)).toBe(true);
  });

  it('an HSM restart (every handle invalid): recovered by one C_Finalize/C_Initialize, nothing lost', async () => {
    const o = await underFault([{ restart: true }]);
    expect(o.log).toContain('restart 0x0');
    expect(o.log.filter((l) => l.startsWith('finalize ')).length).toBe(1);
    expect(reinits(o.log)).toBe(1);
  });

  it('a slow HSM (100 ms per unwrap and wrap) served by 4 threads: the rewrap completes; a volume either is created or fails with a 530 in time', async () => {
    // An HSM that serves calls in parallel (a network HSM) gets a pool of threads: its own profile
    // with `threads` 4, so the rewrap's batch and the volumes' wraps do not queue behind each other.
    const serial = profileId;
    profileId = await createPkcs11Profile(ts.client, { library: fault.library, token_label: token.tokenLabel, pin: token.pin, max_sessions: '8', threads: '4' }, 'faulty-hsm-4');
    try {
      const o = await underFault([{ delay: 'C_UnwrapKey', ms: 100 }, { delay: 'C_WrapKey', ms: 100 }], { holdMs: 3000 });
      expect(injected(o.log, 'C_UnwrapKey')).toBe(0);
      expect(o.volumes.some((v) => v.ok)).toBe(true);
      for (const f of o.volumes.filter((v) => !v.ok)) {
        expect(f.code).toBe(530);
        expect(f.ms).toBeLessThan((TIMEOUT_SEC + 1) * 1000);
      }
      expect(o.peakDelayed).toBeGreaterThanOrEqual(2);
    } finally {
      profileId = serial;
    }
  });

  it('CKR_DEVICE_ERROR on every call for a while: the profile turns Degraded, requests fail fast with a 530 naming it, a probe heals it', async () => {
    const eventsBefore = await ts.app.db('event').where({ type: 'HSM.PROFILE.HEALTH' }).count({ n: '*' }).then((r) => Number(r[0].n));
    let listed = '';
    const o = await underFault([{ fail: '*', code: 'CKR_DEVICE_ERROR' }], {
      clearWhen: async () => {
        if (!ts.app.providers.isDegraded(profileId)) return false;
        listed = await healthOfProfile();
        await sleep(1500); // requests arrive while Degraded
        return true;
      },
    });
    expect(listed).toBe('Degraded');
    expect(o.healthSeen).toEqual(new Set(['Healthy', 'Degraded']));
    const failed = o.volumes.filter((v) => !v.ok);
    expect(failed.length).toBeGreaterThan(0);
    for (const f of failed) expect(f.code).toBe(530);
    const fast = failed.filter((f) => /HSM profile faulty-hsm is degraded/.test(f.errortext ?? ''));
    expect(fast.length).toBeGreaterThan(0);
    expect(Math.min(...fast.map((f) => f.ms))).toBeLessThan(TIMEOUT_SEC * 1000);
    expect(await healthOfProfile()).toBe('Healthy');
    const events = await ts.app.db('event').where({ type: 'HSM.PROFILE.HEALTH', resource_id: profileId }).orderBy('id').select('level', 'description');
    expect(events.length - eventsBefore).toBeGreaterThanOrEqual(2);
    expect(events.at(-2)).toMatchObject({ level: 'WARN', description: expect.stringMatching(/faulty-hsm is degraded/) });
    expect(events.at(-1)).toMatchObject({ level: 'INFO', description: expect.stringMatching(/faulty-hsm answers again/) });
  });

  it('a hung C_WrapKey: abandoned at kms.operation.timeout.sec, createVolume fails with a 530 in time, the event loop stays free', async () => {
    const o = await underFault([{ hang: 'C_WrapKey' }], {
      clearWhen: async () => ts.app.providers.isDegraded(profileId) && (await sleep(1000), true),
    });
    const failed = o.volumes.filter((v) => !v.ok);
    expect(failed.length).toBeGreaterThan(0);
    for (const f of failed) {
      expect(f.code).toBe(530);
      expect(f.ms).toBeLessThan((TIMEOUT_SEC + 1) * 1000);
    }
    expect(failed.some((f) => /timed out/.test(f.errortext ?? ''))).toBe(true);
    expect(o.healthSeen.has('Degraded')).toBe(true);
    expect(await healthOfProfile()).toBe('Healthy');
  });
});
