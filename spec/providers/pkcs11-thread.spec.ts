/**
 * The PKCS#11 provider's library thread under faults injected by the fault module
 * (spec/support/faultmod) over SoftHSM2: batches that meet a hung call, a device error in the middle
 * of a batch, a wrong PIN for a whole batch.
 */
import { randomBytes } from 'node:crypto';
import { SecretBytes } from '../../src/core/secret-bytes';
import { silentLogger } from '../../src/core/logger';
import { createPkcs11Provider } from '../../src/providers/pkcs11/pkcs11-provider';
import type { BackendPolicy, HsmProfileConfig, ItemResult, KekProvider, KekRef } from '../../src/providers/provider';
import { withPolicy } from '../../src/providers/registry';
import { createFaultControl, type FaultControl } from '../support/faultmod';
import { createSoftHsmToken, type SoftHsmToken } from '../support/softhsm';
import { countingProvider, rejection } from './kek-provider-contract';

const TIMEOUT_MS = 1500;
const POLICY: BackendPolicy = { timeoutMs: TIMEOUT_MS, retries: 3, baseDelayMs: 10 };
const N = 50;

let token: SoftHsmToken;
let fault: FaultControl;
let raw: KekProvider;
let counted: ReturnType<typeof countingProvider>;
let provider: KekProvider;
let profile: HsmProfileConfig;
let kek: KekRef;

beforeAll(async () => {
  token = await createSoftHsmToken();
  fault = await createFaultControl();
  raw = createPkcs11Provider({ logger: silentLogger });
  counted = countingProvider(raw);
  provider = withPolicy(counted.provider, () => POLICY, silentLogger);
  profile = { id: `p-${randomBytes(4).toString('hex')}`, name: 'thread-hsm', protocol: 'pkcs11', details: { library: fault.library, token_label: token.tokenLabel, pin: token.pin } };
  kek = { profile, label: `kek-${randomBytes(4).toString('hex')}` };
  await provider.createKek(kek, 256);
});

afterAll(async () => {
  fault?.clear();
  await raw?.close();
  await fault?.cleanup();
  await token?.cleanup();
});

afterEach(() => fault.clear());

const aad = (i: number): Buffer => Buffer.from(`volume|key|v1|vol-${i}`);
const ok = <T>(results: ItemResult<T>[]): T[] => results.map((r, i) => {
  if (!r.ok) throw new Error(`item ${i} failed: ${r.error.kind} ${r.error.message}`);
  return r.value;
});

async function wrapped(deks: SecretBytes[]): Promise<Buffer[]> {
  return ok(await provider.wrapMany(deks.map((dek, i) => ({ kek, dek, aad: aad(i) }))));
}

