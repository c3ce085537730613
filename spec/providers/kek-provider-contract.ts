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

    describe('batches', () => {
      const n = 50;
      const aads = (tag: string, version = 1): Buffer[] => Array.from({ length: n }, (_, i) => aadFor(`${tag}-${i}`, version));
      const values = <T>(results: Array<{ ok: boolean; value?: T; error?: KmsError }>): T[] => results.map((r, i) => {
        if (!r.ok) throw new Error(`item ${i} failed: ${r.error?.kind} ${r.error?.message}`);
        return r.value as T;
      });

      it('resolves an empty batch to [] without calling the backend', async () => {
        const before = counted.calls.get('wrapMany') ?? 0;
        expect(await guarded.wrapMany([])).toEqual([]);
        expect(await guarded.unwrapMany([])).toEqual([]);
        expect(await guarded.generateAndWrapMany([])).toEqual([]);
        expect(await guarded.rewrapMany([])).toEqual([]);
        expect(counted.calls.get('wrapMany') ?? 0).toBe(before);
      });

      it('wrapMany and unwrapMany round-trip DEKs of mixed sizes under KEKs of mixed sizes, in order', async () => {
        const kekOf = (i: number): KekRef => keks.get(([128, 192, 256] as const)[i % 3])!;
        const deks = Array.from({ length: n }, (_, i) => SecretBytes.random([16, 24, 32, 64][i % 4]));
        const a = aads('batch-wrap');
        try {
          const blobs = values(await guarded.wrapMany(deks.map((dek, i) => ({ kek: kekOf(i), dek, aad: a[i] }))));
          expect(blobs).toHaveLength(n);
          const backs = values(await guarded.unwrapMany(blobs.map((blob, i) => ({ kek: kekOf(i), blob, aad: a[i] }))));
          backs.forEach((b, i) => {
            expect(b.reveal().equals(deks[i].reveal())).toBe(true);
            b.dispose();
          });
          // A batch blob is an ordinary blob, and the other way round.
          const one = await guarded.unwrap({ kek: kekOf(7), blob: blobs[7], aad: a[7] });
          expect(one.reveal().equals(deks[7].reveal())).toBe(true);
          one.dispose();
          const single = await guarded.wrap({ kek: kekOf(3), dek: deks[3], aad: a[3] });
          const [back] = values(await guarded.unwrapMany([{ kek: kekOf(3), blob: single, aad: a[3] }]));
          expect(back.reveal().equals(deks[3].reveal())).toBe(true);
          back.dispose();
        } finally {
          deks.forEach((d) => d.dispose());
        }
      });

      it('wrapMany of the same request object twice returns two blobs that both unwrap to the DEK', async () => {
        const kek = keks.get(256)!;
        const dek = SecretBytes.random(32);
        const aad = aadFor('batch-same-object', 1);
        const req = { kek, dek, aad };
        try {
          const blobs = values(await guarded.wrapMany([req, req]));
          expect(blobs).toHaveLength(2);
          const backs = values(await guarded.unwrapMany(blobs.map((blob) => ({ kek, blob, aad }))));
          backs.forEach((b) => {
            expect(b.reveal().equals(dek.reveal())).toBe(true);
            b.dispose();
          });
        } finally {
          dek.dispose();
        }
      });

      it('generateAndWrapMany returns blobs of fresh, distinct DEKs of the requested sizes', async () => {
        const kek = keks.get(256)!;
        const a = aads('batch-gen');
        const blobs = values(await guarded.generateAndWrapMany(a.map((aad, i) => ({ kek, bytes: i % 2 ? 32 : 64, aad }))));
        const backs = values(await guarded.unwrapMany(blobs.map((blob, i) => ({ kek, blob, aad: a[i] }))));
        expect(backs.map((b) => b.length)).toEqual(a.map((_, i) => (i % 2 ? 32 : 64)));
        expect(new Set(backs.map((b) => b.reveal().toString('hex'))).size).toBe(n);
        backs.forEach((b) => b.dispose());
      });

      describe('with one tampered blob in a batch of 50', () => {
        const kek = (): KekRef => keks.get(256)!;
        const a = aads('batch-tamper');
        const a2 = aads('batch-tamper', 2);
        let deks: SecretBytes[];
        let blobs: Buffer[];
        beforeAll(async () => {
          deks = Array.from({ length: n }, () => SecretBytes.random(32));
          blobs = values(await guarded.wrapMany(deks.map((dek, i) => ({ kek: kek(), dek, aad: a[i] }))));
          blobs[17] = Buffer.from(blobs[17]);
          blobs[17][blobs[17].length >> 1] ^= 0x01;
        });
        afterAll(() => deks.forEach((d) => d.dispose()));

        it('unwrapMany fails that item as integrity, once, and returns the other 49 DEKs', async () => {
          const before = counted.calls.get('unwrapMany') ?? 0;
          const results = await guarded.unwrapMany(blobs.map((blob, i) => ({ kek: kek(), blob, aad: a[i] })));
          expect(counted.calls.get('unwrapMany')! - before).toBe(1);
          expect(results).toHaveLength(n);
          results.forEach((r, i) => {
            if (i === 17) {
              expect(r.ok).toBe(false);
              if (!r.ok) {
                expect(r.error.kind).toBe('integrity');
                expect(r.error.retryable).toBe(false);
              }
              return;
            }
            expect(r.ok).toBe(true);
            if (r.ok) {
              expect(r.value.reveal().equals(deks[i].reveal())).toBe(true);
              r.value.dispose();
            }
          });
        });

        it.each(['the same profile', 'another profile'])('rewrapMany on %s fails that item as integrity and rewraps the other 49', async (where) => {
          const v2 = ref(label('batch-v2'), where === 'the same profile' ? fx.profile : fx.otherProfile);
          await guarded.createKek(v2, 256);
          const results = await guarded.rewrapMany(blobs.map((blob, i) => ({ from: { kek: kek(), blob, aad: a[i] }, to: { kek: v2, aad: a2[i] } })));
          expect(results).toHaveLength(n);
          const bad = results[17];
          expect(bad.ok).toBe(false);
          if (!bad.ok) expect(bad.error.kind).toBe('integrity');
          const good = results.flatMap((r, i) => (r.ok ? [{ i, blob: r.value }] : []));
          expect(good.map((g) => g.i)).toEqual(Array.from({ length: n }, (_, i) => i).filter((i) => i !== 17));
          const backs = values(await guarded.unwrapMany(good.map((g) => ({ kek: v2, blob: g.blob, aad: a2[g.i] }))));
          backs.forEach((b, j) => {
            expect(b.reveal().equals(deks[good[j].i].reveal())).toBe(true);
            b.dispose();
          });
        });
      });

      it('fails only the items whose KEK is missing, as param', async () => {
        const kek = keks.get(128)!;
        const missing = ref(label('batch-missing'));
        const a = aads('batch-missing');
        const results = await guarded.generateAndWrapMany(a.map((aad, i) => ({ kek: i % 10 === 3 ? missing : kek, bytes: 32, aad })));
        results.forEach((r, i) => {
          expect(r.ok).toBe(i % 10 !== 3);
          if (!r.ok) {
            expect(r.error.kind).toBe('param');
            expect(r.error.message).toBe(`KEK not found: ${missing.label}`);
          }
        });
      });

      it('fails only the items with a bad DEK size, as param', async () => {
        const kek = keks.get(128)!;
        const results = await guarded.generateAndWrapMany([{ kek, bytes: 32, aad: aadFor('s', 1) }, { kek, bytes: 8, aad: aadFor('s', 1) }, { kek, bytes: 16, aad: aadFor('s', 1) }]);
        expect(results.map((r) => (r.ok ? 'ok' : r.error.kind))).toEqual(['ok', 'param', 'ok']);
      });

      it('refuses a batch whose items name different profiles as param', async () => {
        const kek = keks.get(128)!;
        const other = ref(kek.label, fx.otherProfile);
        const err = await rejection(guarded.generateAndWrapMany([{ kek, bytes: 32, aad: aadFor('p', 1) }, { kek: other, bytes: 32, aad: aadFor('p', 1) }]));
        expect(err.kind).toBe('param');
      });

      it('keeps 20 concurrent batches of 50 correct', async () => {
        const kek = keks.get(192)!;
        const batches = Array.from({ length: 20 }, (_, b) => aads(`conc-${b}`));
        const deks = batches.map((a) => a.map(() => SecretBytes.random(32)));
        try {
          const blobs = await Promise.all(batches.map(async (a, b) => values(await guarded.wrapMany(a.map((aad, i) => ({ kek, dek: deks[b][i], aad }))))));
          const backs = await Promise.all(blobs.map(async (bs, b) => values(await guarded.unwrapMany(bs.map((blob, i) => ({ kek, blob, aad: batches[b][i] }))))));
          backs.forEach((bs, b) => bs.forEach((x, i) => {
            expect(x.reveal().equals(deks[b][i].reveal())).toBe(true);
            x.dispose();
          }));
        } finally {
          deks.flat().forEach((d) => d.dispose());
        }
      });
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
