/**
 * The KMIP KEK backend: KEKs are AES keys on a KMIP key manager, created there (Create with a Name
 * that is the KEK label, which carries the key and version, usage mask Encrypt|Decrypt), activated,
 * and used only through the server's own Encrypt and Decrypt. Their material is never fetched (no Get).
 *
 * Mechanism: AES-GCM on the server (KMIP 1.4 §4.29/§4.30) with a 96-bit IV chosen here at random per
 * wrap, a 128-bit tag, and the caller's aad (KMS key, KEK version, volume) as the Authenticated
 * Encryption Additional Data. The blob is format 0x21 ‖ IV(12) ‖ ciphertext ‖ tag(16). The server
 * checks the tag over aad and ciphertext before it returns a plaintext, so a tampered, moved or
 * re-versioned blob fails as 'integrity' and is never retried. PyKMIP 0.10 carries both fields in
 * KMIP 1.4 messages (its Encrypt/Decrypt payloads read them from 1.4 on). Random IVs under one KEK
 * version stay far below GCM's 2^32-invocation bound: a version wraps each DEK a few times at most.
 *
 * KMIP 1.2 and 1.3 have no field for GCM's aad or tag. A profile speaking them wraps with
 * encrypt-then-MAC instead, both halves on the server: AES-CBC (PKCS#5 padding, random 128-bit IV)
 * under the KEK, then AES-CMAC (the MAC operation, KMIP 1.2) under a second server key
 * `<label>.mac` created with the KEK (usage MAC Generate|Verify only), over
 * format ‖ u32 aad length ‖ aad ‖ IV ‖ ciphertext. The blob is 0x22 ‖ IV(16) ‖ ciphertext ‖ MAC(16).
 * It is as safe as GCM here: the MAC, under an independent key that never leaves the server, binds
 * the aad and every ciphertext bit, and it is checked (in constant time) before Decrypt is sent, so
 * a tampered or moved blob never reaches the CBC decryption (no padding oracle) and fails as
 * 'integrity'. It costs one more round trip per wrap and unwrap.
 *
 * The DEK passes through this process (generateAndWrap draws it here; rewrap is Decrypt then
 * Encrypt, as KMIP 1.x cannot feed one operation's output to the next), and is zeroed after use.
 * Label → Unique Identifier lookups (Locate) are cached per profile and dropped on destroy or when
 * the server answers Item Not Found.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { isKeyBits, KEY_BITS_TEXT } from '../../core/key-bits';
import { KmsError } from '../../core/errors';
import { SecretBytes } from '../../core/secret-bytes';
import type { Logger } from '../../core/logger';
import { batchProfile } from '../batch';
import { operationProgress, operationSignal, operationStallMs } from '../policy';
import { isUnknownHost } from './connection';
import type {
  GenerateRequest, HsmProfileConfig, ItemResult, KekBits, KekProvider, KekRef, RewrapRequest, UnwrapRequest, WrapRequest,
} from '../provider';
import { KmipClient } from './client';
import {
  activate, createAesKey, createCmacKey, decryptCbc, decryptGcm, encryptCbc, encryptedData, mac, macResult, decryptResult, destroy, discoverVersions, discoveredVersions, encryptGcm, encryptResult,
  GCM_TAG_BYTES, locateByName, locatedIds, payloadOf, queriedOperations, queryOperations, REASON_AUTHENTICATION, REASON_CRYPTOGRAPHIC_FAILURE,
  LIVE_STATES, locateByNameIn, REASON_GENERAL_FAILURE, REASON_ITEM_NOT_FOUND, REASON_PERMISSION_DENIED, ResultReason, revoke, uniqueIdOf, versionText,
  type RequestItem, type ResponseItem,
} from './messages';
import { fingerprintOf } from '../pkcs11/profile';
import { kmipProfileProblems, parseKmipProfile } from './profile';
import { TtlvError } from './ttlv';

/** Options of the KMIP provider. */
export interface KmipProviderOptions {
  logger: Logger;
  /**
   * How long one KMIP request may go unanswered when called outside the policy (inside it, a
   * request may go unanswered for the operation's stall time, kms.operation.timeout.sec). @defaultValue 60000
   */
  requestTimeoutMs?: number;
}

