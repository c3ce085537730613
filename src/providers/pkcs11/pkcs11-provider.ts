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
 * Every PKCS#11 call runs on one of the library's own threads (library-thread.ts, thread/; N per
 * library, `threads` detail or KMS_PKCS11_THREADS, default 1): each operation, or each batch of them,
 * is one message to the least busy thread and one reply, and runs whole and synchronously in that
 * thread (session, login, lookup, crypto, clean-up). The event loop makes no PKCS#11 call at all, and
 * a call that hangs in the HSM is abandoned with its thread, which is replaced.
 */
import { isKeyBits, KEY_BITS_TEXT } from '../../core/key-bits';
import { KmsError } from '../../core/errors';
import { SecretBytes } from '../../core/secret-bytes';
import type { Logger } from '../../core/logger';
import { batchProfile } from '../batch';
import { operationProgress, operationSignal, operationStallMs } from '../policy';
import type {
  GenerateRequest, HsmProfileConfig, ItemResult, KekBits, KekProvider, KekRef, RewrapRequest, UnwrapRequest, WrapRequest,
} from '../provider';
import { acquireLibraryPool, releaseLibraryPool, type LibraryPool, type OkReply } from './library-thread';
import { fingerprintOf, parsePkcs11Profile, pkcs11ProfileProblems } from './profile';
import { pack, unpack, zero } from './thread/packing';
import { fromWire, type Operation, type ProfileConnect } from './thread/protocol';

/** Options of the PKCS#11 provider. */
export interface Pkcs11ProviderOptions {
  logger: Logger;
  /**
   * How long the library thread may make no progress, while an operation waits on it, before it
   * counts as hung and is replaced. Calls under the registry's policy use the operation timeout
   * instead. @defaultValue undefined: direct calls wait as long as the HSM takes.
   */
  stallMs?: number;
  /**
   * Threads per PKCS#11 library for profiles without a `threads` detail (KMS_PKCS11_THREADS).
   * @defaultValue 1: SoftHSM and most local modules serialise calls, so more threads do not help them.
   */
  threads?: number;
}

/** What the provider keeps per connected profile: the parsed details (with the PIN) and the library's thread pool. */
interface ProfileState {
  readonly key: string;
  readonly name: string;
  readonly fingerprint: string;
  readonly connect: ProfileConnect;
  readonly thread: LibraryPool;
}

/** Keeps profiles of two providers in one process apart in the shared library threads. */
let providers = 0;

/** Per-item results of a batch reply: `value(i, part)` builds item i's value from its part of the reply. */
function itemsOf<T>(reply: OkReply, parts: Buffer[], value: (part: Buffer) => T): ItemResult<T>[] {
  return (reply.errors ?? []).map((e, i) => (e ? { ok: false as const, error: fromWire(e) } : { ok: true as const, value: value(parts[i]) }));
}

const single = <T>([r]: ItemResult<T>[]): T => {
  if (!r) throw new KmsError('internal', 'The HSM thread returned no result');
  if (!r.ok) throw r.error;
  return r.value;
};

/**
 * Creates the PKCS#11 provider. KEKs are generated in the token (CKA_TOKEN, CKA_PRIVATE,
 * CKA_SENSITIVE, not extractable) and never leave it. Safe to call concurrently: operations queue
 * for the library's threads (the least busy one), each running them one at a time. Does not retry;
 * the registry's policy does.
 */
