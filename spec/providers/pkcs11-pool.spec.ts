/**
 * A pool of threads per PKCS#11 library (KMS_PKCS11_THREADS / a profile's `threads` detail), over
 * SoftHSM2 behind the fault module: with N threads, calls reach the HSM in parallel (the fault
 * module counts the calls sleeping in a `delay` at once), with one they never do; a hung call on
 * one thread does not stop the others; logins are shared, C_Finalize comes once with the last user.
 */
import { randomBytes } from 'node:crypto';
import { readEnv } from '../../src/config/env';
import { SecretBytes } from '../../src/core/secret-bytes';
import { silentLogger } from '../../src/core/logger';
import { createPkcs11Provider } from '../../src/providers/pkcs11/pkcs11-provider';
import { withPolicy } from '../../src/providers/registry';
import type { HsmProfileConfig, KekProvider, KekRef } from '../../src/providers/provider';
import { createFaultControl, type FaultControl } from '../support/faultmod';
import { createSoftHsmToken, type SoftHsmToken } from '../support/softhsm';
import { rejection } from './kek-provider-contract';

const CALLS = 8;
const DELAY_MS = 100;

let token: SoftHsmToken;
let fault: FaultControl;
let label: string;
const providers: KekProvider[] = [];

function profileOf(name: string, extra: Record<string, string> = {}): HsmProfileConfig {
  return { id: `p-${randomBytes(4).toString('hex')}`, name, protocol: 'pkcs11', details: { library: fault.library, token_label: token.tokenLabel, pin: token.pin, ...extra } };
}

function providerOf(threads?: number): KekProvider {
  const p = createPkcs11Provider({ logger: silentLogger, threads });
  providers.push(p);
  return p;
}

const aad = (i: number): Buffer => Buffer.from(`volume|key|v1|vol-${i}`);

beforeAll(async () => {
  token = await createSoftHsmToken();
  fault = await createFaultControl();
  label = `kek-${randomBytes(4).toString('hex')}`;
  await providerOf().createKek({ profile: profileOf('setup'), label }, 256);
});

afterAll(async () => {
  fault?.clear();
  await Promise.all(providers.map((p) => p.close()));
  await fault?.cleanup();
  await token?.cleanup();
});

afterEach(() => fault.clear());

/**
 * Wraps CALLS DEKs at once, each its own call, while C_WrapKey sleeps DELAY_MS in the fault module;
 * checks every blob unwraps to its DEK and returns the most wraps the module saw in flight at once.
 */
async function concurrentWraps(provider: KekProvider, kek: KekRef): Promise<number> {
  await provider.probe(kek.profile); // the pool's first thread connected before the fault
  fault.set([{ delay: 'C_WrapKey', ms: DELAY_MS }]);
  const deks = Array.from({ length: CALLS }, () => SecretBytes.random(32));
  try {
    const blobs = await Promise.all(deks.map((dek, i) => provider.wrap({ kek, dek, aad: aad(i) })));
    const peak = fault.peakDelayed();
    fault.clear();
    const backs = await Promise.all(blobs.map((blob, i) => provider.unwrap({ kek, blob, aad: aad(i) })));
    backs.forEach((b, i) => {
      expect(b.reveal().equals(deks[i].reveal())).toBe(true);
      b.dispose();
    });
    return peak;
  } finally {
    deks.forEach((d) => d.dispose());
  }
}

