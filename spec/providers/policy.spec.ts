import { randomBytes } from 'node:crypto';
import { MasterKey } from '../../src/config/master-key';
import { KmsError } from '../../src/core/errors';
import { SecretBytes } from '../../src/core/secret-bytes';
import { silentLogger } from '../../src/core/logger';
import { ProfileCircuits } from '../../src/providers/circuit';
import { batchTimeoutMs, callBatchWithPolicy, callWithPolicy, operationProgress, operationSignal, operationStallMs, StalledError } from '../../src/providers/policy';
import type { BackendPolicy, ItemResult, KekProvider } from '../../src/providers/provider';
import { withPolicy } from '../../src/providers/registry';
import { createProviderRegistry } from '../../src/providers/registry';
import { DatabaseKekRepository } from '../../src/db/repositories/database-keks';
import { createTestDb, type TestDb } from '../support/db';
import { rejection } from './kek-provider-contract';

const policy = (p: Partial<BackendPolicy> = {}): BackendPolicy => ({ timeoutMs: 5000, retries: 3, baseDelayMs: 100, ...p });
const transient = (): KmsError => new KmsError('unavailable', 'HSM unavailable: pkcs11 C_Sign failed: CKR_DEVICE_ERROR');

/** A backend double that fails `failures` times with `error()` and then answers 'ok'. */
function flaky(failures: number, error: () => Error) {
  let calls = 0;
  return {
    get calls() { return calls; },
    fn: async () => {
      calls++;
      if (calls <= failures) throw error();
      return 'ok';
    },
  };
}