const FORMAT_GCM = 0x21;
const FORMAT_CBC_CMAC = 0x22;
const IV_BYTES = 12;
const CBC_IV_BYTES = 16;
const CMAC_BYTES = 16;
/** The smallest blob: format, IV, a 16-byte DEK, tag. */
const MIN_BLOB = 1 + IV_BYTES + 16 + GCM_TAG_BYTES;
/** The smallest CBC blob: format, IV, a 16-byte DEK padded to 32, MAC. */
const MIN_CBC_BLOB = 1 + CBC_IV_BYTES + 32 + CMAC_BYTES;
const macLabel = (label: string): string => `${label}.mac`;

/** What the CMAC of a CBC blob covers: format ‖ u32 aad length ‖ aad ‖ IV ‖ ciphertext. */
function cmacInput(aad: Buffer, ivAndCiphertext: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(aad.length);
  return Buffer.concat([Buffer.of(FORMAT_CBC_CMAC), len, aad, ivAndCiphertext]);
}

const notFound = (label: string): KmsError => new KmsError('param', `KEK not found: ${label}`);

interface ProfileState {
  readonly fingerprint: string;
  readonly client: KmipClient;
  /** KEK label → the server's Unique Identifier. */
  readonly ids: Map<string, string>;
}

/**
 * PyKMIP 0.10 answers an exception that is not a KMIP error (cryptography's InvalidTag for a wrong
 * GCM tag or aad among them) as Operation Failed / General Failure with this message, in the failing
 * item's own batch item (kmip/services/server/engine.py, _process_batch).
 */
const PYKMIP_UNEXPECTED_FAILURE = 'Operation failed. See the server logs for more information.';

/**
 * The KmsError of a failed item. A refused credential or permission is 'auth'. Only a Decrypt item's
 * own failure that says the ciphertext did not authenticate is 'integrity' (never retried): a
 * Cryptographic Failure, or PyKMIP's General Failure for a wrong tag. A whole-request failure copied
 * to the item, or an item the server never answered, is 'unavailable' (retried); so is an item's own
 * General Failure otherwise. Other item failures are 'provider', not retried.
 * Server messages are included cut short: they name fields and states, never key material.
 */
export function itemError(profile: string, op: string, item: Extract<ResponseItem, { ok: false }>, label?: string): KmsError {
  const reason = ResultReason[item.reason] ?? `reason ${item.reason}`;
  const said = item.message ? `: ${item.message.slice(0, 160)}` : '';
  if (item.reason === REASON_AUTHENTICATION || item.reason === REASON_PERMISSION_DENIED) {
    return new KmsError('auth', `KMIP ${op} refused by the server of HSM profile ${profile} (${reason}${said}); check the client certificate, username and password`, { retryable: false });
  }
  if (item.scope !== 'item') {
    const why = item.scope === 'unanswered' ? 'was not answered by the server' : `failed with the whole request (${reason}${said})`;
    return new KmsError('unavailable', `KMIP ${op} on HSM profile ${profile} ${why}`);
  }
  if (item.reason === REASON_ITEM_NOT_FOUND && label) return notFound(label);
  if (op === 'Decrypt' && item.operation === 'Decrypt' && (item.reason === REASON_CRYPTOGRAPHIC_FAILURE
    || (item.reason === REASON_GENERAL_FAILURE && item.message === PYKMIP_UNEXPECTED_FAILURE))) {
    return new KmsError('integrity', `Wrapped key failed authentication${label ? ` under KEK ${label}` : ''} (KMIP Decrypt: ${reason})`, { retryable: false });
  }
  if (item.reason === REASON_GENERAL_FAILURE) return new KmsError('unavailable', `KMIP ${op} failed on HSM profile ${profile} (${reason}${said})`);
  return new KmsError('provider', `KMIP ${op} failed on HSM profile ${profile} (${reason}${said})`, { retryable: false });
}

