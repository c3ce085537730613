import { randomBytes, randomUUID } from 'node:crypto';
import type { MasterKey } from '../config/master-key';
import type { Repositories } from '../db/repositories';
import { KmsError } from '../core/errors';
import { SecretBytes } from '../core/secret-bytes';

/** The authenticated place of a legacy passphrase under the master key. */
export const passphraseAad = (uuid: string) => `passphrase:${uuid}`;
const aad = passphraseAad;

/** A volume's passphrase was removed meanwhile (a concurrent migration or delete): a 431. */
export class PassphraseGoneError extends KmsError {
  constructor() {
    super('param', 'The passphrase of this volume no longer exists');
  }
}

/**
 * CloudStack's legacy volume passphrases (PassphraseVO): 48 random bytes, base64-encoded into a
 * 64-character string whose bytes are the LUKS secret, stored encrypted under the master key.
 * Each method takes the repositories to use (a transaction's, or the connection's).
 */
export class Passphrases {
  constructor(private readonly masterKey: MasterKey) {}

  async create(tx: Repositories): Promise<number> {
    const raw = randomBytes(48);
    const text = Buffer.from(raw.toString('base64'), 'ascii');
    raw.fill(0);
    const uuid = randomUUID();
    try {
      return await tx.passphrases.insert({ uuid, ciphertext: this.masterKey.encrypt(text, aad(uuid)), created: new Date() });
    } finally {
      text.fill(0);
    }
  }

  /** The passphrase bytes (the LUKS secret). The caller owns and disposes the result. */
  async read(repos: Repositories, id: number): Promise<SecretBytes> {
    const row = await repos.passphrases.find(id);
    if (!row) throw new PassphraseGoneError();
    return SecretBytes.adopt(this.masterKey.decrypt(row.ciphertext, aad(row.uuid)));
  }

  /** The passphrases of several volumes in one query; the caller owns and disposes each result. */
  async readMany(repos: Repositories, ids: readonly number[]): Promise<Map<number, SecretBytes>> {
    const rows = await repos.passphrases.findMany(ids);
    return new Map(rows.map((r) => [r.id, SecretBytes.adopt(this.masterKey.decrypt(r.ciphertext, aad(r.uuid)))]));
  }

  async delete(tx: Repositories, id: number): Promise<void> {
    await tx.passphrases.delete([id]);
  }
}
