/**
 * The PKCS#11 provider's operations, each run synchronously and whole on the library's thread: the
 * same mechanisms, templates and blob format as always (RFC 5649 key wrap + HMAC-SHA256 in the HSM,
 * see pkcs11-provider.ts), so blobs written before the thread existed unwrap and vice versa.
 */
import { randomBytes } from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { KmsError } from '../../../core/errors';
import { ckrName, pkcs11Error } from '../errors';
import {
  dekTemplate, HMAC, joinBlob, KWP, kekTemplate, MAC_BYTES, macInput, macKeyTemplate, macLabel, MAX_DEK_BYTES, MIN_DEK_BYTES,
  splitBlob, sync,
} from '../mechanisms';
import type { KekHandles, ProfileState, Token } from './token';

const STALE_HANDLE = new Set(['CKR_KEY_HANDLE_INVALID', 'CKR_OBJECT_HANDLE_INVALID']);

/** The CKR code behind a KmsError made by pkcs11Error (its cause), or of a raw pkcs11js error. */
export const causeCkr = (e: unknown): string => ckrName((e as { cause?: unknown })?.cause) ?? ckrName(e) ?? '';

const destroyQuietly = (lib: pkcs11js.PKCS11, session: Buffer, handle: Buffer): void => {
  try {
    lib.C_DestroyObject(session, handle);
  } catch {
    // Session objects also vanish when the session closes; the original outcome is what matters.
  }
};

const dekLengthError = (n: number): KmsError =>
  new KmsError('param', `DEK length must be ${MIN_DEK_BYTES} to ${MAX_DEK_BYTES} bytes (got ${n})`);

/** Wraps DEK object `dek` under the KEK and MACs the result: the blob. */
function wrapObject(lib: pkcs11js.PKCS11, session: Buffer, h: KekHandles, dek: Buffer, aad: Buffer): Buffer {
  const wrapped = sync('C_WrapKey', () => lib.C_WrapKey(session, KWP, h.kek, dek, Buffer.alloc(MAX_DEK_BYTES + 16)));
  sync('C_SignInit', () => lib.C_SignInit(session, HMAC, h.mac));
  const mac = sync('C_Sign', () => lib.C_Sign(session, macInput(aad, wrapped), Buffer.alloc(MAC_BYTES)));
  return joinBlob(wrapped, mac);
}

/** Verifies the blob's MAC under the KEK's HMAC key, then unwraps it to a session object (the caller destroys it). */
function unwrapObject(lib: pkcs11js.PKCS11, session: Buffer, h: KekHandles, label: string, blob: Buffer, aad: Buffer, readable: boolean): Buffer {
  const { wrapped, mac } = splitBlob(blob, label);
  sync('C_VerifyInit', () => lib.C_VerifyInit(session, HMAC, h.mac));
  const ok = sync('C_Verify', () => lib.C_Verify(session, macInput(aad, wrapped), mac));
  if (!ok) throw new KmsError('integrity', `Wrapped key failed authentication under KEK ${label}: pkcs11 C_Verify returned false`, { retryable: false });
  return sync('C_UnwrapKey', () => lib.C_UnwrapKey(session, KWP, h.kek, wrapped, dekTemplate({ readable })));
}

/** Runs fn with the KEK's handles; a stale handle drops the cache entry so the retry looks it up again. */
function withKek<T>(t: Token, p: ProfileState, session: Buffer, label: string, fn: (h: KekHandles) => T): T {
  const h = t.kekHandles(p, session, label);
  try {
    return fn(h);
  } catch (e) {
    if (STALE_HANDLE.has(causeCkr(e))) p.handles.delete(label);
    throw e;
  }
}

/** The blob of caller-supplied DEK bytes. `dek` is the caller's to zero. */
export function wrapBytes(t: Token, p: ProfileState, session: Buffer, label: string, dek: Buffer, aad: Buffer): Buffer {
  if (dek.length < MIN_DEK_BYTES || dek.length > MAX_DEK_BYTES) throw dekLengthError(dek.length);
  return withKek(t, p, session, label, (h) => {
    const obj = sync('C_CreateObject', () => t.lib.C_CreateObject(session, dekTemplate({ readable: false, value: dek })));
    try {
      return wrapObject(t.lib, session, h, obj, aad);
    } finally {
      destroyQuietly(t.lib, session, obj);
    }
  });
}

