import * as pkcs11js from 'pkcs11js';
import { KmsError } from '../../core/errors';
import { pkcs11Error } from './errors';

/** First byte of every PKCS#11-provider blob: RFC 5649 key wrap + HMAC-SHA256 over (format, aad, wrapped). */
export const KWP_HMAC_FORMAT = 0x11;
export const MAC_BYTES = 32;
/** DEKs are 16 to 512 bytes (AES keys and CloudStack's 64-byte legacy passphrases fit). */
export const MIN_DEK_BYTES = 16;
export const MAX_DEK_BYTES = 512;

/** RFC 5649 (SoftHSM 2.6.1 has CKM_AES_KEY_WRAP_PAD, not the v3.0 CKM_AES_KEY_WRAP_KWP). */
export const KWP: pkcs11js.Mechanism = { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD };
export const HMAC: pkcs11js.Mechanism = { mechanism: pkcs11js.CKM_SHA256_HMAC };

/** The label of the HMAC key created alongside KEK `label`. */
export const macLabel = (label: string): string => `${label}.mac`;

const secret = (keyType: number): pkcs11js.Template => [
  { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
  { type: pkcs11js.CKA_KEY_TYPE, value: keyType },
];

/** A KEK: token object, private, sensitive, never extractable; wraps and unwraps only. */
export function kekTemplate(label: string, id: Buffer, bits: number): pkcs11js.Template {
  return [
    ...secret(pkcs11js.CKK_AES),
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: false },
    { type: pkcs11js.CKA_MODIFIABLE, value: false },
    { type: pkcs11js.CKA_VALUE_LEN, value: bits / 8 },
    { type: pkcs11js.CKA_LABEL, value: label },
    { type: pkcs11js.CKA_ID, value: id },
    { type: pkcs11js.CKA_WRAP, value: true },
    { type: pkcs11js.CKA_UNWRAP, value: true },
    { type: pkcs11js.CKA_ENCRYPT, value: false },
    { type: pkcs11js.CKA_DECRYPT, value: false },
  ];
}

/** The KEK's HMAC-SHA256 key: 256-bit generic secret, same CKA_ID, sign/verify only. */
export function macKeyTemplate(label: string, id: Buffer): pkcs11js.Template {
  return [
    ...secret(pkcs11js.CKK_GENERIC_SECRET),
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: false },
    { type: pkcs11js.CKA_MODIFIABLE, value: false },
    { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
    { type: pkcs11js.CKA_LABEL, value: macLabel(label) },
    { type: pkcs11js.CKA_ID, value: id },
    { type: pkcs11js.CKA_SIGN, value: true },
    { type: pkcs11js.CKA_VERIFY, value: true },
  ];
}

/**
 * A DEK as a session object. `readable` is true only for unwrap, whose job is to return the
 * plaintext; every other DEK object is sensitive (its value cannot be read out, only wrapped).
 */
export function dekTemplate(opts: { readable: boolean; value?: Buffer; bytes?: number }): pkcs11js.Template {
  const t: pkcs11js.Template = [
    ...secret(pkcs11js.CKK_GENERIC_SECRET),
    { type: pkcs11js.CKA_TOKEN, value: false },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: !opts.readable },
    { type: pkcs11js.CKA_EXTRACTABLE, value: true },
  ];
  if (opts.value) t.push({ type: pkcs11js.CKA_VALUE, value: opts.value });
  if (opts.bytes) t.push({ type: pkcs11js.CKA_VALUE_LEN, value: opts.bytes });
  return t;
}

/** The MAC input: format ‖ u32be(aad length) ‖ aad ‖ wrapped. Length-prefixing keeps aad and wrapped apart. */
export function macInput(aad: Buffer, wrapped: Buffer): Buffer {
  const out = Buffer.alloc(1 + 4 + aad.length + wrapped.length);
  out[0] = KWP_HMAC_FORMAT;
  out.writeUInt32BE(aad.length, 1);
  aad.copy(out, 5);
  wrapped.copy(out, 5 + aad.length);
  return out;
}

/** Splits a blob into its wrapped key and MAC, or throws 'integrity' when it cannot be one of ours. */
export function splitBlob(blob: Buffer, label: string): { wrapped: Buffer; mac: Buffer } {
  const wrappedLen = blob.length - 1 - MAC_BYTES;
  if (blob[0] !== KWP_HMAC_FORMAT || wrappedLen < 16 || wrappedLen % 8 !== 0) {
    throw new KmsError('integrity', `Wrapped key is not a PKCS#11-provider blob for KEK ${label}`, { retryable: false });
  }
  return { wrapped: blob.subarray(1, 1 + wrappedLen), mac: blob.subarray(1 + wrappedLen) };
}

/** format ‖ wrapped ‖ mac, in a fresh Buffer. */
export function joinBlob(wrapped: Buffer, mac: Buffer): Buffer {
  const blob = Buffer.alloc(1 + wrapped.length + mac.length);
  blob[0] = KWP_HMAC_FORMAT;
  wrapped.copy(blob, 1);
  mac.copy(blob, 1 + wrapped.length);
  return blob;
}

/** Runs a synchronous pkcs11js call, turning failures into KmsErrors naming `call`. */
export function sync<T>(call: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw pkcs11Error(call, e);
  }
}
