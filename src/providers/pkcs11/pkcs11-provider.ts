/**
 * The PKCS#11 KEK backend.
 *
 * Mechanism: RFC 5649 AES key wrap with padding (CKM_AES_KEY_WRAP_PAD, through C_WrapKey and
 * C_UnwrapKey) plus HMAC-SHA256 (CKM_SHA256_HMAC, C_Sign/C_Verify) computed inside the HSM by a second
 * token key, `<label>.mac`, created with each KEK. The MAC covers format ‖ u32 aad length ‖ aad ‖
 * wrapped, so the blob (format 0x11 ‖ wrapped ‖ mac) is bound to its context. Why:
 *  - CloudStack's PKCS#11 provider wraps with AES-CBC and no MAC: a flipped bit unwraps to a wrong
 *    key silently. KWP has an integrity check, and the HMAC adds what KWP lacks, the aad binding.
 *  - AES-GCM through C_Encrypt would bind aad natively, but needs the DEK as plaintext bytes in
 *    process memory for every operation. Key wrap works on key *objects*, so generateAndWrap and
 *    rewrap within a profile never expose the DEK to this process, and a C_WrapKey-only HSM (no
 *    caller-IV GCM, e.g. AWS CloudHSM) is served too.
 *  - SoftHSM 2.6.1's C_WrapKey accepts only CKM_AES_KEY_WRAP(_PAD), CBC and RSA; it has
 *    CKM_AES_KEY_WRAP_PAD (RFC 5649, 0x210A), not the PKCS#11 v3.0 CKM_AES_KEY_WRAP_KWP (0x210B)
 *    (reference/kms-crypto-and-pkcs11.md §5.3). Verified here: 16/24/32/64-byte generic-secret DEKs
 *    wrap and unwrap, a bad MAC gives CKR_SIGNATURE_INVALID, a tampered wrap CKR_GENERAL_ERROR.
 *  - The MAC is verified before C_UnwrapKey, so a tampered or swapped blob never reaches the
 *    unwrap (no padding oracle), and the failure is 'integrity', never retried.
 * Crypto runs through the pkcs11js *Async calls (libuv threads); only µs-scale object management
 * (find, create, destroy, *Init, attribute reads) is synchronous, because pkcs11js has no async form.
 */
import { randomBytes } from 'node:crypto';
import { isKeyBits, KEY_BITS_TEXT } from '../../core/key-bits';
import * as pkcs11js from 'pkcs11js';
import { KmsError } from '../../core/errors';
import { SecretBytes } from '../../core/secret-bytes';
import type { Logger } from '../../core/logger';
import type { HsmProfileConfig, KekBits, KekProvider, KekRef } from '../provider';
import { operationSignal } from '../policy';
import { ckrName, pkcs11Error } from './errors';
import { enterModule, leaveModule, ownTurn, recoverModule, threadGate } from './module';
import {
  dekTemplate, HMAC, joinBlob, KWP, kekTemplate, MAC_BYTES, macInput, macKeyTemplate, macLabel, MAX_DEK_BYTES,
  MIN_DEK_BYTES, pinned, splitBlob, sync,
} from './mechanisms';
import { pkcs11ProfileProblems } from './profile';
import {
  closeProfileState, findByLabel, fingerprintOf, isStale, kekHandles, openProfileState, type KekHandles, type ProfileState,
} from './profile-state';

/** Options of the PKCS#11 provider. */
export interface Pkcs11ProviderOptions {
  logger: Logger;
  /** How long a call waits for a free session before failing as 'unavailable'. @defaultValue 5000 */
  acquireTimeoutMs?: number;
}

const STALE_HANDLE = new Set(['CKR_KEY_HANDLE_INVALID', 'CKR_OBJECT_HANDLE_INVALID']);

/** Codes after which only C_Finalize and C_Initialize bring the library back (device gone, HSM restarted). */
const NEEDS_REINIT = new Set(['CKR_DEVICE_REMOVED', 'CKR_TOKEN_NOT_PRESENT', 'CKR_CRYPTOKI_NOT_INITIALIZED']);