export function createPkcs11Provider(opts: Pkcs11ProviderOptions): KekProvider {
  const id = `pkcs11-${++providers}`;
  const states = new Map<string, ProfileState>();
  // A digest per details object: callers usually pass the same profile object again and again.
  const fingerprints = new WeakMap<object, string>();
  let closed = false;

  const drop = async (state: ProfileState): Promise<void> => {
    await state.thread.forget(state.key);
    await releaseLibraryPool(state.thread);
  };

  /** The profile's state, (re)built when its details changed. Throws 'param' for invalid details. */
  const stateFor = (profile: HsmProfileConfig): ProfileState => {
    if (closed) throw new KmsError('unavailable', 'The PKCS#11 provider is closed');
    let fingerprint = fingerprints.get(profile.details);
    if (fingerprint === undefined) {
      fingerprint = fingerprintOf(profile);
      fingerprints.set(profile.details, fingerprint);
    }
    const existing = states.get(profile.id);
    if (existing?.fingerprint === fingerprint) return existing;
    const parsed = parsePkcs11Profile(profile.name, profile.details);
    if (existing) {
      states.delete(profile.id);
      void drop(existing);
    }
    const state: ProfileState = {
      key: `${id}/${profile.id}`, name: profile.name, fingerprint,
      connect: { name: profile.name, fingerprint, profile: parsed },
      thread: acquireLibraryPool(parsed.library, parsed.threads ?? opts.threads ?? 1, opts.logger),
    };
    states.set(profile.id, state);
    return state;
  };

  /** One hop to a library thread: the operation runs there whole. */
  const call = async (profile: HsmProfileConfig, op: Operation): Promise<OkReply> => {
    let state: ProfileState;
    try {
      state = stateFor(profile);
    } catch (e) {
      if (op.kind === 'wrap') zero(op.secret);
      throw e;
    }
    const stallMs = operationStallMs() ?? opts.stallMs;
    return state.thread.call(state.key, () => state.connect, state.fingerprint, op, { signal: operationSignal(), stallMs, progress: operationProgress() });
  };

  const wrapMany = async (reqs: readonly WrapRequest[]): Promise<ItemResult<Buffer>[]> => {
    const profile = batchProfile(reqs, (r) => r.kek.profile);
    if (!profile) return [];
    // The DEKs cross to the thread in one fresh buffer that is moved (not copied) there and zeroed after use.
    const secret = pack(reqs.map((r) => r.dek.reveal()));
    const reply = await call(profile, { kind: 'wrap', labels: reqs.map((r) => r.kek.label), data: pack(reqs.map((r) => r.aad)), secret });
    return itemsOf(reply, unpack(reply.data!), (blob) => Buffer.from(blob));
  };

  const unwrapMany = async (reqs: readonly UnwrapRequest[]): Promise<ItemResult<SecretBytes>[]> => {
    const profile = batchProfile(reqs, (r) => r.kek.profile);
    if (!profile) return [];
    const reply = await call(profile, { kind: 'unwrap', labels: reqs.map((r) => r.kek.label), data: pack(reqs.flatMap((r) => [r.blob, r.aad])) });
    try {
      return itemsOf(reply, unpack(reply.secret!), (plain) => SecretBytes.copyOf(plain));
    } finally {
      zero(reply.secret);
    }
  };

  const generateAndWrapMany = async (reqs: readonly GenerateRequest[]): Promise<ItemResult<Buffer>[]> => {
    const profile = batchProfile(reqs, (r) => r.kek.profile);
    if (!profile) return [];
    const reply = await call(profile, { kind: 'generate', labels: reqs.map((r) => r.kek.label), sizes: reqs.map((r) => r.bytes), data: pack(reqs.map((r) => r.aad)) });
    return itemsOf(reply, unpack(reply.data!), (blob) => Buffer.from(blob));
  };

  /**
   * Within one profile the DEK never leaves the HSM. Across profiles (another token or library) it
   * must: unwrapped on the source, wrapped on the target, the plaintexts zeroed right after.
   */
  const rewrapMany = async (reqs: readonly RewrapRequest[]): Promise<ItemResult<Buffer>[]> => {
    const from = batchProfile(reqs, (r) => r.from.kek.profile, 'source KEK');
    const to = batchProfile(reqs, (r) => r.to.kek.profile, 'target KEK');
    if (!from || !to) return [];
    if (from.id === to.id) {
      const reply = await call(from, {
        kind: 'rewrap', fromLabels: reqs.map((r) => r.from.kek.label), toLabels: reqs.map((r) => r.to.kek.label),
        data: pack(reqs.flatMap((r) => [r.from.blob, r.from.aad, r.to.aad])),
      });
      return itemsOf(reply, unpack(reply.data!), (blob) => Buffer.from(blob));
    }
    const plain = await unwrapMany(reqs.map((r) => r.from));
    try {
      const ok = plain.flatMap((p, i) => (p.ok ? [i] : []));
      const wrapped = ok.length ? await wrapMany(ok.map((i) => ({ kek: reqs[i].to.kek, dek: (plain[i] as { value: SecretBytes }).value, aad: reqs[i].to.aad }))) : [];
      const byItem = new Map(ok.map((i, j) => [i, wrapped[j]]));
      return plain.map((p, i) => (p.ok ? byItem.get(i)! : p));
    } finally {
      for (const p of plain) if (p.ok) p.value.dispose();
    }
  };

  return {
    kind: 'pkcs11',
    capabilities: { inBackendRewrap: true },

    validateProfile: (details) => pkcs11ProfileProblems(details),

    async probe(profile) {
      await call(profile, { kind: 'probe' });
    },

    async createKek(kek: KekRef, bits: KekBits) {
      if (!isKeyBits(bits)) throw new KmsError('param', `KEK size must be ${KEY_BITS_TEXT} bits (got ${bits})`);
      await call(kek.profile, { kind: 'createKek', label: kek.label, bits });
      opts.logger.info('PKCS#11 KEK created', { label: kek.label, bits, profile: kek.profile.id });
    },

    async destroyKek(kek) {
      await call(kek.profile, { kind: 'destroyKek', label: kek.label });
    },

    async hasKek(kek) {
      return (await call(kek.profile, { kind: 'hasKek', label: kek.label })).value === true;
    },

    wrap: async (req) => single(await wrapMany([req])),
    unwrap: async (req) => single(await unwrapMany([req])),
    generateAndWrap: async (req) => single(await generateAndWrapMany([req])),
    rewrap: async (req) => single(await rewrapMany([req])),

    wrapMany,
    unwrapMany,
    generateAndWrapMany,
    rewrapMany,

    async invalidateProfile(profileId) {
      const state = states.get(profileId);
      if (!state) return;
      states.delete(profileId);
      await drop(state);
    },

    sessionStats() {
      return [...states.values()].map((s) => {
        const st = s.thread.stats(s.key) ?? { open: 0, idle: 0 };
        return { profile: s.name, inUse: st.open - st.idle, idle: st.idle };
      });
    },

    async close() {
      closed = true;
      const all = [...states.values()];
      states.clear();
      await Promise.all(all.map(drop));
    },
  };
}