/** The DEK plaintext of a blob, in a Buffer the caller must zero. */
export function unwrapBytes(t: Token, p: ProfileState, session: Buffer, label: string, blob: Buffer, aad: Buffer): Buffer {
  return withKek(t, p, session, label, (h) => {
    const obj = unwrapObject(t.lib, session, h, label, blob, aad, true);
    try {
      const [attr] = sync('C_GetAttributeValue', () => t.lib.C_GetAttributeValue(session, obj, [{ type: pkcs11js.CKA_VALUE }]));
      return attr.value as Buffer;
    } finally {
      destroyQuietly(t.lib, session, obj);
    }
  });
}

/** A fresh DEK generated in the token, returned only wrapped. */
export function generateAndWrap(t: Token, p: ProfileState, session: Buffer, label: string, bytes: number, aad: Buffer): Buffer {
  if (!Number.isInteger(bytes) || bytes < MIN_DEK_BYTES || bytes > MAX_DEK_BYTES) throw dekLengthError(bytes);
  return withKek(t, p, session, label, (h) => {
    const gen = { mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN };
    const obj = sync('C_GenerateKey', () => t.lib.C_GenerateKey(session, gen, dekTemplate({ readable: false, bytes })));
    try {
      return wrapObject(t.lib, session, h, obj, aad);
    } finally {
      destroyQuietly(t.lib, session, obj);
    }
  });
}

/** Rewrap inside the token: the DEK is unwrapped to a non-readable object and wrapped again; it never leaves the HSM. */
export function rewrap(t: Token, p: ProfileState, session: Buffer, from: string, to: string, blob: Buffer, fromAad: Buffer, toAad: Buffer): Buffer {
  return withKek(t, p, session, from, (src) => withKek(t, p, session, to, (dst) => {
    const obj = unwrapObject(t.lib, session, src, from, blob, fromAad, false);
    try {
      return wrapObject(t.lib, session, dst, obj, toAad);
    } finally {
      destroyQuietly(t.lib, session, obj);
    }
  }));
}

/** Logs in (through the session) and runs one digest: the cheapest question that proves the token answers. */
export function probe(t: Token, session: Buffer): void {
  t.findByLabel(session, '');
  sync('C_DigestInit', () => t.lib.C_DigestInit(session, { mechanism: pkcs11js.CKM_SHA256 }));
  sync('C_Digest', () => t.lib.C_Digest(session, Buffer.from('kms-probe'), Buffer.alloc(32)));
}

export function createKek(t: Token, session: Buffer, label: string, bits: number): void {
  if (t.findByLabel(session, label).length || t.findByLabel(session, macLabel(label)).length) {
    throw new KmsError('param', `Key already exists: ${label}`);
  }
  const id = randomBytes(16);
  const handle = sync('C_GenerateKey', () => t.lib.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, kekTemplate(label, id, bits)));
  try {
    sync('C_GenerateKey', () => t.lib.C_GenerateKey(session, { mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN }, macKeyTemplate(label, id)));
  } catch (e) {
    destroyQuietly(t.lib, session, handle);
    throw e;
  }
}

export function destroyKek(t: Token, p: ProfileState, session: Buffer, label: string): void {
  p.handles.delete(label);
  for (const l of [label, macLabel(label)]) {
    for (const h of t.findByLabel(session, l)) {
      try {
        t.lib.C_DestroyObject(session, h);
      } catch (e) {
        if (!STALE_HANDLE.has(ckrName(e) ?? '')) throw pkcs11Error('C_DestroyObject', e);
      }
    }
  }
  p.handles.delete(label);
}

export function hasKek(t: Token, session: Buffer, label: string): boolean {
  return t.findByLabel(session, label).length > 0 && t.findByLabel(session, macLabel(label)).length > 0;
}
