import { randomBytes } from 'node:crypto';
import { isKmsError, type KmsError } from '../../src/core/errors';
import { SecretBytes } from '../../src/core/secret-bytes';
import { silentLogger } from '../../src/core/logger';
import type { BackendPolicy, HsmProfileConfig, KekBits, KekProvider, KekRef } from '../../src/providers/provider';
import { withPolicy } from '../../src/providers/registry';

/** What one provider under test needs: a fresh provider and two profiles it can use. */
export interface ContractFixture {
  provider: KekProvider;
  profile: HsmProfileConfig;
  /** A second profile of the same kind, for rewrap across profiles. */
  otherProfile: HsmProfileConfig;
  teardown(): Promise<void>;
}

/** Counts calls per method of a provider, so the retry policy's attempts can be asserted without timing. */
export function countingProvider(inner: KekProvider): { provider: KekProvider; calls: Map<string, number> } {
  const calls = new Map<string, number>();
  const provider = new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        calls.set(String(prop), (calls.get(String(prop)) ?? 0) + 1);
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { provider, calls };
}

/** Resolves to the KmsError a promise rejects with (fails the test if it resolves). */
export async function rejection(p: Promise<unknown>): Promise<KmsError> {
  try {
    await p;
  } catch (e) {
    if (isKmsError(e)) return e;
    throw e;
  }
  throw new Error('expected a KmsError, but the call succeeded');
}

const label = (what: string): string => `kek-${what}-${randomBytes(4).toString('hex')}`;
const aadFor = (volume: string, version: number): Buffer => Buffer.from(`volume|key-1|v${version}|${volume}`);
const RETRYING: BackendPolicy = { timeoutMs: 20_000, retries: 3, baseDelayMs: 1 };

/**
 * The behaviour every KekProvider must have, run against a real backend. `makeFixture` is called
 * once in beforeAll; KEK labels are random, so runs never collide.
 */
