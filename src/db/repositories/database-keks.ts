import type { Knex } from 'knex';
import { retryTransaction } from '../retry';

const TABLE = 'kms_database_kek_objects';

/** The database provider's KEKs (`kms_database_kek_objects`): key material under the master key, by label. */
export class DatabaseKekRepository {
  constructor(private readonly db: Knex) {}

  /** The master-key ciphertext of a live KEK, or undefined. */
  async findMaterial(label: string): Promise<string | undefined> {
    const r: { key_material: string } | undefined = await this.db(TABLE).where({ label }).whereNull('removed').first('key_material');
    return r?.key_material;
  }

  /** Stores a new KEK unless a live one has the label (checked in the same transaction); false when one had. */
  async insertIfAbsent(k: { uuid: string; label: string; material: string; bits: number; created: Date }): Promise<boolean> {
    return retryTransaction(this.db, () => this.db.transaction(async (trx) => {
      if (await trx(TABLE).where({ label: k.label }).whereNull('removed').first('id')) return false;
      await trx(TABLE).insert({ uuid: k.uuid, label: k.label, key_material: k.material, key_bits: k.bits, created: k.created.getTime() });
      return true;
    }));
  }

  /** Marks the KEK removed and erases its material: a destroyed KEK cannot come back. */
  async destroy(label: string, at: Date): Promise<void> {
    await this.db(TABLE).where({ label }).whereNull('removed').update({ removed: at.getTime(), key_material: '' });
  }

  /** A trivial query: the database answers. */
  async ping(): Promise<void> {
    await this.db.raw('select 1');
  }
}
