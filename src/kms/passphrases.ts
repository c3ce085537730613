import { randomBytes, randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { MasterKey } from '../config/master-key';
import { paramError } from '../core/errors';
import { SecretBytes } from '../core/secret-bytes';

/** The authenticated place of a legacy passphrase under the master key. */
export const passphraseAad = (uuid: string) => `passphrase:${uuid}`;
const aad = passphraseAad;

/**
 * CloudStack's legacy volume passphrases (PassphraseVO): 48 random bytes, base64-encoded into a
 * 64-character string whose bytes are the LUKS secret, stored encrypted under the master key.
 */
export class Passphrases {
  constructor(private readonly masterKey: MasterKey) {}

  async create(trx: Knex): Promise<number> {
    const raw = randomBytes(48);
    const text = Buffer.from(raw.toString('base64'), 'ascii');
    raw.fill(0);
    const uuid = randomUUID();
    try {
      const [id] = await trx('passphrase').insert({ uuid, passphrase: this.masterKey.encrypt(text, aad(uuid)), created: Date.now() });
      return Number(id);
    } finally {
      text.fill(0);
    }
  }

  /** The passphrase bytes (the LUKS secret). The caller owns and disposes the result. */
  async read(trx: Knex, id: number): Promise<SecretBytes> {
    const row = await trx('passphrase').where({ id }).first();
    if (!row) throw paramError('The passphrase of this volume no longer exists');
    return SecretBytes.adopt(this.masterKey.decrypt(row.passphrase, aad(row.uuid)));
  }

  /** The passphrases of several volumes in one query; the caller owns and disposes each result. */
  async readMany(trx: Knex, ids: readonly number[]): Promise<Map<number, SecretBytes>> {
    const rows: Array<{ id: number; uuid: string; passphrase: string }> = await trx('passphrase').whereIn('id', ids).select('id', 'uuid', 'passphrase');
    return new Map(rows.map((r) => [r.id, SecretBytes.adopt(this.masterKey.decrypt(r.passphrase, aad(r.uuid)))]));
  }

  async delete(trx: Knex, id: number): Promise<void> {
    await trx('passphrase').where({ id }).delete();
  }
}