export function kekProviderContract(name: string, makeFixture: () => Promise<ContractFixture>): void {
  describe(`${name} provider (shared KekProvider contract)`, () => {
    let fx: ContractFixture;
    let counted: ReturnType<typeof countingProvider>;
    let guarded: KekProvider;
    const keks = new Map<KekBits, KekRef>();
    const ref = (lbl: string, profile = fx.profile): KekRef => ({ profile, label: lbl });

    beforeAll(async () => {
      fx = await makeFixture();
      counted = countingProvider(fx.provider);
      guarded = withPolicy(counted.provider, () => RETRYING, silentLogger);
      for (const bits of [128, 192, 256] as const) {
        const kek = ref(label(`b${bits}`));
        await guarded.createKek(kek, bits);
        keks.set(bits, kek);
      }
    });
    afterAll(async () => {
      await fx?.teardown();
    });

    describe.each([128, 192, 256] as const)('with a %i-bit KEK', (bits) => {
      it.each([16, 24, 32, 64])('wraps and unwraps a %i-byte DEK to the same bytes', async (size) => {
        const kek = keks.get(bits)!;
        const dek = SecretBytes.random(size);
        const aad = aadFor('vol-a', 1);
        const blob = await guarded.wrap({ kek, dek, aad });
        expect(blob.includes(dek.reveal())).toBe(false);
        const back = await guarded.unwrap({ kek, blob, aad });
        expect(back.length).toBe(size);
        expect(back.reveal().equals(dek.reveal())).toBe(true);
        back.dispose();
        dek.dispose();
      });
    });

    it('unwraps both of two concurrent wraps of the same DEK', async () => {
      const kek = keks.get(256)!;
      const dek = SecretBytes.random(32);
      const aad = aadFor('vol-b', 1);
      const [a, b] = await Promise.all([guarded.wrap({ kek, dek, aad }), guarded.wrap({ kek, dek, aad })]);
      for (const blob of [a, b]) {
        const back = await guarded.unwrap({ kek, blob, aad });
        expect(back.reveal().equals(dek.reveal())).toBe(true);
        back.dispose();
      }
      dek.dispose();
    });

    describe('when a blob was tampered with or moved', () => {
      let blob: Buffer;
      const aad = aadFor('vol-c', 1);
      beforeAll(async () => {
        blob = await guarded.generateAndWrap({ kek: keks.get(256)!, bytes: 32, aad });
      });

      it.each([0, 1, 'middle', 'last'] as const)('rejects a flipped byte at %s as integrity, with exactly one attempt', async (where) => {
        const bad = Buffer.from(blob);
        const i = where === 'middle' ? bad.length >> 1 : where === 'last' ? bad.length - 1 : where;
        bad[i] ^= 0x01;
        const before = counted.calls.get('unwrap') ?? 0;
        const err = await rejection(guarded.unwrap({ kek: keks.get(256)!, blob: bad, aad }));
        expect(err.kind).toBe('integrity');
        expect(err.retryable).toBe(false);
        expect(counted.calls.get('unwrap')! - before).toBe(1);
      });

      it.each([
        ['another volume', aadFor('vol-other', 1)],
        ['another KEK version', aadFor('vol-c', 2)],
        ['an empty aad', Buffer.alloc(0)],
      ])('rejects the blob under the aad of %s as integrity, with exactly one attempt', async (_what, otherAad) => {
        const before = counted.calls.get('unwrap') ?? 0;
        const err = await rejection(guarded.unwrap({ kek: keks.get(256)!, blob, aad: otherAad }));
        expect(err.kind).toBe('integrity');
        expect(err.retryable).toBe(false);
        expect(counted.calls.get('unwrap')! - before).toBe(1);
      });

      it('rejects the blob under another KEK as integrity', async () => {
        const err = await rejection(guarded.unwrap({ kek: keks.get(128)!, blob, aad }));
        expect(err.kind).toBe('integrity');
      });

      it('rejects a truncated blob as integrity', async () => {
        const err = await rejection(guarded.unwrap({ kek: keks.get(256)!, blob: blob.subarray(0, 20), aad }));
        expect(err.kind).toBe('integrity');
      });
    });

    it.each([16, 24, 32, 64])('generateAndWrap returns a blob that unwraps to a fresh %i-byte DEK', async (bytes) => {
      const kek = keks.get(192)!;
      const aad = aadFor('vol-d', 1);
      const a = await guarded.unwrap({ kek, blob: await guarded.generateAndWrap({ kek, bytes, aad }), aad });
      const b = await guarded.unwrap({ kek, blob: await guarded.generateAndWrap({ kek, bytes, aad }), aad });
      expect(a.length).toBe(bytes);
      expect(a.reveal().equals(b.reveal())).toBe(false);
      a.dispose();
      b.dispose();
    });

    describe('rewrap from KEK version 1 to version 2', () => {
      it.each(['the same profile', 'another profile'])('on %s unwraps with v2 and no longer with v1', async (where) => {
        const v1 = ref(label('v1'));
        const v2 = ref(label('v2'), where === 'the same profile' ? fx.profile : fx.otherProfile);
        await guarded.createKek(v1, 256);
        await guarded.createKek(v2, 256);
        const dek = SecretBytes.random(64);
        const old = await guarded.wrap({ kek: v1, dek, aad: aadFor('vol-e', 1) });
        const blob = await guarded.rewrap({ from: { kek: v1, blob: old, aad: aadFor('vol-e', 1) }, to: { kek: v2, aad: aadFor('vol-e', 2) } });
        const back = await guarded.unwrap({ kek: v2, blob, aad: aadFor('vol-e', 2) });
        expect(back.reveal().equals(dek.reveal())).toBe(true);
        back.dispose();
        dek.dispose();
        expect((await rejection(guarded.unwrap({ kek: v1, blob, aad: aadFor('vol-e', 2) }))).kind).toBe('integrity');
        expect((await rejection(guarded.unwrap({ kek: v2, blob, aad: aadFor('vol-e', 1) }))).kind).toBe('integrity');
      });

      it('refuses a source blob under the wrong aad as integrity and writes nothing', async () => {
        const kek = keks.get(256)!;
        const old = await guarded.generateAndWrap({ kek, bytes: 32, aad: aadFor('vol-f', 1) });
        const err = await rejection(guarded.rewrap({ from: { kek, blob: old, aad: aadFor('vol-x', 1) }, to: { kek, aad: aadFor('vol-f', 2) } }));
        expect(err.kind).toBe('integrity');
      });
    });

    describe('KEK lifecycle', () => {
      it('refuses a second KEK with the same label as param', async () => {
        const kek = ref(label('dup'));
        await guarded.createKek(kek, 128);
        const err = await rejection(guarded.createKek(kek, 256));
        expect(err.kind).toBe('param');
        expect(err.message).toBe(`Key already exists: ${kek.label}`);
      });

      it('destroys idempotently; then hasKek is false and unwrap fails as KEK not found', async () => {
        const kek = ref(label('gone'));
        await guarded.createKek(kek, 256);
        expect(await guarded.hasKek(kek)).toBe(true);
        const aad = aadFor('vol-g', 1);
        const blob = await guarded.generateAndWrap({ kek, bytes: 32, aad });
        await guarded.destroyKek(kek);
        await guarded.destroyKek(kek);
        expect(await guarded.hasKek(kek)).toBe(false);
        const err = await rejection(guarded.unwrap({ kek, blob, aad }));
        expect(err.kind).toBe('param');
        expect(err.message).toBe(`KEK not found: ${kek.label}`);
        expect(err.retryable).toBe(false);
      });

      it('says hasKek false for a label never created', async () => {
        expect(await guarded.hasKek(ref(label('never')))).toBe(false);
      });
    });

    // Correctness under concurrency only: the event loop's lag is a figure, measured by
    // bench:providers (its "max loop lag" column), never a bound a loaded machine can break here.
    it('keeps 1,000 concurrent wraps correct', async () => {
      const kek = keks.get(256)!;
      const deks = Array.from({ length: 1000 }, () => SecretBytes.random(32));
      try {
        const blobs = await Promise.all(deks.map((dek, i) => guarded.wrap({ kek, dek, aad: aadFor(`vol-${i}`, 1) })));
        const backs = await Promise.all(blobs.map((blob, i) => guarded.unwrap({ kek, blob, aad: aadFor(`vol-${i}`, 1) })));
        backs.forEach((b, i) => {
          expect(b.reveal().equals(deks[i].reveal())).toBe(true);
          b.dispose();
        });
      } finally {
        deks.forEach((d) => d.dispose());
      }
    });

    it('prints no key bytes through SecretBytes results', async () => {
      const kek = keks.get(128)!;
      const aad = aadFor('vol-h', 1);
      const back = await guarded.unwrap({ kek, blob: await guarded.generateAndWrap({ kek, bytes: 32, aad }), aad });
      expect(String(back)).toBe('SecretBytes(32 bytes)');
      expect(JSON.stringify({ back })).not.toContain(back.reveal().toString('hex'));
      back.dispose();
    });
  });
}
