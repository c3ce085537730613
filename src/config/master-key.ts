import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

const FORMAT = 'v1';

/**
 * The server master key: encrypts secrets at rest (HSM PINs, user secret keys, legacy passphrases,
 * database-provider KEKs) with AES-256-GCM. Every node of a cluster needs the same one.
 * `aad` binds a ciphertext to its place (e.g. `passphrase:42`), so a value copied elsewhere fails.
 */
export class MasterKey {
  readonly #key: Buffer;

  /** Copies `key` into a buffer of its own; the caller zeroes its copy. */
  constructor(key: Buffer) {
    if (key.length !== 32) throw new Error('The master key must be 32 bytes (base64 in KMS_MASTER_KEY)');
    this.#key = Buffer.alloc(32);
    key.copy(this.#key);
  }

  private static adopt(raw: Buffer): MasterKey {
    try {
      return new MasterKey(raw);
    } finally {
      raw.fill(0);
    }
  }

  /** From KMS_MASTER_KEY (base64 of 32 bytes) or a key file, generated with mode 0600 when absent. */
  static load(opts: { fromEnv?: string; file: string }): { key: MasterKey; generated: boolean } {
    if (opts.fromEnv) return { key: MasterKey.adopt(decodeKey(opts.fromEnv, 'KMS_MASTER_KEY')), generated: false };
    if (existsSync(opts.file)) return { key: MasterKey.adopt(decodeKey(readFileSync(opts.file, 'utf8'), opts.file)), generated: false };
    mkdirSync(dirname(opts.file), { recursive: true, mode: 0o700 });
    const raw = randomBytes(32);
    try {
      // Exclusive create: when two processes start on an empty data dir, one key wins and both use it.
      writeFileSync(opts.file, raw.toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
    } catch (e) {
      raw.fill(0);
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      return { key: MasterKey.adopt(decodeKey(readFileSync(opts.file, 'utf8'), opts.file)), generated: false };
    }
    chmodSync(opts.file, 0o600);
    return { key: MasterKey.adopt(raw), generated: true };
  }

  encrypt(plain: Buffer, aad = ''): string {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.#key, iv);
    c.setAAD(Buffer.from(aad, 'utf8'));
    const ct = Buffer.concat([c.update(plain), c.final()]);
    return `${FORMAT}:${Buffer.concat([iv, ct, c.getAuthTag()]).toString('base64')}`;
  }

  encryptString(plain: string, aad = ''): string {
    const buf = Buffer.from(plain, 'utf8');
    try {
      return this.encrypt(buf, aad);
    } finally {
      buf.fill(0);
    }
  }

  /** The caller owns (and should zero) the result. Throws when the value was not made by this key. */
  decrypt(value: string, aad = ''): Buffer {
    const [format, body] = value.split(':', 2);
    if (format !== FORMAT || !body) throw new Error('Not a master-key ciphertext');
    const raw = Buffer.from(body, 'base64');
    if (raw.length < 28) throw new Error('Master-key ciphertext too short');
    const d = createDecipheriv('aes-256-gcm', this.#key, raw.subarray(0, 12));
    d.setAAD(Buffer.from(aad, 'utf8'));
    d.setAuthTag(raw.subarray(raw.length - 16));
    // Plaintext goes into an unpooled buffer of its own; the intermediate is zeroed either way.
    const part = d.update(raw.subarray(12, raw.length - 16));
    try {
      d.final();
      const out = Buffer.alloc(part.length);
      part.copy(out);
      return out;
    } catch {
      throw new Error('Master-key ciphertext failed authentication (wrong master key or tampered value)');
    } finally {
      part.fill(0);
    }
  }

  decryptString(value: string, aad = ''): string {
    const buf = this.decrypt(value, aad);
    try {
      return buf.toString('utf8');
    } finally {
      buf.fill(0);
    }
  }

  toString(): string {
    return 'MasterKey(32 bytes)';
  }
}

function decodeKey(text: string, source: string): Buffer {
  const raw = Buffer.from(text.trim(), 'base64');
  if (raw.length !== 32) throw new Error(`${source} must hold 32 bytes encoded in base64 (openssl rand -base64 32)`);
  return raw;
}
