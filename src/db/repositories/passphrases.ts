import type { Knex } from 'knex';

/** A legacy volume passphrase as stored: its ciphertext under the master key. */
export interface StoredPassphrase {
  id: number;
  uuid: string;
  /** The master-key ciphertext of the passphrase bytes. */
  ciphertext: string;
}

/** The `passphrase` table (CloudStack's PassphraseVO). */
export class PassphraseRepository {
  constructor(private readonly db: Knex) {}

  async insert(p: { uuid: string; ciphertext: string; created: Date }): Promise<number> {
    const [id] = await this.db('passphrase').insert({ uuid: p.uuid, passphrase: p.ciphertext, created: p.created.getTime() });
    return Number(id);
  }

  async find(id: number): Promise<StoredPassphrase | undefined> {
    const r = await this.db('passphrase').where({ id }).first('id', 'uuid', 'passphrase');
    return r ? { id: Number(r.id), uuid: r.uuid, ciphertext: r.passphrase } : undefined;
  }

  async findMany(ids: readonly number[]): Promise<StoredPassphrase[]> {
    if (!ids.length) return [];
    const rows: Array<{ id: number; uuid: string; passphrase: string }> = await this.db('passphrase').whereIn('id', [...ids]).select('id', 'uuid', 'passphrase');
    return rows.map((r) => ({ id: Number(r.id), uuid: r.uuid, ciphertext: r.passphrase }));
  }

  async delete(ids: readonly number[]): Promise<void> {
    if (ids.length) await this.db('passphrase').whereIn('id', [...ids]).delete();
  }

  /** The live volumes holding these passphrases (uuid and name by passphrase id), to name them in a report. */
  async volumesOf(ids: readonly number[]): Promise<Map<number, { uuid: string; name: string }>> {
    if (!ids.length) return new Map();
    const rows: Array<{ passphrase_id: number; uuid: string; name: string }> = await this.db('volumes').whereIn('passphrase_id', [...ids]).whereNull('removed')
      .select('passphrase_id', 'uuid', 'name');
    return new Map(rows.map((r) => [Number(r.passphrase_id), { uuid: r.uuid, name: r.name }]));
  }
}