describe('callWithPolicy', () => {
  const sleeps: number[] = [];
  const hooks = { sleep: async (ms: number) => { sleeps.push(ms); }, random: () => 0.5 };
  beforeEach(() => { sleeps.length = 0; });

  it('retries a transient fault with exponential back-off plus jitter, then succeeds', async () => {
    const b = flaky(3, transient);
    await expect(callWithPolicy(policy(), 'pkcs11.wrap', b.fn, hooks)).resolves.toBe('ok');
    expect(b.calls).toBe(4);
    expect(sleeps).toEqual([105, 210, 420]);
  });

  it('gives up after `retries` retries and throws the last fault', async () => {
    const b = flaky(10, transient);
    const err = await rejection(callWithPolicy(policy({ retries: 2 }), 'pkcs11.wrap', b.fn, hooks));
    expect(err.kind).toBe('unavailable');
    expect(b.calls).toBe(3);
  });

  it('keeps jitter within 10% of each back-off', async () => {
    const b = flaky(3, transient);
    await callWithPolicy(policy(), 'op', b.fn, { ...hooks, random: () => 0.999 });
    sleeps.forEach((ms, i) => {
      expect(ms).toBeGreaterThanOrEqual(100 * 2 ** i);
      expect(ms).toBeLessThanOrEqual(110 * 2 ** i);
    });
  });

  it.each([
    ['a wrong PIN', () => new KmsError('auth', 'HSM login failed: wrong PIN (CKR_PIN_INCORRECT) in C_Login')],
    ['a missing library', () => new KmsError('provider', 'Cannot load PKCS#11 library /x.so', { retryable: false })],
    ['a tampered blob', () => new KmsError('integrity', 'Wrapped key failed authentication')],
    ['an unknown key', () => new KmsError('param', 'KEK not found: k')],
  ])('never retries %s', async (_what, error) => {
    const b = flaky(10, error);
    await rejection(callWithPolicy(policy(), 'op', b.fn, hooks));
    expect(b.calls).toBe(1);
    expect(sleeps).toEqual([]);
  });

  it('turns a non-KmsError into internal and does not retry it', async () => {
    const b = flaky(10, () => new TypeError('boom'));
    const err = await rejection(callWithPolicy(policy(), 'op', b.fn, hooks));
    expect(err.kind).toBe('internal');
    expect(b.calls).toBe(1);
  });

  it('times out a hung backend call as unavailable naming the operation and seconds', async () => {
    const started = Date.now();
    const err = await rejection(callWithPolicy(policy({ timeoutMs: 300 }), 'pkcs11.unwrap', () => new Promise(() => undefined)));
    expect(err.kind).toBe('unavailable');
    expect(err.message).toBe('KMS operation pkcs11.unwrap timed out after 0.3s');
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('bounds retries and back-off by the same timeout', async () => {
    const b = flaky(100, transient);
    const err = await rejection(callWithPolicy(policy({ timeoutMs: 400, retries: 50, baseDelayMs: 50 }), 'op', b.fn));
    expect(err.kind).toBe('unavailable');
    expect(b.calls).toBeLessThan(6);
  });

  it('disposes a plaintext result that arrives after the timeout', async () => {
    const late = SecretBytes.random(32);
    let arrive!: (s: SecretBytes) => void;
    const err = await rejection(callWithPolicy(policy({ timeoutMs: 50 }), 'op', () => new Promise<SecretBytes>((r) => { arrive = r; })));
    expect(err.message).toContain('timed out');
    arrive(late);
    await new Promise((r) => setImmediate(r));
    expect(late.disposed).toBe(true);
  });
});

describe('createProviderRegistry', () => {
  let t: TestDb;
  beforeAll(async () => { t = await createTestDb(); });
  afterAll(async () => { await t.drop(); });

  it('reads the policy at every call, so a settings change applies without a restart', async () => {
    let current = policy({ timeoutMs: 5000 });
    const reads: BackendPolicy[] = [];
    const registry = createProviderRegistry({
      databaseKeks: new DatabaseKekRepository(t.db), masterKey: new MasterKey(randomBytes(32)), logger: silentLogger,
      policy: () => { reads.push(current); return current; },
    });
    const db = registry.get('database');
    expect(registry.get('database')).toBe(db);
    const kek = { profile: { id: 'p1', name: 'db', protocol: 'database' as const, details: {} }, label: `kek-${randomBytes(4).toString('hex')}` };
    await db.createKek(kek, 256);
    current = policy({ timeoutMs: 1 });
    await db.hasKek(kek).catch(() => undefined);
    expect(reads.map((p) => p.timeoutMs)).toEqual([5000, 1]);
    await registry.close();
  });

  it('logs each retry without secrets', async () => {
    const lines: Array<[string, Record<string, unknown> | undefined]> = [];
    const logger = { ...silentLogger, warn: (m: string, f?: Record<string, unknown>) => { lines.push([m, f]); } };
    const t2 = await createTestDb();
    const registry = createProviderRegistry({ databaseKeks: new DatabaseKekRepository(t2.db), masterKey: new MasterKey(randomBytes(32)), logger, policy: () => policy({ retries: 2, baseDelayMs: 1 }) });
    const db = registry.get('database');
    await t2.drop();
    const err = await rejection(db.hasKek({ profile: { id: 'p', name: 'db', protocol: 'database', details: {} }, label: 'k' }));
    expect(err.kind).toBe('unavailable');
    expect(lines).toHaveLength(2);
    expect(lines[0][1]).toMatchObject({ op: 'database.hasKek', attempt: 1, kind: 'unavailable' });
    await registry.close();
  });
});

describe('operationSignal', () => {
  it('is the signal of the running operation and aborts when the operation times out, so the backend stops waiting', async () => {
    let seen: AbortSignal | undefined;
    const err = await callWithPolicy({ timeoutMs: 100, retries: 0, baseDelayMs: 1 }, 'pkcs11.wrap', () => {
      seen = operationSignal();
      return new Promise<never>(() => undefined);
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'unavailable', message: 'KMS operation pkcs11.wrap timed out after 0.1s' });
    expect(seen?.aborted).toBe(true);
    expect(operationSignal()).toBeUndefined();
  });
});

describe('callBatchWithPolicy', () => {
  const sleeps: number[] = [];
  const hooks = { sleep: async (ms: number) => { sleeps.push(ms); }, random: () => 0.5 };
  beforeEach(() => { sleeps.length = 0; });
  const okItem = (v: string): ItemResult<string> => ({ ok: true, value: v });
  const failItem = (e: KmsError): ItemResult<string> => ({ ok: false, error: e });
  const integrity = (): KmsError => new KmsError('integrity', 'Wrapped key failed authentication', { retryable: false });

  it('retries only the items that failed retryably, alone, and merges their results in order', async () => {
    const seen: string[][] = [];
    let attempt = 0;
    const results = await callBatchWithPolicy(policy(), 'pkcs11.rewrapMany', ['a', 'b', 'c', 'd'], async (items) => {
      seen.push([...items]);
      attempt++;
      return items.map((x) => (x === 'b' ? failItem(integrity()) : attempt === 1 && x !== 'a' ? failItem(transient()) : okItem(x.toUpperCase())));
    }, hooks);
    expect(seen).toEqual([['a', 'b', 'c', 'd'], ['c', 'd']]);
    expect(results.map((r) => (r.ok ? r.value : r.error.kind))).toEqual(['A', 'integrity', 'C', 'D']);
    expect(sleeps).toEqual([105]);
  });

  it('keeps the last error of items still failing after `retries` retries', async () => {
    let calls = 0;
    const results = await callBatchWithPolicy(policy({ retries: 2 }), 'op', ['a', 'b'], async (items) => {
      calls++;
      return items.map((x) => (x === 'b' ? failItem(transient()) : okItem(x)));
    }, hooks);
    expect(calls).toBe(3);
    expect(results.map((r) => (r.ok ? r.value : r.error.kind))).toEqual(['a', 'unavailable']);
  });

  it('retries a batch that failed as a whole with a retryable error, but never one that stalled or failed for good', async () => {
    const whole = flaky(2, transient);
    await expect(callBatchWithPolicy(policy(), 'op', ['a'], async (items) => { await whole.fn(); return items.map(okItem); }, hooks)).resolves.toEqual([okItem('a')]);
    expect(whole.calls).toBe(3);
    for (const error of [() => new StalledError('HSM call timed out: no progress'), () => new KmsError('auth', 'HSM login failed: wrong PIN')]) {
      const b = flaky(10, error);
      const err = await rejection(callBatchWithPolicy(policy(), 'op', ['a'], async (items) => { await b.fn(); return items.map(okItem); }, hooks));
      expect(err.message).toBe(error().message);
      expect(b.calls).toBe(1);
    }
  });

  it('gives a batch one operation timeout per item, but fails it as stalled when no item finishes within one', async () => {
    expect(batchTimeoutMs(2000, 1)).toBe(2000);
    expect(batchTimeoutMs(2000, 500)).toBe(1_000_000);
    expect(batchTimeoutMs(30_000, 100_000)).toBe(2 ** 31 - 1); // setTimeout's limit, not an instant timeout
    let stall: number | undefined;
    const err = await rejection(callBatchWithPolicy(policy({ timeoutMs: 100 }), 'pkcs11.wrapMany', Array.from({ length: 150 }, (_, i) => i), () => {
      stall = operationStallMs();
      return new Promise<never>(() => undefined);
    }, hooks));
    expect(stall).toBe(100);
    expect(err).toBeInstanceOf(StalledError);
    expect(err.message).toBe('KMS operation pkcs11.wrapMany timed out: no item finished for 0.1s');
  });

  it('does not fail a batch that takes longer than one operation timeout while its items keep finishing', async () => {
    const results = await callBatchWithPolicy(policy({ timeoutMs: 1000 }), 'database.wrapMany', Array.from({ length: 10 }, (_, i) => i), async (items) => {
      const progress = operationProgress();
      for (let i = 0; i < items.length; i++) {
        await new Promise((r) => setTimeout(r, 150)); // 10 × 150 ms: beyond the 1 s timeout in all
        progress();
      }
      return items.map((i) => okItem(String(i)));
    }, hooks);
    expect(results.map((r) => (r.ok ? r.value : r.error.kind))).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
  });

  it('disposes plaintext results of a batch that arrives after the timeout', async () => {
    const late = [SecretBytes.random(32), SecretBytes.random(32)];
    let arrive!: (r: ItemResult<SecretBytes>[]) => void;
    await rejection(callBatchWithPolicy(policy({ timeoutMs: 50 }), 'op', [1, 2], () => new Promise<ItemResult<SecretBytes>[]>((r) => { arrive = r; })));
    arrive(late.map((value) => ({ ok: true, value })));
    await new Promise((r) => setImmediate(r));
    expect(late.every((s) => s.disposed)).toBe(true);
  });
});

describe('withPolicy on batches', () => {
  const profileA = { id: 'pa', name: 'hsm-a', protocol: 'pkcs11' as const, details: {} };
  const kek = { profile: profileA, label: 'k' };
  const down = (): KmsError => new KmsError('unavailable', 'HSM unavailable: pkcs11 C_UnwrapKey failed: CKR_DEVICE_ERROR');
  /** A provider double whose rewrapMany answers every item with `outcome()`. */
  const backend = (outcome: () => ItemResult<Buffer>): KekProvider => ({ kind: 'pkcs11', rewrapMany: async (reqs: readonly unknown[]) => reqs.map(outcome) }) as unknown as KekProvider;
  const reqs = Array.from({ length: 3 }, () => ({ from: { kek, blob: Buffer.alloc(1), aad: Buffer.alloc(0) }, to: { kek, aad: Buffer.alloc(0) } }));

  it('reports one outcome per item to the observer and counts a batch whose every item is unavailable as one circuit failure', async () => {
    const ops: Array<{ operation: string; outcome: string }> = [];
    const observer = { operation: (i: { operation: string; outcome: string }) => ops.push({ operation: i.operation, outcome: i.outcome }), retry: () => undefined };
    const circuits = new ProfileCircuits({ threshold: 2, probeDelayMs: 60_000, probe: async () => undefined });
    const p = withPolicy(backend(() => ({ ok: false, error: down() })), () => policy({ retries: 0 }), silentLogger, hooks(), circuits, observer);
    const first = await p.rewrapMany(reqs);
    expect(first.map((r) => (r.ok ? 'ok' : r.error.kind))).toEqual(['unavailable', 'unavailable', 'unavailable']);
    expect(ops).toEqual(Array.from({ length: 3 }, () => ({ operation: 'rewrapMany', outcome: 'unavailable' })));
    expect(circuits.isDegraded('pa')).toBe(false);
    await p.rewrapMany(reqs);
    expect(circuits.isDegraded('pa')).toBe(true);
    expect((await rejection(p.rewrapMany(reqs))).message).toMatch(/HSM profile hsm-a is degraded/);
    circuits.close();
  });

  it('does not count a batch with any answered item against the circuit', async () => {
    const circuits = new ProfileCircuits({ threshold: 1, probeDelayMs: 60_000, probe: async () => undefined });
    let i = 0;
    const p = withPolicy(backend(() => (i++ % 3 ? { ok: false, error: down() } : { ok: false, error: new KmsError('integrity', 'tampered', { retryable: false }) })), () => policy({ retries: 0 }), silentLogger, hooks(), circuits);
    await p.rewrapMany(reqs);
    expect(circuits.isDegraded('pa')).toBe(false);
    circuits.close();
  });

  function hooks() {
    return { sleep: async () => undefined, random: () => 0 };
  }
});