const causeCkr = (e: unknown): string => ckrName((e as { cause?: unknown })?.cause) ?? ckrName(e) ?? '';

/** Starts a pkcs11js *Async call once the process's HSM thread budget allows (see ThreadGate). */
const offThread = <T>(start: () => Promise<T>): Promise<T> => threadGate.run(start, operationSignal());

/**
 * Creates the PKCS#11 provider. KEKs are generated in the token (CKA_TOKEN, CKA_PRIVATE,
 * CKA_SENSITIVE, not extractable) and never leave it. Safe to call concurrently: each call holds one
 * pooled session of its profile for its whole duration. Does not retry; the registry's policy does.
 */
export function createPkcs11Provider(opts: Pkcs11ProviderOptions): KekProvider {
  const acquireTimeoutMs = opts.acquireTimeoutMs ?? 5000;
  const states = new Map<string, ProfileState>();
  let closed = false;

  const stateFor = (profile: HsmProfileConfig): ProfileState => {
    if (closed) throw new KmsError('unavailable', 'The PKCS#11 provider is closed');
    const existing = states.get(profile.id);
    if (existing && existing.fingerprint === fingerprintOf(profile)) {
      // While the library is being initialised again the old state is kept: enterModule waits, then
      // the caller comes back here and the state is rebuilt on the new generation.
      if (!isStale(existing) || existing.module.recovery) return existing;
    }
    if (existing) {
      states.delete(profile.id);
      void closeProfileState(existing);
    }
    const state = openProfileState(profile, acquireTimeoutMs);
    states.set(profile.id, state);
    return state;
  };

  /**
   * Runs fn on a pooled session of the profile, on the library's current generation. Waits while the
   * library is being initialised again; a fault that only C_Finalize/C_Initialize cures starts that
   * recovery (once per library, see recoverModule) and is thrown as retryable for the policy to retry.
   */
  const use = async <T>(profile: HsmProfileConfig, fn: (state: ProfileState, session: Buffer) => Promise<T>): Promise<T> => {
    const signal = operationSignal();
    for (;;) {
      await ownTurn();
      const state = stateFor(profile);
      const generation = await enterModule(state.module, signal);
      try {
        if (generation !== state.generation || states.get(profile.id) !== state) continue;
        return await state.pool.withSession((session) => fn(state, session), signal);
      } catch (e) {
        if (NEEDS_REINIT.has(causeCkr(e))) startRecovery(state, generation);
        throw e;
      } finally {
        leaveModule(state.module);
      }
    }
  };

  const startRecovery = (state: ProfileState, generation: number): void => {
    if (state.module.recovery || state.module.generation !== generation) return;
    opts.logger.warn('HSM library lost its device or sessions; finalising and initialising it again', { library: state.module.path, profile: state.name });
    void recoverModule(state.module, generation, {
      onRecovered: (attempts) => opts.logger.info('HSM library initialised again', { library: state.module.path, attempts }),
      onAttemptFailed: (error, attempt) => opts.logger.warn('HSM library did not initialise yet', { library: state.module.path, attempt, error: error.message }),
    });
  };

  /** Runs fn on a session of the KEK's profile with its handles; a stale handle drops the cache entry. */
  const withKek = <T>(kek: KekRef, fn: (lib: pkcs11js.PKCS11, session: Buffer, h: KekHandles) => Promise<T>): Promise<T> =>
    use(kek.profile, async (state, session) => {
      const handles = kekHandles(state, session, kek.label);
      try {
        return await fn(state.module.lib, session, handles);
      } catch (e) {
        if (STALE_HANDLE.has(causeCkr(e))) state.handles.delete(kek.label);
        throw e;
      }
    });

  const destroyQuietly = (lib: pkcs11js.PKCS11, session: Buffer, handle: Buffer): void => {
    try {
      lib.C_DestroyObject(session, handle);
    } catch {
      // Session objects also vanish when the session closes; the original outcome is what matters.
    }
  };

  /** Wraps DEK object `dek` under the KEK and MACs the result: the blob. */
  const wrapObject = async (lib: pkcs11js.PKCS11, session: Buffer, h: KekHandles, dek: Buffer, aad: Buffer): Promise<Buffer> => {
    const out = Buffer.alloc(MAX_DEK_BYTES + 16);
    const wrapped = await pinned('C_WrapKey', offThread(() => lib.C_WrapKeyAsync(session, KWP, h.kek, dek, out)), KWP, out, dek, h.kek);
    const input = macInput(aad, wrapped);
    const macOut = Buffer.alloc(MAC_BYTES);
    sync('C_SignInit', () => lib.C_SignInit(session, HMAC, h.mac));
    const mac = await pinned('C_Sign', offThread(() => lib.C_SignAsync(session, input, macOut)), HMAC, input, macOut, h.mac);
    return joinBlob(wrapped, mac);
  };

  /** Verifies the blob's MAC under the KEK's HMAC key, then unwraps it to a session object (caller destroys). */
  const unwrapObject = async (lib: pkcs11js.PKCS11, session: Buffer, h: KekHandles, label: string, blob: Buffer, aad: Buffer, readable: boolean): Promise<Buffer> => {
    const { wrapped, mac } = splitBlob(blob, label);
    const input = macInput(aad, wrapped);
    sync('C_VerifyInit', () => lib.C_VerifyInit(session, HMAC, h.mac));
    const ok = await pinned('C_Verify', offThread(() => lib.C_VerifyAsync(session, input, mac)), HMAC, input, mac, blob, h.mac);
    if (!ok) throw new KmsError('integrity', `Wrapped key failed authentication under KEK ${label}: pkcs11 C_Verify returned false`, { retryable: false });
    const template = dekTemplate({ readable });
    return pinned('C_UnwrapKey', offThread(() => lib.C_UnwrapKeyAsync(session, KWP, h.kek, wrapped, template)), KWP, wrapped, template, blob, h.kek);
  };

  const wrapBytes = (kek: KekRef, dek: Buffer, aad: Buffer): Promise<Buffer> => {
    if (dek.length < MIN_DEK_BYTES || dek.length > MAX_DEK_BYTES) {
      return Promise.reject(new KmsError('param', `DEK length must be ${MIN_DEK_BYTES} to ${MAX_DEK_BYTES} bytes (got ${dek.length})`));
    }
    return withKek(kek, async (lib, session, h) => {
      const obj = sync('C_CreateObject', () => lib.C_CreateObject(session, dekTemplate({ readable: false, value: dek })));
      try {
        return await wrapObject(lib, session, h, obj, aad);
      } finally {
        destroyQuietly(lib, session, obj);
      }
    });
  };

  const unwrapBytes = (kek: KekRef, blob: Buffer, aad: Buffer): Promise<SecretBytes> =>
    withKek(kek, async (lib, session, h) => {
      const obj = await unwrapObject(lib, session, h, kek.label, blob, aad, true);
      try {
        const [attr] = sync('C_GetAttributeValue', () => lib.C_GetAttributeValue(session, obj, [{ type: pkcs11js.CKA_VALUE }]));
        const value = attr.value as Buffer;
        try {
          return SecretBytes.copyOf(value);
        } finally {
          value.fill(0);
        }
      } finally {
        destroyQuietly(lib, session, obj);
      }
    });

  return {
    kind: 'pkcs11',
    capabilities: { inBackendRewrap: true },

    validateProfile: (details) => pkcs11ProfileProblems(details),

    async probe(profile) {
      await use(profile, async (state, session) => {
        findByLabel(state, session, '');
        const lib = state.module.lib;
        const digest = { mechanism: pkcs11js.CKM_SHA256 };
        sync('C_DigestInit', () => lib.C_DigestInit(session, digest));
        const input = Buffer.from('kms-probe');
        const out = Buffer.alloc(32);
        await pinned('C_Digest', offThread(() => lib.C_DigestAsync(session, input, out)), digest, input, out);
      });
    },

    async createKek(kek: KekRef, bits: KekBits) {
      if (!isKeyBits(bits)) throw new KmsError('param', `KEK size must be ${KEY_BITS_TEXT} bits (got ${bits})`);
      await use(kek.profile, async (state, session) => {
        const lib = state.module.lib;
        if (findByLabel(state, session, kek.label).length || findByLabel(state, session, macLabel(kek.label)).length) {
          throw new KmsError('param', `Key already exists: ${kek.label}`);
        }
        const id = randomBytes(16);
        const aesGen = { mechanism: pkcs11js.CKM_AES_KEY_GEN };
        const kt = kekTemplate(kek.label, id, bits);
        const handle = await pinned('C_GenerateKey', offThread(() => lib.C_GenerateKeyAsync(session, aesGen, kt)), aesGen, kt, id);
        try {
          const macGen = { mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN };
          const mt = macKeyTemplate(kek.label, id);
          await pinned('C_GenerateKey', offThread(() => lib.C_GenerateKeyAsync(session, macGen, mt)), macGen, mt, id);
        } catch (e) {
          destroyQuietly(lib, session, handle);
          throw e;
        }
      });
      opts.logger.info('PKCS#11 KEK created', { label: kek.label, bits, profile: kek.profile.id });
    },

    async destroyKek(kek) {
      await use(kek.profile, async (state, session) => {
        state.handles.delete(kek.label);
        for (const label of [kek.label, macLabel(kek.label)]) {
          for (const h of findByLabel(state, session, label)) {
            try {
              state.module.lib.C_DestroyObject(session, h);
            } catch (e) {
              if (!STALE_HANDLE.has(ckrName(e) ?? '')) throw pkcs11Error('C_DestroyObject', e);
            }
          }
        }
        state.handles.delete(kek.label);
      });
    },

    async hasKek(kek) {
      return use(kek.profile, async (state, session) =>
        findByLabel(state, session, kek.label).length > 0 && findByLabel(state, session, macLabel(kek.label)).length > 0);
    },

    wrap: ({ kek, dek, aad }) => wrapBytes(kek, dek.reveal(), aad),

    unwrap: ({ kek, blob, aad }) => unwrapBytes(kek, blob, aad),

    async generateAndWrap({ kek, bytes, aad }) {
      if (!Number.isInteger(bytes) || bytes < MIN_DEK_BYTES || bytes > MAX_DEK_BYTES) {
        throw new KmsError('param', `DEK length must be ${MIN_DEK_BYTES} to ${MAX_DEK_BYTES} bytes (got ${bytes})`);
      }
      return withKek(kek, async (lib, session, h) => {
        const gen = { mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN };
        const t = dekTemplate({ readable: false, bytes });
        const obj = await pinned('C_GenerateKey', offThread(() => lib.C_GenerateKeyAsync(session, gen, t)), gen, t);
        try {
          return await wrapObject(lib, session, h, obj, aad);
        } finally {
          destroyQuietly(lib, session, obj);
        }
      });
    },

    async rewrap({ from, to }) {
      if (from.kek.profile.id !== to.kek.profile.id) {
        const dek = await unwrapBytes(from.kek, from.blob, from.aad);
        try {
          return await wrapBytes(to.kek, dek.reveal(), to.aad);
        } finally {
          dek.dispose();
        }
      }
      return use(from.kek.profile, async (state, session) => {
        const lib = state.module.lib;
        const src = kekHandles(state, session, from.kek.label);
        const dst = kekHandles(state, session, to.kek.label);
        const obj = await unwrapObject(lib, session, src, from.kek.label, from.blob, from.aad, false);
        try {
          return await wrapObject(lib, session, dst, obj, to.aad);
        } finally {
          destroyQuietly(lib, session, obj);
        }
      });
    },

    async invalidateProfile(profileId) {
      const state = states.get(profileId);
      if (!state) return;
      states.delete(profileId);
      await closeProfileState(state);
    },

    sessionStats() {
      return [...states.values()].map((s) => ({ profile: s.name, inUse: s.pool.size - s.pool.idle, idle: s.pool.idle }));
    },

    async close() {
      closed = true;
      const all = [...states.values()];
      states.clear();
      await Promise.all(all.map((s) => closeProfileState(s)));
    },
  };
}
