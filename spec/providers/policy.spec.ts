import { randomBytes } from 'node:crypto';
import { MasterKey } from '../../src/config/master-key';
import { KmsError } from '../../src/core/errors';
import { SecretBytes } from '../../src/core/secret-bytes';
import { silentLogger } from '../../src/core/logger';
import { callWithPolicy, operationSignal } from '../../src/providers/policy';
import type { BackendPolicy } from '../../src/providers/provider';
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
