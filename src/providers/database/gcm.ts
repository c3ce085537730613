import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { KmsError } from '../../core/errors';

/** First byte of every database-provider blob: AES-GCM, 96-bit IV, 128-bit tag. */
export const GCM_FORMAT = 0x01;
const IV = 12;
const TAG = 16;

const algorithmFor = (kek: Buffer): 'aes-128-gcm' | 'aes-192-gcm' | 'aes-256-gcm' => {
  switch (kek.length) {
    case 16: return 'aes-128-gcm';
    case 24: return 'aes-192-gcm';
    case 32: return 'aes-256-gcm';
    default: throw new KmsError('internal', `A database KEK must be 16, 24 or 32 bytes (got ${kek.length})`);
  }
};

/**
 * Encrypts `plain` under `kek` with a fresh random IV and `aad`: blob = 0x01 ‖ IV ‖ ct ‖ tag.
 * Reads but never keeps `kek` and `plain`; the caller zeroes them.
 */
export function gcmSeal(kek: Buffer, plain: Buffer, aad: Buffer): Buffer {
  const iv = randomBytes(IV);
  const c = createCipheriv(algorithmFor(kek), kek, iv, { authTagLength: TAG });
  c.setAAD(aad);
  const ct = c.update(plain);
  c.final();
  const blob = Buffer.alloc(1 + IV + ct.length + TAG);
  blob[0] = GCM_FORMAT;
  iv.copy(blob, 1);
  ct.copy(blob, 1 + IV);
  c.getAuthTag().copy(blob, 1 + IV + ct.length);
  return blob;
}

/**
 * Decrypts a gcmSeal blob. Returns a fresh unpooled Buffer the caller owns and zeroes. A wrong
 * format, length, KEK or aad, or any flipped bit, throws KmsError('integrity'), never retryable.
 */
export function gcmOpen(kek: Buffer, blob: Buffer, aad: Buffer, label: string): Buffer {
  if (blob.length < 1 + IV + TAG + 1 || blob[0] !== GCM_FORMAT) {
    throw new KmsError('integrity', `Wrapped key is not a database-provider blob for KEK ${label}`, { retryable: false });
  }
  const d = createDecipheriv(algorithmFor(kek), kek, blob.subarray(1, 1 + IV), { authTagLength: TAG });
  d.setAAD(aad);
  d.setAuthTag(blob.subarray(blob.length - TAG));
  const plain = Buffer.alloc(blob.length - 1 - IV - TAG);
  const part = d.update(blob.subarray(1 + IV, blob.length - TAG));
  part.copy(plain);
  part.fill(0);
  try {
    d.final();
  } catch (e) {
    plain.fill(0);
    throw new KmsError('integrity', `Wrapped key failed authentication under KEK ${label} (tampered, or another key's aad)`, { retryable: false, cause: e });
  }
  return plain;
}
