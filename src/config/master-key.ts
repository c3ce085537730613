import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/** Values written before master keys had versions: `v1:` + base64, aad without a version; they are version 1. */
const LEGACY_FORMAT = 'v1';
const VERSIONED = /^mk(\d{1,9}):/;

/** The authenticated data of a versioned value: the version, then the value's own place. */
const versionedAad = (version: number, aad: string): Buffer => Buffer.from(`master-key-v${version}|${aad}`, 'utf8');

/** Thrown when this node may not write master-key values (it could not confirm the version to use). */
export class MasterKeyWriteRefused extends Error {}

/**
 * The server master keys this process holds, by version: they encrypt secrets at rest (HSM PINs,
 * user secret keys, legacy passphrases, database-provider KEKs) with AES-256-GCM. A value is
 * `mk<version>:` + base64(iv ‖ ciphertext ‖ tag), and its authenticated data holds the version and
 * `aad`, the value's place (e.g. `passphrase:42`): a value copied elsewhere, or relabelled with
 * another version, fails. New values use the active version; any held version decrypts.
 */
export class MasterKey {
  readonly #keys = new Map<number, Buffer>();
  #active: number;
  /** Writes are refused after this instant (ms) unless the keyring is confirmed again; see confirmUntil. */
  #writableUntil = Number.POSITIVE_INFINITY;

  /** Copies `key` (version `version`, active) into a buffer of its own; the caller zeroes its copy. */
  constructor(key: Buffer, version = 1) {
    this.add(version, key);
    this.#active = version;
  }

  /** Adopts `raw` as the only (active) version and zeroes `raw`. */
  static adopt(raw: Buffer, version = 1): MasterKey {
    try {
      return new MasterKey(raw, version);
    } finally {
      raw.fill(0);
    }
  }

  /** From KMS_MASTER_KEY (base64 of 32 bytes) or a key file, generated with mode 0600 when absent. */
  static load(opts: { fromEnv?: string; file: string }): { key: MasterKey; generated: boolean } {
    const { keys, generated } = readMasterKeyMaterial(opts);
    try {
      return { key: new MasterKey(keys[0]!), generated };
    } finally {
      for (const k of keys) k.fill(0);
    }
  }

  get activeVersion(): number {
    return this.#active;
  }