/** Creates the KMIP provider. Nothing connects until a profile's first call. Safe to call concurrently. */
export function createKmipProvider(opts: KmipProviderOptions): KekProvider {
  const states = new Map<string, ProfileState>();
  const requestTimeoutMs = opts.requestTimeoutMs ?? 60_000;
  let closed = false;

  // A digest per details object: callers usually pass the same profile object again and again.
  const fingerprints = new WeakMap<object, string>();

  const stateFor = (profile: HsmProfileConfig): ProfileState => {
    if (closed) throw new KmsError('unavailable', 'The KMIP provider is closed');
    let fingerprint = fingerprints.get(profile.details);
    if (fingerprint === undefined) {
      fingerprint = fingerprintOf(profile);
      fingerprints.set(profile.details, fingerprint);
    }
    const existing = states.get(profile.id);
    if (existing?.fingerprint === fingerprint) return existing;
    const parsed = parseKmipProfile(profile.name, profile.details);
    existing?.client.close();
    const state: ProfileState = { fingerprint, client: new KmipClient(profile.name, parsed), ids: new Map() };
    states.set(profile.id, state);
    return state;
  };

  /**
   * Inside the policy, a request may take the operation's stall time (kms.operation.timeout.sec) per
   * batch item, as the policy scales a batch's timeout by its size: a KMIP request answers all its
   * items at once. Outside the policy, the fixed requestTimeoutMs.
   */
  const requestTimeout = (items: number): number => {
    const stall = operationStallMs();
    return stall === undefined ? requestTimeoutMs : stall * Math.max(1, items);
  };
  /** Key lifecycle operations go in requests of their own, never batched with other callers' work. */
  const LIFECYCLE = new Set(['Create', 'Activate', 'Revoke', 'Destroy']);
  const call = (state: ProfileState, items: readonly RequestItem[]): Promise<ResponseItem[]> =>
  
    state.client.call(items, {
      signal: operationSignal(), timeoutMs: requestTimeout(items.length), progress: operationProgress(),
      alone: items.some((it) => LIFECYCLE.has(it.operation)),
    });

  /** Reads a successful payload; a malformed one is the server's fault ('provider', retryable). */
  const read = <T>(profile: HsmProfileConfig, op: string, fn: () => T): T => {
    try {
      return fn();
    } catch (e) {
      if (e instanceof TtlvError) throw new KmsError('provider', `KMIP ${op} answer of HSM profile ${profile.name} is malformed: ${e.message}`, { retryable: true });
      throw e;
    }
  };

  /** Unique Identifiers of the labels (Locate for those not cached), or the item's error. */
  const resolve = async (profile: HsmProfileConfig, state: ProfileState, labels: readonly string[]): Promise<Map<string, string | KmsError>> => {
    const out = new Map<string, string | KmsError>();
    const missing = [...new Set(labels)].filter((l) => {
      const id = state.ids.get(l);
      if (id) out.set(l, id);
      return !id;
    });
    if (!missing.length) return out;
    const answers = await call(state, missing.map(locateByName));
    answers.forEach((a, i) => {
      const label = missing[i];
      if (!a.ok) {
        out.set(label, itemError(profile.name, 'Locate', a));
        return;
      }
      const ids = read(profile, 'Locate', () => locatedIds(a.payload));
      if (ids.length === 0) out.set(label, notFound(label));
      else if (ids.length > 1) out.set(label, new KmsError('provider', `KMIP server of HSM profile ${profile.name} holds ${ids.length} active keys named ${label}`, { retryable: false }));
      else {
        state.ids.set(label, ids[0]);
        out.set(label, ids[0]);
      }
    });
    return out;
  };

  /**
   * Runs one KMIP operation per request item in as few requests as the profile's batch_items allows:
   * `build` makes item i's operation from its KEK's Unique Identifier (or throws KmsError for that
   * item alone), `done` reads its answer. Items whose KEK is missing fail as 'param'.
   */
  const perItem = async <R, T>(
    profile: HsmProfileConfig, op: 'Encrypt' | 'Decrypt' | 'MAC', reqs: readonly R[], labelOf: (r: R) => string,
    build: (r: R, uid: string, i: number) => RequestItem, done: (r: R, payload: ResponseItem & { ok: true }, i: number) => T,
  ): Promise<ItemResult<T>[]> => {
    const state = stateFor(profile);
    const ids = await resolve(profile, state, reqs.map(labelOf));
    const results: ItemResult<T>[] = new Array(reqs.length);
    const sent: number[] = [];
    const items: RequestItem[] = [];
    reqs.forEach((r, i) => {
      const id = ids.get(labelOf(r))!;
      if (id instanceof KmsError) {
        results[i] = { ok: false, error: id };
        return;
      }
      try {
        items.push(build(r, id, i));
        sent.push(i);
      } catch (e) {
        if (!(e instanceof KmsError)) throw e;
        results[i] = { ok: false, error: e };
      }
    });
    const answers = items.length ? await call(state, items) : [];
    answers.forEach((a, j) => {
      const i = sent[j];
      const label = labelOf(reqs[i]);
      if (a.ok) {
        try {
          results[i] = { ok: true, value: read(profile, op, () => done(reqs[i], a, i)) };
        } catch (e) {
          if (!(e instanceof KmsError)) throw e;
          results[i] = { ok: false, error: e };
        }
        return;
      }
      if (a.reason === REASON_ITEM_NOT_FOUND) state.ids.delete(label);
      results[i] = { ok: false, error: itemError(profile.name, op, a, label) };
    });
    return results;
  };

  /** True when the profile speaks KMIP 1.4 (AES-GCM); else encrypt-then-MAC. */
  const usesGcm = (profile: HsmProfileConfig): boolean => stateFor(profile).client.profile.version.minor >= 4;

  /** CMACs of `data` under each label's `.mac` key, one result per item. */
  const cmacs = async (profile: HsmProfileConfig, items: ReadonlyArray<{ label: string; data: Buffer }>): Promise<ItemResult<Buffer>[]> => {
    const results = await perItem(profile, 'MAC', items, (r) => macLabel(r.label), (r, uid) => mac(uid, r.data), (_r, a) => {
      const m = macResult(a.payload);
      if (m.length !== CMAC_BYTES) throw new KmsError('provider', `KMIP MAC on HSM profile ${profile.name} returned ${m.length} bytes, not ${CMAC_BYTES}`, { retryable: false });
      return m;
    });
    // A missing CMAC key means a missing KEK: say so by the KEK's own label.
    return results.map((r, i) => (!r.ok && r.error.message === notFound(macLabel(items[i].label)).message ? { ok: false, error: notFound(items[i].label) } : r));
  };

  /** Merges the results of a second step run for some items (`idx`) into the first step's results. */
  const merge = <A, B>(first: ItemResult<A>[], idx: number[], second: ItemResult<B>[]): ItemResult<B>[] => {
    const byItem = new Map(idx.map((i, j) => [i, second[j]]));
    return first.map((r, i) => (r.ok ? byItem.get(i)! : r));
  };
  const okIndexes = (rs: ItemResult<unknown>[]): number[] => rs.flatMap((r, i) => (r.ok ? [i] : []));

  const wrapManyCbc = async (profile: HsmProfileConfig, reqs: readonly WrapRequest[]): Promise<ItemResult<Buffer>[]> => {
    // IVs by item index: the same request object may come twice, and each blob needs its own IV.
    const ivs: Buffer[] = [];
    const sealed = await perItem(profile, 'Encrypt', reqs, (r) => r.kek.label, (r, uid, i) => {
      ivs[i] = randomBytes(CBC_IV_BYTES);
      return encryptCbc(uid, r.dek.reveal(), ivs[i]);
    }, (_r, a, i) => Buffer.concat([ivs[i], encryptedData(a.payload)]));
    const ok = okIndexes(sealed);
    const macs = await cmacs(profile, ok.map((i) => ({ label: reqs[i].kek.label, data: cmacInput(reqs[i].aad, (sealed[i] as { value: Buffer }).value) })));
    return merge(sealed, ok, macs.map((m, j) => (m.ok ? { ok: true as const, value: Buffer.concat([Buffer.of(FORMAT_CBC_CMAC), (sealed[ok[j]] as { value: Buffer }).value, m.value]) } : m)));
  };

  const unwrapManyCbc = async (profile: HsmProfileConfig, reqs: readonly UnwrapRequest[]): Promise<ItemResult<SecretBytes>[]> => {
    const shaped: ItemResult<Buffer>[] = reqs.map((r) => {
      const b = r.blob;
      if (b.length < MIN_CBC_BLOB || b[0] !== FORMAT_CBC_CMAC || (b.length - 1 - CBC_IV_BYTES - CMAC_BYTES) % 16 !== 0) {
        return { ok: false, error: new KmsError('integrity', `Wrapped key is not a KMIP AES-CBC+CMAC blob of a DEK (${b.length} bytes)`, { retryable: false }) };
      }
      return { ok: true, value: b.subarray(1, b.length - CMAC_BYTES) };
    });
    const shapedOk = okIndexes(shaped);
    const macs = merge(shaped, shapedOk, await cmacs(profile, shapedOk.map((i) => ({ label: reqs[i].kek.label, data: cmacInput(reqs[i].aad, (shaped[i] as { value: Buffer }).value) }))));
    const verified: ItemResult<Buffer>[] = macs.map((m, i) => {
      if (!m.ok) return m;
      const b = reqs[i].blob;
      if (!timingSafeEqual(m.value, b.subarray(b.length - CMAC_BYTES))) {
        return { ok: false, error: new KmsError('integrity', `Wrapped key failed authentication under KEK ${reqs[i].kek.label} (CMAC mismatch)`, { retryable: false }) };
      }
      return { ok: true, value: (shaped[i] as { value: Buffer }).value };
    });
    const ok = okIndexes(verified);
    const plain = await perItem(profile, 'Decrypt', ok.map((i) => ({ req: reqs[i], ivct: (verified[i] as { value: Buffer }).value })), (x) => x.req.kek.label,
      (x, uid) => decryptCbc(uid, x.ivct.subarray(CBC_IV_BYTES), x.ivct.subarray(0, CBC_IV_BYTES)),
      (_x, a) => {
        const p = decryptResult(a.payload);
        try {
          return SecretBytes.copyOf(p);
        } finally {
          p.fill(0);
        }
      });
    return merge(verified, ok, plain);
  };

  const wrapMany = async (reqs: readonly WrapRequest[]): Promise<ItemResult<Buffer>[]> => {
    const profile = batchProfile(reqs, (r) => r.kek.profile);
    if (!profile) return [];
    if (!usesGcm(profile)) return wrapManyCbc(profile, reqs);
    // IVs by item index: the same request object may come twice, and each blob needs its own IV.
    const ivs: Buffer[] = [];
    return perItem(profile, 'Encrypt', reqs, (r) => r.kek.label, (r, uid, i) => {
      ivs[i] = randomBytes(IV_BYTES);
      return encryptGcm(uid, r.dek.reveal(), ivs[i], r.aad);
    }, (r, a, i) => {
      const { data, tag } = encryptResult(a.payload);
      if (tag.length !== GCM_TAG_BYTES || data.length !== r.dek.length) {
        throw new KmsError('provider', `KMIP Encrypt on HSM profile ${profile.name} returned a ${tag.length}-byte tag and ${data.length}-byte ciphertext for a ${r.dek.length}-byte key`, { retryable: false });
      }
      return Buffer.concat([Buffer.of(FORMAT_GCM), ivs[i], data, tag]);
    });
  };

  /**
   * Each blob is opened the way its format byte says it was made (the profile's kmipversion may
   * have changed since): 0x22 by AES-CBC+CMAC, 0x21 by AES-GCM; any other by the profile's version
   * (which then refuses its shape).
   */
  const unwrapMany = async (reqs: readonly UnwrapRequest[]): Promise<ItemResult<SecretBytes>[]> => {
    const profile = batchProfile(reqs, (r) => r.kek.profile);
    if (!profile) return [];
    const gcm = usesGcm(profile);
    const cbc = reqs.flatMap((r, i) => (r.blob[0] === FORMAT_CBC_CMAC || (r.blob[0] !== FORMAT_GCM && !gcm) ? [i] : []));
    if (cbc.length === reqs.length) return unwrapManyCbc(profile, reqs);
    if (cbc.length === 0) return unwrapManyGcm(profile, reqs);
    const inCbc = new Set(cbc);
    const rest = reqs.flatMap((_r, i) => (inCbc.has(i) ? [] : [i]));
    const [a, b] = await Promise.all([unwrapManyCbc(profile, cbc.map((i) => reqs[i])), unwrapManyGcm(profile, rest.map((i) => reqs[i]))]);
    const out: ItemResult<SecretBytes>[] = new Array(reqs.length);
    cbc.forEach((i, j) => { out[i] = a[j]; });
    rest.forEach((i, j) => { out[i] = b[j]; });
    return out;
  };

  const unwrapManyGcm = async (profile: HsmProfileConfig, reqs: readonly UnwrapRequest[]): Promise<ItemResult<SecretBytes>[]> => {
    return perItem(profile, 'Decrypt', reqs, (r) => r.kek.label, (r, uid) => {
      const b = r.blob;
      if (b.length < MIN_BLOB || b[0] !== FORMAT_GCM) {
        throw new KmsError('integrity', `Wrapped key is not a KMIP AES-GCM blob of a DEK (${b.length} bytes)`, { retryable: false });
      }
      return decryptGcm(uid, b.subarray(1 + IV_BYTES, b.length - GCM_TAG_BYTES), b.subarray(1, 1 + IV_BYTES), r.aad, b.subarray(b.length - GCM_TAG_BYTES));
    }, (r, a) => {
      const plain = decryptResult(a.payload);
      try {
        if (plain.length !== r.blob.length - MIN_BLOB + 16) {
          throw new KmsError('provider', `KMIP Decrypt on HSM profile ${profile.name} returned ${plain.length} bytes for a ${r.blob.length}-byte blob`, { retryable: false });
        }
        return SecretBytes.copyOf(plain);
      } finally {
        plain.fill(0);
      }
    });
  };

  const generateAndWrapMany = async (reqs: readonly GenerateRequest[]): Promise<ItemResult<Buffer>[]> => {
    const profile = batchProfile(reqs, (r) => r.kek.profile);
    if (!profile) return [];
    const results: ItemResult<Buffer>[] = new Array(reqs.length);
    const ok: number[] = [];
    reqs.forEach((r, i) => {
      if (!Number.isInteger(r.bytes) || r.bytes < 16 || r.bytes > 512) {
        results[i] = { ok: false, error: new KmsError('param', `DEK length must be 16 to 512 bytes (got ${r.bytes})`) };
      } else ok.push(i);
    });
    const deks = ok.map((i) => SecretBytes.random(reqs[i].bytes));
    try {
      const wrapped = await wrapMany(ok.map((i, j) => ({ kek: reqs[i].kek, dek: deks[j], aad: reqs[i].aad })));
      ok.forEach((i, j) => { results[i] = wrapped[j]; });
      return results;
    } finally {
      deks.forEach((d) => d.dispose());
    }
  };

  const rewrapMany = async (reqs: readonly RewrapRequest[]): Promise<ItemResult<Buffer>[]> => {
    const from = batchProfile(reqs, (r) => r.from.kek.profile, 'source KEK');
    const to = batchProfile(reqs, (r) => r.to.kek.profile, 'target KEK');
    if (!from || !to) return [];
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

  const single = <T>([r]: ItemResult<T>[]): T => {
    if (!r) throw new KmsError('internal', 'The KMIP provider returned no result');
    if (!r.ok) throw r.error;
    return r.value;
  };

  /** One operation's answer, or its error thrown. */
  const one = async (profile: HsmProfileConfig, items: readonly RequestItem[], op: string): Promise<ResponseItem[]> => {
    const answers = await call(stateFor(profile), items);
    const failed = answers.find((a) => !a.ok);
    if (failed && !failed.ok) throw itemError(profile.name, op, failed);
    return answers;
  };

  /**
   * Creates a key and activates it, in two requests (PyKMIP 0.10 cannot read an Activate that leans
   * on the ID Placeholder). A key that cannot be activated is destroyed (a Pre-Active key can be).
   */
  const createActive = async (profile: HsmProfileConfig, state: ProfileState, create: RequestItem, label: string): Promise<string> => {
    const [created] = await one(profile, [create], 'Create');
    const uid = read(profile, 'Create', () => uniqueIdOf(payloadOf(created)));
    try {
      await one(profile, [activate(uid)], 'Activate');
    } catch (e) {
      // The Activate may have happened and only its answer been lost: Revoke, then Destroy.
      await call(state, [revoke(uid)]).catch(() => undefined);
      await call(state, [destroy(uid)]).catch(() => undefined);
      throw e;
    }
    state.ids.set(label, uid);
    return uid;
  };

  /**
   * Revokes the Active keys named `label` and destroys every key of that name not yet Destroyed
   * (an earlier Revoke may have succeeded and its Destroy failed, leaving a Deactivated key); true
   * when there was one. Locate per state, as KMIP 1.x cannot ask for "any state but Destroyed".
   */
  const destroyNamed = async (profile: HsmProfileConfig, state: ProfileState, label: string): Promise<boolean> => {
    state.ids.delete(label);
    const states = Object.values(LIVE_STATES);
    const located = await one(profile, states.map((s) => locateByNameIn(label, s)), 'Locate');
    const found = located.map((a) => (a.ok ? read(profile, 'Locate', () => locatedIds(a.payload)) : []));
    state.ids.delete(label);
    const active = found[states.indexOf(LIVE_STATES.active)];
    const all = [...new Set(found.flat())];
    // Own requests: a request may be shared with other calls, and Destroy must follow the Revoke.
    for (const uid of active) {
      const [revoked] = await call(state, [revoke(uid)]);
      if (!revoked.ok && revoked.reason !== REASON_ITEM_NOT_FOUND) opts.logger.warn('KMIP Revoke failed; destroying anyway', { profile: profile.id, uid, reason: revoked.reason });
    }
    for (const uid of all) {
      const [destroyed] = await call(state, [destroy(uid)]);
      if (!destroyed.ok && destroyed.reason !== REASON_ITEM_NOT_FOUND) throw itemError(profile.name, 'Destroy', destroyed);
    }
    return all.length > 0;
  };

  return {
    kind: 'kmip',
    capabilities: { inBackendRewrap: false },

    validateProfile: (details) => kmipProfileProblems(details),

    /** Discover Versions and Query Operations in one request: the server must speak 1.4 and offer Encrypt and Decrypt. */
    async probe(profile) {
      const state = stateFor(profile);
      const [versions, query] = await one(profile, [discoverVersions(), queryOperations()], 'Discover Versions').catch((e: unknown) => {
        // Checking a profile, an unknown host is a detail to fix; in service it is a DNS outage, retried.
        if (isUnknownHost(e)) throw new KmsError('param', `KMIP server host ${state.client.profile.host} of HSM profile ${profile.name} is unknown (DNS: ENOTFOUND); check the host detail`, { retryable: false });
        throw e;
      });
      const offered = read(profile, 'Discover Versions', () => discoveredVersions(payloadOf(versions)));
      const wanted = state.client.profile.version;
      if (offered.length && !offered.some((v) => v.major === wanted.major && v.minor === wanted.minor)) {
        throw new KmsError('param', `KMIP server of HSM profile ${profile.name} does not speak KMIP ${versionText(wanted)} (it offers ${offered.map(versionText).join(', ')})`, { retryable: false });
      }
      const ops = read(profile, 'Query', () => queriedOperations(payloadOf(query)));
      const needed = ['Create', 'Activate', 'Locate', 'Encrypt', 'Decrypt', 'Revoke', 'Destroy', ...(wanted.minor >= 4 ? [] : ['MAC'] as const)] as const;
      const lacking = needed.filter((o) => !ops.includes(o));
      if (ops.length && lacking.length) {
        throw new KmsError('param', `KMIP server of HSM profile ${profile.name} does not offer ${lacking.join(', ')}`, { retryable: false });
      }
    },

    async createKek(kek: KekRef, bits: KekBits) {
      if (!isKeyBits(bits)) throw new KmsError('param', `KEK size must be ${KEY_BITS_TEXT} bits (got ${bits})`);
      const state = stateFor(kek.profile);
      state.ids.delete(kek.label);
      const found = (await resolve(kek.profile, state, [kek.label])).get(kek.label)!;
      if (typeof found === 'string') throw new KmsError('param', `Key already exists: ${kek.label}`);
      if (found.message !== notFound(kek.label).message) throw found;
      // Before KMIP 1.4 the KEK has a CMAC key beside it, created first: the KEK (found by Locate)
      // exists only once both do. A CMAC key left by an earlier failed attempt is reused, and one
      // made here is destroyed again if the KEK cannot be made (a retry would otherwise find two).
      let madeMac = false;
      if (!usesGcm(kek.profile)) {
        const mac = macLabel(kek.label);
        state.ids.delete(mac);
        const macFound = (await resolve(kek.profile, state, [mac])).get(mac)!;
        if (typeof macFound !== 'string') {
          if (macFound.message !== notFound(mac).message) throw macFound;
          await createActive(kek.profile, state, createCmacKey(mac), mac);
          madeMac = true;
        }
      }
      let uid: string;
      try {
        uid = await createActive(kek.profile, state, createAesKey(kek.label, bits), kek.label);
      } catch (e) {
        if (madeMac) await destroyNamed(kek.profile, state, macLabel(kek.label)).catch(() => undefined);
        throw e;
      }
      opts.logger.info('KMIP KEK created', { label: kek.label, bits, profile: kek.profile.id, uid });
    },

    /** Revoke (Cessation of Operation) then Destroy; an absent KEK succeeds. */
    async destroyKek(kek) {
      const state = stateFor(kek.profile);
      const had = await destroyNamed(kek.profile, state, kek.label);
      // The CMAC key goes too, whatever version the profile speaks now (it may have changed).
      await destroyNamed(kek.profile, state, macLabel(kek.label));
      if (had) opts.logger.info('KMIP KEK destroyed', { label: kek.label, profile: kek.profile.id });
    },

    async hasKek(kek) {
      const state = stateFor(kek.profile);
      state.ids.delete(kek.label);
      const found = (await resolve(kek.profile, state, [kek.label])).get(kek.label)!;
      if (typeof found === 'string') return true;
      if (found.message === notFound(kek.label).message) return false;
      throw found;
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
      state.client.close();
    },

    sessionStats() {
      return [...states.entries()].map(([id, s]) => ({ profile: s.client.name || id, ...s.client.stats }));
    },

    async close() {
      closed = true;
      for (const s of states.values()) s.client.close();
      states.clear();
    },
  };
}