describe('PKCS#11 library thread under HSM faults', () => {
  it('a batch that meets a hung call fails as timed out while the HSM still hangs; the thread is replaced and later calls work while the old one still hangs', async () => {
    const deks = Array.from({ length: N }, () => SecretBytes.random(32));
    try {
      const blobs = await wrapped(deks);
      fault.set([{ hang: 'C_WrapKey' }]);
      // The hang lasts until fault.clear() below: an answer before it is the timeout's, not the HSM's.
      const t0 = Date.now();
      const err = await rejection(provider.rewrapMany(blobs.map((blob, i) => ({ from: { kek, blob, aad: aad(i) }, to: { kek, aad: aad(i + 1000) } }))));
      console.log(`[pkcs11 thread] a batch meeting a hung C_WrapKey was abandoned after ${Date.now() - t0} ms (operation timeout ${TIMEOUT_MS} ms)`);
      expect(err.kind).toBe('unavailable');
      expect(err.message).toMatch(/timed out/);
      expect(fault.log().some((l) => l === 'C_WrapKey 0x7fffffff')).toBe(true);

      // C_WrapKey still hangs in the old thread; C_UnwrapKey is served by the new one.
      const backs = ok(await provider.unwrapMany(blobs.map((blob, i) => ({ kek, blob, aad: aad(i) }))));
      backs.forEach((b, i) => {
        expect(b.reveal().equals(deks[i].reveal())).toBe(true);
        b.dispose();
      });
      fault.clear();
      const again = await provider.rewrapMany(blobs.map((blob, i) => ({ from: { kek, blob, aad: aad(i) }, to: { kek, aad: aad(i + 1000) } })));
      expect(again.every((r) => r.ok)).toBe(true);
    } finally {
      deks.forEach((d) => d.dispose());
    }
  });

  it('a single call that meets a hung call times out while the HSM still hangs, and the next one works once the HSM answers', async () => {
    fault.set([{ hang: 'C_Sign' }]);
    const t0 = Date.now();
    const err = await rejection(provider.generateAndWrap({ kek, bytes: 32, aad: aad(1) }));
    console.log(`[pkcs11 thread] a single call meeting a hung C_Sign was abandoned after ${Date.now() - t0} ms (operation timeout ${TIMEOUT_MS} ms)`);
    expect(err.kind).toBe('unavailable');
    expect(err.message).toMatch(/timed out/);
    fault.clear();
    const blob = await provider.generateAndWrap({ kek, bytes: 32, aad: aad(1) });
    const back = await provider.unwrap({ kek, blob, aad: aad(1) });
    expect(back.length).toBe(32);
    back.dispose();
  });

  it('a slow HSM: a batch that takes longer than the operation timeout succeeds while its items keep finishing', async () => {
    const logBefore = fault.log().length;
    fault.set([{ delay: 'C_WrapKey', ms: 40 }]); // 50 items × 40 ms: beyond the 1.5 s timeout in all
    const results = await provider.generateAndWrapMany(Array.from({ length: N }, (_, i) => ({ kek, bytes: 32, aad: aad(i) })));
    expect(results.every((r) => r.ok)).toBe(true);
    expect(fault.log().slice(logBefore)).toEqual([]); // delayed, never failed
  });

  it('a device error in the middle of a batch: the items it stopped are retried alone, and every item succeeds', async () => {
    const deks = Array.from({ length: N }, () => SecretBytes.random(32));
    try {
      const blobs = await wrapped(deks);
      fault.set([{ fail: 'C_UnwrapKey', code: 'CKR_DEVICE_ERROR', times: 1 }]);
      const before = counted.calls.get('unwrapMany') ?? 0;
      const backs = ok(await provider.unwrapMany(blobs.map((blob, i) => ({ kek, blob, aad: aad(i) }))));
      expect(fault.log().filter((l) => l.startsWith('C_UnwrapKey 0x30')).length).toBeGreaterThanOrEqual(1);
      expect(counted.calls.get('unwrapMany')! - before).toBe(2);
      backs.forEach((b, i) => {
        expect(b.reveal().equals(deks[i].reveal())).toBe(true);
        b.dispose();
      });
    } finally {
      deks.forEach((d) => d.dispose());
    }
  });

  it('a wrong PIN fails a whole batch once as auth, not once per item', async () => {
    const pin = `wrong-${randomBytes(4).toString('hex')}`;
    const own = createPkcs11Provider({ logger: silentLogger });
    try {
      const c = countingProvider(own);
      const guarded = withPolicy(c.provider, () => POLICY, silentLogger);
      const bad = { ...kek, profile: { ...profile, id: `p-${randomBytes(4).toString('hex')}`, name: 'bad-pin', details: { ...profile.details, pin } } };
      // The token is logged in (by the first test's thread): the PIN is refused by comparison, without a C_Login.
      const err = await rejection(guarded.generateAndWrapMany(Array.from({ length: N }, (_, i) => ({ kek: bad, bytes: 32, aad: aad(i) }))));
      expect(err.kind).toBe('auth');
      expect(err.message).not.toContain(pin);
      expect(c.calls.get('generateAndWrapMany')).toBe(1);
    } finally {
      await own.close();
    }
  });

  it('reports the profile\'s sessions (idle after the calls) and closes cleanly', async () => {
    const own = createPkcs11Provider({ logger: silentLogger });
    const p = { ...profile, id: `p-${randomBytes(4).toString('hex')}`, name: 'stats-hsm' };
    await own.generateAndWrap({ kek: { profile: p, label: kek.label }, bytes: 32, aad: aad(1) });
    expect(own.sessionStats!()).toEqual([{ profile: 'stats-hsm', inUse: 0, idle: 1 }]);
    await own.close();
    expect(own.sessionStats!()).toEqual([]);
    expect((await rejection(own.generateAndWrap({ kek: { profile: p, label: kek.label }, bytes: 32, aad: aad(1) }))).kind).toBe('unavailable');
  });
});