  /** The versions held, ascending. */
  versions(): number[] {
    return [...this.#keys.keys()].sort((a, b) => a - b);
  }

  holds(version: number): boolean {
    return this.#keys.has(version);
  }

  /** Holds `key` as `version` (a copy; the caller zeroes its own). */
  add(version: number, key: Buffer): void {
    if (key.length !== 32) throw new Error('The master key must be 32 bytes (base64 in KMS_MASTER_KEY)');
    if (!Number.isInteger(version) || version < 1) throw new Error(`Master key version must be a positive integer (got ${version})`);
    const own = Buffer.alloc(32);
    key.copy(own);
    this.#keys.get(version)?.fill(0);
    this.#keys.set(version, own);
  }

  /** New values are written with `version` from now on. */
  activate(version: number): void {
    if (!this.#keys.has(version)) throw new Error(`This node does not hold master key version ${version}`);
    this.#active = version;
  }

  /** Zeroes and drops `version` (retired); the active version cannot be dropped. */
  forget(version: number): void {
    if (version === this.#active) return;
    this.#keys.get(version)?.fill(0);
    this.#keys.delete(version);
  }

  /** Writes are allowed until `until` (epoch ms); the node's heartbeat moves it on each confirmation. */
  confirmUntil(until: number): void {
    this.#writableUntil = until;
  }

  /** Zeroes every version. */
  destroy(): void {
    for (const k of this.#keys.values()) k.fill(0);
    this.#keys.clear();
  }

  /**
   * A short public fingerprint of a version's key (HMAC, not the key): nodes compare keys by it,
   * e.g. to tell that two nodes were given the same KMS_MASTER_KEY_NEXT.
   */
  fingerprint(version: number): string {
    return fingerprintOf(this.key(version));
  }

  /** The version a stored value was encrypted with (legacy `v1:` values are version 1), or undefined. */
  static versionOf(value: string): number | undefined {
    const m = VERSIONED.exec(value);
    if (m) return Number(m[1]);
    return value.startsWith(`${LEGACY_FORMAT}:`) ? 1 : undefined;
  }

  /** True for a value written in the versioned format with `version` (a legacy value never is). */
  static isOn(value: string, version: number): boolean {
    return value.startsWith(`mk${version}:`);
  }

  encrypt(plain: Buffer, aad = ''): string {
    if (Date.now() > this.#writableUntil) {
      throw new MasterKeyWriteRefused('This node could not confirm the master key version with the database recently; it writes no secrets until it can');
    }
    return this.encryptWith(this.#active, plain, aad);
  }

  /** Encrypts under a given held version (rotation and checks). */
  encryptWith(version: number, plain: Buffer, aad = ''): string {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.key(version), iv);
    c.setAAD(versionedAad(version, aad));
    const ct = Buffer.concat([c.update(plain), c.final()]);
    return `mk${version}:${Buffer.concat([iv, ct, c.getAuthTag()]).toString('base64')}`;
  }

  encryptString(plain: string, aad = ''): string {
    const buf = Buffer.from(plain, 'utf8');
    try {
      return this.encrypt(buf, aad);
    } finally {
      buf.fill(0);
    }
  }

  /** The caller owns (and should zero) the result. Throws when the value was not made by a held key. */
  decrypt(value: string, aad = ''): Buffer {
    const m = VERSIONED.exec(value);
    const legacy = !m && value.startsWith(`${LEGACY_FORMAT}:`);
    if (!m && !legacy) throw new Error('Not a master-key ciphertext');
    const version = m ? Number(m[1]) : 1;
    const key = this.#keys.get(version);
    if (!key) throw new Error(`This value is encrypted under master key version ${version}, which this node does not hold`);
    const raw = Buffer.from(value.slice(value.indexOf(':') + 1), 'base64');
    if (raw.length < 28) throw new Error('Master-key ciphertext too short');
    const d = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
    d.setAAD(legacy ? Buffer.from(aad, 'utf8') : versionedAad(version, aad));
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

  /** The same plaintext under `version`, bound to the same `aad`; the plaintext is zeroed. */
  reencrypt(value: string, aad: string, version: number): string {
    const plain = this.decrypt(value, aad);
    try {
      return this.encryptWith(version, plain, aad);
    } finally {
      plain.fill(0);
    }
  }

  /** Runs `fn` with a version's raw key (sealing it in an HSM); the caller must not keep it. */
  withRawKey<T>(version: number, fn: (key: Buffer) => T): T {
    return fn(this.key(version));
  }

  toString(): string {
    return `MasterKey(${this.#keys.size} version${this.#keys.size === 1 ? '' : 's'}, active ${this.#active})`;
  }

  private key(version: number): Buffer {
    const k = this.#keys.get(version);
    if (!k) throw new Error(`This node does not hold master key version ${version}`);
    return k;
  }
}

/** Encrypts in the format written before versions existed (tests of the in-place upgrade use it). */
export function legacyEncrypt(key: Buffer, plain: Buffer, aad: string): string {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(Buffer.from(aad, 'utf8'));
  const ct = Buffer.concat([c.update(plain), c.final()]);
  return `${LEGACY_FORMAT}:${Buffer.concat([iv, ct, c.getAuthTag()]).toString('base64')}`;
}

export function fingerprintOf(key: Buffer): string {
  return createHmac('sha256', key).update('cloudstack-kms master key fingerprint').digest('hex').slice(0, 16);
}

/**
 * The raw master keys given to this node: KMS_MASTER_KEY (one key, or several separated by commas)
 * or else the lines of the key file (generated with one key, mode 0600, when absent), plus
 * KMS_MASTER_KEY_NEXT. Which version each one is, the database tells (check values).
 * The caller zeroes every returned buffer.
 */
export function readMasterKeyMaterial(opts: { fromEnv?: string; file: string; next?: string }): { keys: Buffer[]; generated: boolean } {
  const keys: Buffer[] = [];
  let generated = false;
  if (opts.fromEnv) keys.push(...splitKeys(opts.fromEnv, 'KMS_MASTER_KEY'));
  else if (existsSync(opts.file)) keys.push(...splitKeys(readFileSync(opts.file, 'utf8'), opts.file));
  else {
    mkdirSync(dirname(opts.file), { recursive: true, mode: 0o700 });
    const raw = randomBytes(32);
    try {
      // Exclusive create: when two processes start on an empty data dir, one key wins and both use it.
      writeFileSync(opts.file, raw.toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
      chmodSync(opts.file, 0o600);
      keys.push(raw);
      generated = true;
    } catch (e) {
      raw.fill(0);
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      keys.push(...splitKeys(readFileSync(opts.file, 'utf8'), opts.file));
    }
  }
  if (opts.next) keys.push(...splitKeys(opts.next, 'KMS_MASTER_KEY_NEXT'));
  return { keys, generated };
}

/** Writes keys (base64, one a line) to a new 0600 file, replacing it atomically. */
export function writeMasterKeyFile(file: string, keys: readonly Buffer[]): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, keys.map((k) => k.toString('base64')).join('\n') + '\n', { mode: 0o600, flag: 'w' });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

function splitKeys(text: string, source: string): Buffer[] {
  const parts = text.split(/[\s,]+/).filter(Boolean);
  if (!parts.length) throw new Error(`${source} must hold 32 bytes encoded in base64 (openssl rand -base64 32)`);
  const keys: Buffer[] = [];
  try {
    for (const p of parts) keys.push(decodeKey(p, source));
  } catch (e) {
    for (const k of keys) k.fill(0); // the keys decoded before the bad one
    throw e;
  }
  return keys;
}

function decodeKey(text: string, source: string): Buffer {
  const raw = Buffer.from(text.trim(), 'base64');
  if (raw.length !== 32) throw new Error(`${source} must hold 32 bytes encoded in base64 (openssl rand -base64 32)`);
  return raw;
}
