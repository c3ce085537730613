import type { Knex } from 'knex';

/** CloudStack's `configuration` table: global settings by name (and the legacy master-key check value). */
export class ConfigurationRepository {
  constructor(private readonly db: Knex) {}

  /** The stored value, or undefined when the setting was never stored. */
  async get(name: string): Promise<string | undefined> {
    const row: { value: string | null } | undefined = await this.db('configuration').where({ name }).first('value');
    return row?.value ?? undefined;
  }

  /** Stores `value` (an update when the name exists, else an insert). */
  async put(name: string, value: string, updated: Date): Promise<void> {
    const exists = await this.db('configuration').where({ name }).first('name');
    if (exists) await this.db('configuration').where({ name }).update({ value, updated: updated.getTime() });
    else await this.db('configuration').insert({ name, value, updated: updated.getTime() });
  }

  /** Every stored value by name (null values left out). */
  async all(): Promise<Map<string, string>> {
    const rows: Array<{ name: string; value: string | null }> = await this.db('configuration').select('name', 'value');
    return new Map(rows.filter((r) => r.value !== null).map((r) => [r.name, r.value!]));
  }
}
