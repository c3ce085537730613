import { randomBytes, randomUUID } from 'node:crypto';
import { isKeyBits, KEY_BITS_TEXT } from '../../core/key-bits';
import type { MasterKey } from '../../config/master-key';
import type { DatabaseKekRepository } from '../../db/repositories/database-keks';
import { KmsError } from '../../core/errors';
import { SecretBytes } from '../../core/secret-bytes';
import type { Logger } from '../../core/logger';
import { batchProfile, eachItem } from '../batch';
import type { GenerateRequest, HsmProfileConfig, KekBits, KekProvider, KekRef, RewrapRequest } from '../provider';
import { gcmOpen, gcmSeal } from './gcm';
import { KekCache } from './kek-cache';

/** Options of the database provider. */
export interface DatabaseProviderOptions {
  /** The KEK table (kms_database_kek_objects). */
  keks: DatabaseKekRepository;
  masterKey: MasterKey;
  logger: Logger;
  /** Decrypted KEKs kept in memory (kms.database.cache.enabled); 0 disables the cache. @defaultValue 256 */
  cacheMax?: number;
  /** How long a cached KEK is trusted, bounding staleness across nodes. @defaultValue 60000 */
  cacheTtlMs?: number;
}

/** A database failure is 'unavailable' (retryable); only the driver's code is kept, never its SQL text. */
function dbError(op: string, e: unknown): KmsError {
  if (e instanceof KmsError) return e;
  const code = (e as { code?: unknown })?.code;
  return new KmsError('unavailable', `Database unavailable during KEK ${op}${typeof code === 'string' ? ` (${code})` : ''}`, { cause: e });
}

const notFound = (label: string): KmsError => new KmsError('param', `KEK not found: ${label}`);

/**
 * The database KEK backend (CloudStack's "database" provider, with AAD): a KEK is `bits/8` random
 * bytes stored in kms_database_kek_objects.key_material under the master key (aad = label). Wrap is
 * AES-GCM (key size = KEK size) with the caller's aad, blob 0x01 ‖ IV(12) ‖ ct ‖ tag(16). KEK and
 * DEK plaintexts pass through process memory and are zeroed after each call. Safe to call concurrently.
 */
export function createDatabaseProvider(opts: DatabaseProviderOptions): KekProvider {
  const { keks, masterKey } = opts;
  const cache = new KekCache(opts.cacheMax ?? 256, opts.cacheTtlMs ?? 60_000);

  const findMaterial = async (label: string, op: string): Promise<string | undefined> => {
    try {
      return await keks.findMaterial(label);
    } catch (e) {
      throw dbError(op, e);
    }
  };

  /** The KEK bytes; the caller zeroes them. */
  const loadKek = async (kek: KekRef, op: string): Promise<Buffer> => {
    const hit = cache.get(kek.label);
    if (hit) return hit;
    const material = await findMaterial(kek.label, op);
    if (material === undefined) throw notFound(kek.label);
    let key: Buffer;
    try {
      key = masterKey.decrypt(material, kek.label);
    } catch (e) {
      throw new KmsError('integrity', `KEK ${kek.label} cannot be decrypted with this server's master key`, { retryable: false, cause: e });
    }
    cache.set(kek.label, kek.profile.id, key);
    return key;
  };

  const withKek = async <T>(kek: KekRef, op: string, fn: (key: Buffer) => T): Promise<T> => {
    const key = await loadKek(kek, op);
    try {
      return fn(key);
    } finally {
      key.fill(0);
    }
  };

  const wrapBytes = (kek: KekRef, plain: Buffer, aad: Buffer): Promise<Buffer> =>
    withKek(kek, 'wrap', (key) => gcmSeal(key, plain, aad));

  const unwrapBytes = (kek: KekRef, blob: Buffer, aad: Buffer): Promise<SecretBytes> =>
    withKek(kek, 'unwrap', (key) => SecretBytes.adopt(gcmOpen(key, blob, aad, kek.label)));

  async function generateAndWrap({ kek, bytes, aad }: GenerateRequest): Promise<Buffer> {
    if (!Number.isInteger(bytes) || bytes < 16 || bytes > 512) throw new KmsError('param', `DEK length must be 16 to 512 bytes (got ${bytes})`);
    const dek = SecretBytes.random(bytes);
    try {
      return await wrapBytes(kek, dek.reveal(), aad);
    } finally {
      dek.dispose();
    }
  }

  async function rewrap({ from, to }: RewrapRequest): Promise<Buffer> {
    const dek = await unwrapBytes(from.kek, from.blob, from.aad);
    try {
      return await wrapBytes(to.kek, dek.reveal(), to.aad);
    } finally {
      dek.dispose();
    }
  }

  return {
    kind: 'database',
    capabilities: { inBackendRewrap: false },

    validateProfile(details) {
      return Object.keys(details).map((k) => `Unknown detail '${k}': the database provider takes no profile details`);
    },

    async probe(_profile: HsmProfileConfig) {
      try {
        await keks.ping();
      } catch (e) {
        throw dbError('probe', e);
      }
    },

    async createKek(kek: KekRef, bits: KekBits) {
      if (!isKeyBits(bits)) throw new KmsError('param', `KEK size must be ${KEY_BITS_TEXT} bits (got ${bits})`);
      const key = randomBytes(bits / 8);
      try {
        const material = masterKey.encrypt(key, kek.label);
        if (!(await keks.insertIfAbsent({ uuid: randomUUID(), label: kek.label, material, bits, created: new Date() }))) {
          throw new KmsError('param', `Key already exists: ${kek.label}`);
        }
      } catch (e) {
        throw dbError('create', e);
      } finally {
        key.fill(0);
      }
      opts.logger.info('Database KEK created', { label: kek.label, bits, profile: kek.profile.id });
    },

    async destroyKek(kek) {
      cache.delete(kek.label);
      try {
        await keks.destroy(kek.label, new Date()); // the material goes too: a destroyed KEK cannot come back
      } catch (e) {
        throw dbError('destroy', e);
      }
      cache.delete(kek.label);
    },

    async hasKek(kek) {
      return (await findMaterial(kek.label, 'lookup')) !== undefined;
    },

    wrap: ({ kek, dek, aad }) => wrapBytes(kek, dek.reveal(), aad),

    unwrap: ({ kek, blob, aad }) => unwrapBytes(kek, blob, aad),

    generateAndWrap,

    rewrap,

    // Batches are plain loops here: every item is in-process AES-GCM under a cached KEK.
    async wrapMany(reqs) {
      batchProfile(reqs, (r) => r.kek.profile);
      return eachItem(reqs, ({ kek, dek, aad }) => wrapBytes(kek, dek.reveal(), aad));
    },

    async unwrapMany(reqs) {
      batchProfile(reqs, (r) => r.kek.profile);
      return eachItem(reqs, ({ kek, blob, aad }) => unwrapBytes(kek, blob, aad));
    },

    async generateAndWrapMany(reqs) {
      batchProfile(reqs, (r) => r.kek.profile);
      return eachItem(reqs, generateAndWrap);
    },

    async rewrapMany(reqs) {
      batchProfile(reqs, (r) => r.from.kek.profile, 'source KEK');
      batchProfile(reqs, (r) => r.to.kek.profile, 'target KEK');
      return eachItem(reqs, rewrap);
    },

    async invalidateProfile(profileId) {
      cache.invalidateProfile(profileId);
    },

    async close() {
      cache.clear();
    },
  };
}