describe('PKCS#11 library thread pool', () => {
  it('KMS_PKCS11_THREADS: 1 by default, 1 to 16, anything else refused at start; the threads detail 1 to 16', () => {
    expect(readEnv({}).pkcs11Threads).toBe(1);
    expect(readEnv({ KMS_PKCS11_THREADS: '4' }).pkcs11Threads).toBe(4);
    for (const bad of ['0', '17', '2.5', 'four']) expect(() => readEnv({ KMS_PKCS11_THREADS: bad })).toThrow(/KMS_PKCS11_THREADS must be a whole number from 1 to 16/);
    const provider = createPkcs11Provider({ logger: silentLogger });
    expect(provider.validateProfile(profileOf('t', { threads: '16' }).details)).toEqual([]);
    for (const bad of ['0', '17', 'x']) expect(provider.validateProfile(profileOf('t', { threads: bad }).details)).toEqual(["Detail 'threads' must be an integer from 1 to 16"]);
  });

  it('with 4 threads (the provider\'s default, as KMS_PKCS11_THREADS=4), concurrent wraps reach the HSM in parallel and round-trip', async () => {
    const provider = providerOf(4);
    const profile = profileOf('pool-4');
    const peak = await concurrentWraps(provider, { profile, label });
    expect(peak).toBeGreaterThanOrEqual(2);
    expect(peak).toBeLessThanOrEqual(4);
    const [stats] = provider.sessionStats!();
    expect(stats.profile).toBe('pool-4');
    expect(stats.inUse).toBe(0);
    expect(stats.idle).toBeGreaterThanOrEqual(2); // a session per thread that served a call, summed
  });

  it('a profile\'s threads detail overrides the provider\'s default', async () => {
    const peak = await concurrentWraps(providerOf(1), { profile: profileOf('detail-4', { threads: '4' }), label });
    expect(peak).toBeGreaterThanOrEqual(2);
  });

  it('with 1 thread (the default), the calls never overlap', async () => {
    const provider = providerOf();
    const peak = await concurrentWraps(provider, { profile: profileOf('pool-1'), label });
    expect(peak).toBe(1);
    expect(provider.sessionStats!()).toEqual([{ profile: 'pool-1', inUse: 0, idle: 1 }]);
  });

  it('a call hung on one thread of two does not stop the other from serving; it completes once the HSM answers', async () => {
    const provider = providerOf(2);
    const kek = { profile: profileOf('pool-2'), label };
    const deks = Array.from({ length: 5 }, () => SecretBytes.random(32));
    try {
      const blobs = await Promise.all(deks.map((dek, i) => provider.wrap({ kek, dek, aad: aad(i) })));
      fault.set([{ hang: 'C_WrapKey' }]);
      const stuckDek = SecretBytes.random(32);
      let settled = false;
      const stuck = provider.wrap({ kek, dek: stuckDek, aad: aad(99) }).finally(() => { settled = true; });
      for (let i = 0; !fault.log().includes('C_WrapKey 0x7fffffff'); i++) {
        if (i > 200) throw new Error('the wrap never reached the HSM');
        await new Promise((r) => setTimeout(r, 10));
      }
      // One by one, so each goes to the least busy thread: the one not hung.
      for (const [i, blob] of blobs.entries()) {
        const back = await provider.unwrap({ kek, blob, aad: aad(i) });
        expect(back.reveal().equals(deks[i].reveal())).toBe(true);
        back.dispose();
      }
      expect(settled).toBe(false);
      fault.clear();
      const blob = await stuck;
      const back = await provider.unwrap({ kek, blob, aad: aad(99) });
      expect(back.reveal().equals(stuckDek.reveal())).toBe(true);
      back.dispose();
      stuckDek.dispose();
    } finally {
      deks.forEach((d) => d.dispose());
    }
  });

  it('under the policy, a thread of two hung in a call is replaced at the timeout while the other goes on serving', async () => {
    const provider = withPolicy(providerOf(2), () => ({ timeoutMs: 1000, retries: 0, baseDelayMs: 10 }), silentLogger);
    const kek = { profile: profileOf('pool-2-watchdog'), label };
    const dek = SecretBytes.random(32);
    const hangs = (): number => fault.log().filter((l) => l === 'C_WrapKey 0x7fffffff').length;
    try {
      const blob = await provider.wrap({ kek, dek, aad: aad(0) });
      const before = hangs();
      fault.set([{ hang: 'C_WrapKey' }]);
      const stuck = rejection(provider.wrap({ kek, dek, aad: aad(1) }));
      for (let i = 0; hangs() === before; i++) {
        if (i > 200) throw new Error('the wrap never reached the HSM');
        await new Promise((r) => setTimeout(r, 10));
      }
      const back = await provider.unwrap({ kek, blob, aad: aad(0) }); // on the other thread
      expect(back.reveal().equals(dek.reveal())).toBe(true);
      back.dispose();
      const err = await stuck;
      expect(err.kind).toBe('unavailable');
      expect(err.message).toMatch(/timed out/);
      fault.clear();
      const again = await provider.wrap({ kek, dek, aad: aad(2) });
      const backAgain = await provider.unwrap({ kek, blob: again, aad: aad(2) });
      expect(backAgain.reveal().equals(dek.reveal())).toBe(true);
      backAgain.dispose();
    } finally {
      dek.dispose();
    }
  });

  it('a wrong PIN is refused on every thread of the pool, though the token is logged in by the others', async () => {
    const provider = providerOf(2);
    const pin = `wrong-${randomBytes(4).toString('hex')}`;
    const kek = { profile: profileOf('bad-pin', { pin }), label };
    // Two at once: one to each thread.
    const errors = await Promise.all([0, 1].map((i) => rejection(provider.generateAndWrap({ kek, bytes: 32, aad: aad(i) }))));
    for (const e of errors) {
      expect(e.kind).toBe('auth');
      expect(e.message).not.toContain(pin);
    }
  });

  it('a device lost under two threads: the library is finalised once and initialised once, then both threads serve again', async () => {
    const provider = providerOf(2);
    const kek = { profile: profileOf('pool-2-device'), label };
    const dek = SecretBytes.random(32);
    const count = (what: string): number => fault.log().filter((l) => l.startsWith(what)).length;
    try {
      // Both threads hold sessions: two calls at once go one to each.
      await Promise.all([0, 1].map((i) => provider.wrap({ kek, dek, aad: aad(i) })));
      expect(provider.sessionStats!()).toEqual([{ profile: 'pool-2-device', inUse: 0, idle: 2 }]);
      const finalizes = count('finalize ');
      const inits = count('init ');
      fault.set([{ fail: '*', code: 'CKR_DEVICE_REMOVED' }]);
      const errors = await Promise.all([0, 1].map((i) => rejection(provider.wrap({ kek, dek, aad: aad(i) }))));
      for (const e of errors) expect(e.retryable).toBe(true);
      for (let i = 0; count('C_Initialize 0x32') < 2; i++) {
        if (i > 500) throw new Error('C_Initialize was never retried');
        await new Promise((r) => setTimeout(r, 10));
      }
      fault.clear();
      let blobs: Buffer[] | undefined;
      for (let i = 0; !blobs; i++) {
        if (i > 100) throw new Error('the library never came back');
        blobs = await Promise.all([0, 1].map((j) => provider.wrap({ kek, dek, aad: aad(j) }))).catch(() => undefined);
        if (!blobs) await new Promise((r) => setTimeout(r, 100));
      }
      for (const [j, blob] of blobs.entries()) {
        const back = await provider.unwrap({ kek, blob, aad: aad(j) });
        expect(back.reveal().equals(dek.reveal())).toBe(true);
        back.dispose();
      }
      expect(count('finalize ') - finalizes).toBe(1);
      expect(count('init ') - inits).toBe(1);
    } finally {
      dek.dispose();
    }
  });

  it('closing the pools finalises the library once, with the last of them', async () => {
    const before = fault.log().filter((l) => l.startsWith('finalize ')).length;
    const all = providers.splice(0);
    for (const p of all.slice(0, -1)) await p.close();
    expect(fault.log().filter((l) => l.startsWith('finalize ')).length).toBe(before);
    await all.at(-1)!.close();
    expect(fault.log().filter((l) => l.startsWith('finalize ')).length).toBe(before + 1);
  });
});
